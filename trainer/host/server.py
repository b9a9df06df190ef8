"""The trainer host's HTTP API (`core.trainer_api`): validators post training jobs, poll, cancel and ask for capacity.

Every route admits only btauth/1-signed requests from validators registered with a permit on the netuid.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, HTTPException

from core.chain.base import Chain
from core.model_store import LocalModelStore
from core.signed_http import require_registered_validator
from core.stores import ModelStore
from core.trainer_api import CAPACITY_PATH, JOBS_PATH, TrainerCapacity, TrainingJobRequest, TrainingJobStatus
from trainer.host.jobs import JobConflict, JobManager, JobRejected
from trainer.settings import TrainerSettings

logger = logging.getLogger(__name__)


def create_app(
    settings: TrainerSettings,
    *,
    chain: Chain,
    hotkey_ss58: str,
    model_store: ModelStore | None = None,
) -> FastAPI:
    """The trainer host app; `hotkey_ss58` is this host's hotkey (requests must be signed for it).

    The job manager is `app.state.jobs`; it loads earlier job records at startup and stops running jobs at shutdown.
    """
    # TODO(#5): choose HubModelStore for a production network; the local store is the only one wired up so far.
    jobs = JobManager(
        jobs_dir=settings.jobs_dir,
        model_store=model_store if model_store is not None else LocalModelStore(settings.model_store_root),
        model_namespace=settings.model_namespace,
        slots=settings.slots,
        max_dataset_bytes=settings.max_dataset_bytes,
        git_timeout_seconds=settings.git_timeout_seconds,
        download_timeout_seconds=settings.download_timeout_seconds,
        kill_grace_seconds=settings.kill_grace_seconds,
    )
    # A local dependency: the app's own chain and hotkey are closed over (string annotations could not see them).
    registered_validator = Depends(require_registered_validator(chain, hotkey_ss58))
    router = APIRouter()

    @router.post(JOBS_PATH, response_model=TrainingJobStatus)
    async def create_job(request: TrainingJobRequest, caller: str = registered_validator) -> TrainingJobStatus:
        """Start a training job; posting an existing `job_id` again returns that job without starting it twice."""
        try:
            return await jobs.submit(request, validator_hotkey=caller)
        except JobRejected as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        except JobConflict as error:
            raise HTTPException(status_code=409, detail=str(error)) from None

    @router.get(JOBS_PATH + "/{job_id}", response_model=TrainingJobStatus)
    async def read_job(job_id: UUID, caller: str = registered_validator) -> TrainingJobStatus:
        """The job's status, with the last lines of its training log."""
        status = await jobs.status(job_id, validator_hotkey=caller)
        if status is None:
            raise HTTPException(status_code=404, detail=f"no job {job_id} from this validator")
        return status

    @router.delete(JOBS_PATH + "/{job_id}", response_model=TrainingJobStatus)
    async def cancel_job(job_id: UUID, caller: str = registered_validator) -> TrainingJobStatus:
        """Cancel the job and kill its processes; a finished job is returned unchanged."""
        status = await jobs.cancel(job_id, validator_hotkey=caller)
        if status is None:
            raise HTTPException(status_code=404, detail=f"no job {job_id} from this validator")
        return status

    @router.get(CAPACITY_PATH, response_model=TrainerCapacity)
    async def read_capacity(caller: str = registered_validator) -> TrainerCapacity:
        """Free training slots (jobs beyond them wait in a queue)."""
        return jobs.capacity()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await jobs.load()
        logger.info("trainer host ready: %d slots, jobs in %s", settings.slots, settings.jobs_dir)
        try:
            yield
        finally:
            await jobs.close()

    app = FastAPI(title="Trainer host", lifespan=lifespan)
    app.state.jobs = jobs
    app.include_router(router)
    return app
