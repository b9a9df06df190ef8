"""What the workers need: settings and the live resources of one validator process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from core.chain.base import Chain
from core.signed_http import SignedClient
from core.stores import ArtifactStore, ModelStore
from validator.settings import ValidatorSettings


def _no_op() -> None:
    return None


@dataclass
class WorkerContext:
    settings: ValidatorSettings
    pool: asyncpg.Pool
    chain: Chain
    wallet: Any  # bittensor.Wallet
    http: SignedClient
    model_store: ModelStore
    artifact_store: ArtifactStore
    # Called after a task reaches success (the weight setter's wake-up).
    on_task_success: Callable[[], None] = field(default=_no_op)

    @property
    def hotkey(self) -> str:
        return self.wallet.hotkey.ss58_address
