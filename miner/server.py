"""The miner's HTTP API (`core.miner_api`): which training repo to run, answered only to registered validators."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, HTTPException

from core.chain.base import Chain
from core.miner_api import TRAINING_REPO_PATH, TrainingRepoResponse
from core.signed_http import require_registered_validator
from miner.settings import MinerSettings

logger = logging.getLogger(__name__)


def create_app(settings: MinerSettings, *, chain: Chain, hotkey_ss58: str) -> FastAPI:
    """The miner app; `hotkey_ss58` is this miner's hotkey (requests must be signed for it)."""
    # A local dependency: the app's own chain and hotkey are closed over (string annotations could not see them).
    registered_validator = Depends(require_registered_validator(chain, hotkey_ss58))
    app = FastAPI(title="Miner")

    @app.get(TRAINING_REPO_PATH, response_model=TrainingRepoResponse)
    async def read_training_repo(task_type: str, caller: str = registered_validator) -> TrainingRepoResponse:
        """The repo and commit to train `task_type` with (a task type, or "text" / "image" for tournaments)."""
        try:
            repo = settings.repo_for(task_type)
        except ValueError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        if repo is None:
            raise HTTPException(status_code=404, detail=f"this miner has no training repo for {task_type}")
        logger.info("validator %s asked for the %s repo", caller, task_type)
        return repo

    return app
