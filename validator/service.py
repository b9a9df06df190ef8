"""One validator process: the public API, the task workers, the weight setter and the deposit watcher, sharing one
connection pool.

    app = create_app(settings, database_url=url)      # served by core.serving.serve once the port is bound

The app's lifespan opens the pool and the signed HTTP client, starts the workers and the weight setter, and on
shutdown stops them (handing back any task being worked on) before closing the pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI

from core.artifact_store import LocalArtifactStore
from core.chain import Chain, open_chain
from core.db import create_pool
from core.model_store import LocalModelStore
from core.signed_http import SignedClient
from core.wallets import load_wallet
from validator.api import build_api
from validator.deposits import DepositWatcher, FixedRate
from validator.settings import ValidatorSettings, resolve_artifact_secret, resolve_deposit_key
from validator.weights import WeightSetter, weight_params
from validator.workers import WorkerContext, WorkerGroup

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 10.0


def build_model_store(settings: ValidatorSettings) -> LocalModelStore:
    # TODO(#5): HubModelStore when the validator runs against a real network.
    return LocalModelStore(settings.model_store_root)


def build_artifact_store(settings: ValidatorSettings) -> LocalArtifactStore:
    return LocalArtifactStore(
        settings.artifact_root,
        secret=resolve_artifact_secret(settings).encode("utf-8"),
        base_url=settings.base_url,
    )


def _start_deposit_watcher(
    settings: ValidatorSettings, pool: Any, chain: Chain
) -> tuple[DepositWatcher | None, asyncio.Task[None] | None]:
    if settings.tao_usd_rate is None:
        logger.warning("VALIDATOR_TAO_USD_RATE is not set: TAO deposits are not credited")
        return None, None
    watcher = DepositWatcher(
        pool=pool,
        chain=chain,
        rates=FixedRate(Decimal(str(settings.tao_usd_rate))),
        interval_seconds=settings.deposit_poll_seconds,
    )
    return watcher, asyncio.create_task(watcher.run(), name="validator-deposit-watcher")


def create_app(
    settings: ValidatorSettings,
    *,
    database_url: str,
    run_workers: bool = True,
    wallet: Any = None,
    chain: Chain | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The validator app. `wallet` and `chain` default to the ones the settings name; `run_workers=False` serves
    only the API (the lifespan still puts the `WorkerContext` on `app.state.context`)."""
    wallet = (
        wallet
        if wallet is not None
        else load_wallet(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
    )
    chain = chain if chain is not None else open_chain(settings)
    model_store = build_model_store(settings)
    artifact_store = build_artifact_store(settings)
    deposit_key = resolve_deposit_key(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(database_url)
        http = SignedClient(wallet, timeout=settings.trainer_timeout_seconds, transport=http_transport)
        ctx = WorkerContext(
            settings=settings,
            pool=pool,
            chain=chain,
            wallet=wallet,
            http=http,
            model_store=model_store,
            artifact_store=artifact_store,
        )
        app.state.pool = pool
        app.state.context = ctx
        app.state.deposit_key = deposit_key
        workers: WorkerGroup | None = None
        weight_setter: WeightSetter | None = None
        weights_task: asyncio.Task[None] | None = None
        deposit_watcher: DepositWatcher | None = None
        deposits_task: asyncio.Task[None] | None = None
        if run_workers:
            weight_setter = WeightSetter(
                pool=pool,
                chain=chain,
                wallet=wallet,
                version_key=settings.weights_version_key,
                params=weight_params(settings),
                interval_seconds=settings.weights_interval_seconds,
                block_poll_seconds=settings.poll_interval_seconds,
            )
            ctx.on_task_success = weight_setter.request_update
            workers = WorkerGroup(ctx)
            workers.start()
            weights_task = asyncio.create_task(weight_setter.run(), name="validator-weight-setter")
            deposit_watcher, deposits_task = _start_deposit_watcher(settings, pool, chain)
        logger.info("validator %s serving on %s", ctx.hotkey, settings.base_url)
        try:
            yield
        finally:
            if deposit_watcher is not None and deposits_task is not None:
                deposit_watcher.stop()
                await asyncio.wait({deposits_task}, timeout=SHUTDOWN_TIMEOUT_SECONDS)
                deposits_task.cancel()
            if workers is not None:
                await workers.stop()
            if weight_setter is not None and weights_task is not None:
                weight_setter.stop()
                try:
                    await asyncio.wait_for(weights_task, SHUTDOWN_TIMEOUT_SECONDS)
                except TimeoutError:
                    logger.warning("the weight setter did not stop within %.0f s", SHUTDOWN_TIMEOUT_SECONDS)
            await http.aclose()
            try:
                await asyncio.wait_for(pool.close(), SHUTDOWN_TIMEOUT_SECONDS)
            except TimeoutError:
                pool.terminate()

    return build_api(artifact_store=artifact_store, lifespan=lifespan)
