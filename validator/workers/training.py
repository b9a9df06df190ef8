"""ready → training → preevaluation: one training job per contestant on a trainer host, polled until it ends.

Each pass over a claimed task is short (a few HTTP calls), then the task is handed back until the next poll.
No job is ever started twice: before a job is posted, the chosen trainer and the status `dispatching` are
committed. A pass that finds a `dispatching` contestant (the worker crashed, or the trainer did not answer) posts
the same job id to the same trainer again, which the trainer treats as a no-op when it already has the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from pydantic import ValidationError

from core.logging import log_context
from core.tasks import TaskStatus
from core.trainer_api import CAPACITY_PATH, JOBS_PATH, JobStatus, TrainerCapacity, TrainingJobRequest, TrainingJobStatus
from validator.db import contestants as contestants_db, tasks as tasks_db
from validator.db.contestants import ContestantRow, ContestantStatus
from validator.db.tasks import TaskRow
from validator.settings import TrainerEndpoint
from validator.workers.context import WorkerContext
from validator.workers.runner import Stage, fail_task, release, transition

logger = logging.getLogger(__name__)

# "Too many requests": the job was not created, so another trainer may take it. Any 5xx leaves the job in doubt.
RETRY_ELSEWHERE_STATUSES = {429}
MAX_ERROR_TEXT = 300


def _response_reason(response: httpx.Response) -> str:
    """A short reason from an error response of a trainer (its JSON `detail`/`error` when present)."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = body.get("detail") or body.get("error") or body
    return f"HTTP {response.status_code}: {str(body)[:MAX_ERROR_TEXT]}"


def _deadline(ctx: WorkerContext, task: TaskRow) -> datetime:
    termination_at = task.termination_at or datetime.now(UTC)
    return termination_at + timedelta(seconds=ctx.settings.training_grace_seconds)


def build_job_request(ctx: WorkerContext, task: TaskRow, contestant: ContestantRow) -> TrainingJobRequest:
    time_limit_seconds = task.hours_to_complete * 3600
    # The trainer fetches the data when the job starts, which may be after a wait in its queue.
    url_ttl = int(max(ctx.settings.artifact_url_ttl_seconds, time_limit_seconds + ctx.settings.training_grace_seconds))
    return TrainingJobRequest(
        job_id=contestant.job_id,
        task_id=task.task_id,
        hotkey=contestant.hotkey,
        repo_url=contestant.repo_url,
        commit_hash=contestant.commit_hash,
        task_type=task.task_type,
        model_repo=task.model_repo,
        dataset_url=ctx.artifact_store.signed_url(task.train_artifact_key, expires_in_seconds=url_ttl),
        dataset_type=task.dataset_type or {},
        file_format="s3",
        expected_repo_name=contestant.expected_repo_name,
        hours_to_complete=task.hours_to_complete,
        time_limit_seconds=time_limit_seconds,
    )


async def _write(ctx: WorkerContext, query: Callable[..., Awaitable[None]], **kwargs: Any) -> None:
    async with ctx.pool.acquire() as conn:
        await query(conn, **kwargs)


async def _free_slots(ctx: WorkerContext) -> dict[str, int]:
    """Free training slots by trainer URL; trainers that do not answer count as full."""

    async def ask(trainer: TrainerEndpoint) -> int:
        try:
            response = await ctx.http.get(trainer.url + CAPACITY_PATH, receiver_hotkey=trainer.hotkey)
            response.raise_for_status()
            return max(TrainerCapacity.model_validate_json(response.content).slots_free, 0)
        except (httpx.HTTPError, ValidationError) as error:
            logger.debug("trainer %s capacity unknown: %s", trainer.url, error)
            return 0

    slots = await asyncio.gather(*(ask(trainer) for trainer in ctx.settings.trainers))
    return {trainer.url: free for trainer, free in zip(ctx.settings.trainers, slots, strict=True)}


async def _post_job(
    ctx: WorkerContext, task: TaskRow, contestant: ContestantRow, lease_owner: str, trainer_url: str, hotkey: str
) -> None:
    """POST the job (first time or again after a crash) and record what the trainer said."""
    request = build_job_request(ctx, task, contestant)
    try:
        response = await ctx.http.post(trainer_url + JOBS_PATH, receiver_hotkey=hotkey, json=request)
    except httpx.HTTPError as error:
        # The job may or may not exist now; it stays `dispatching` and is posted again next pass.
        logger.warning("posting job %s to %s failed (%s); will post it again", contestant.job_id, trainer_url, error)
        return
    if response.is_success:
        await _write(ctx, contestants_db.mark_training, job_id=contestant.job_id, lease_owner=lease_owner)
        logger.info("job %s of %s is training on %s", contestant.job_id, contestant.hotkey, trainer_url)
    elif response.status_code in RETRY_ELSEWHERE_STATUSES:
        await _write(ctx, contestants_db.return_to_pending, job_id=contestant.job_id, lease_owner=lease_owner)
        logger.info("trainer %s has no room for job %s (%s)", trainer_url, contestant.job_id, response.status_code)
    elif response.status_code >= 500:
        # The trainer broke mid-request: the job may exist. Posting the same id again next pass is safe.
        logger.warning(
            "trainer %s answered %s for job %s; will post it again",
            trainer_url,
            response.status_code,
            contestant.job_id,
        )
    else:
        reason = f"trainer {trainer_url} refused the job: {_response_reason(response)}"
        await _write(ctx, contestants_db.mark_failed, job_id=contestant.job_id, lease_owner=lease_owner, error=reason)
        logger.info("job %s of %s failed: %s", contestant.job_id, contestant.hotkey, reason)


async def _dispatch(ctx: WorkerContext, task: TaskRow, pending: list[ContestantRow], lease_owner: str) -> None:
    """Give each pending contestant a trainer with a free slot, committing the choice before posting."""
    if not ctx.settings.trainers:
        reason = "no trainer hosts are configured on this validator (VALIDATOR_TRAINERS)"
        for contestant in pending:
            await _write(
                ctx, contestants_db.mark_failed, job_id=contestant.job_id, lease_owner=lease_owner, error=reason
            )
        return
    free = await _free_slots(ctx)
    hotkeys = {trainer.url: trainer.hotkey for trainer in ctx.settings.trainers}
    for contestant in pending:
        trainer_url = max(free, key=lambda url: free[url])
        if free[trainer_url] <= 0:
            logger.debug("no trainer has a free slot for %d contestants", len(pending))
            return
        free[trainer_url] -= 1
        await _write(
            ctx,
            contestants_db.mark_dispatching,
            job_id=contestant.job_id,
            lease_owner=lease_owner,
            trainer_url=trainer_url,
            trainer_hotkey=hotkeys[trainer_url],
        )
        await _post_job(ctx, task, contestant, lease_owner, trainer_url, hotkeys[trainer_url])


async def _cancel_job(ctx: WorkerContext, contestant: ContestantRow) -> None:
    try:
        await ctx.http.delete(
            f"{contestant.trainer_url}{JOBS_PATH}/{contestant.job_id}", receiver_hotkey=contestant.trainer_hotkey
        )
    except httpx.HTTPError as error:
        logger.warning("could not cancel job %s on %s: %s", contestant.job_id, contestant.trainer_url, error)


async def _poll(ctx: WorkerContext, task: TaskRow, contestant: ContestantRow, lease_owner: str) -> None:
    """Ask the trainer how the job is doing; record the end of a finished job or of one past its deadline."""
    past_deadline = datetime.now(UTC) > _deadline(ctx, task)
    status: TrainingJobStatus | None = None
    try:
        response = await ctx.http.get(
            f"{contestant.trainer_url}{JOBS_PATH}/{contestant.job_id}", receiver_hotkey=contestant.trainer_hotkey
        )
        if response.status_code == 404:
            reason = f"trainer {contestant.trainer_url} has no job {contestant.job_id} (lost by the trainer)"
            await _write(
                ctx, contestants_db.mark_failed, job_id=contestant.job_id, lease_owner=lease_owner, error=reason
            )
            logger.info("job %s of %s failed: %s", contestant.job_id, contestant.hotkey, reason)
            return
        response.raise_for_status()
        status = TrainingJobStatus.model_validate_json(response.content)
    except (httpx.HTTPError, ValidationError) as error:
        logger.debug("job %s status unknown: %s", contestant.job_id, error)

    if status is not None and status.status is JobStatus.SUCCESS and status.output_repository:
        await _write(
            ctx,
            contestants_db.mark_trained,
            job_id=contestant.job_id,
            lease_owner=lease_owner,
            output_repository=status.output_repository,
        )
        logger.info("job %s of %s trained %s", contestant.job_id, contestant.hotkey, status.output_repository)
        return
    if status is not None and status.status.is_terminal:
        if status.status is JobStatus.SUCCESS:
            reason = "the trainer reported success but no output repository"
        else:
            reason = f"training job {status.status}: {status.error or 'no reason given'}"
        await _write(ctx, contestants_db.mark_failed, job_id=contestant.job_id, lease_owner=lease_owner, error=reason)
        logger.info("job %s of %s failed: %s", contestant.job_id, contestant.hotkey, reason)
        return
    if past_deadline:
        await _cancel_job(ctx, contestant)
        what = "did not finish" if status is not None else "could not be reached"
        reason = (
            f"training {what} within hours_to_complete ({task.hours_to_complete:g} h) plus "
            f"{ctx.settings.training_grace_seconds:g} s grace"
        )
        await _write(ctx, contestants_db.mark_failed, job_id=contestant.job_id, lease_owner=lease_owner, error=reason)
        logger.info("job %s of %s failed: %s", contestant.job_id, contestant.hotkey, reason)


async def _fail_undispatched(ctx: WorkerContext, contestants: list[ContestantRow], lease_owner: str) -> None:
    for contestant in contestants:
        if contestant.status is ContestantStatus.DISPATCHING:
            await _cancel_job(ctx, contestant)
        reason = "no trainer accepted the job before the task's deadline"
        await _write(ctx, contestants_db.mark_failed, job_id=contestant.job_id, lease_owner=lease_owner, error=reason)
        logger.info("job %s of %s failed: %s", contestant.job_id, contestant.hotkey, reason)


async def _contestants(ctx: WorkerContext, task: TaskRow) -> list[ContestantRow]:
    async with ctx.pool.acquire() as conn:
        return await contestants_db.list_contestants(conn, task_id=task.task_id)


async def train(ctx: WorkerContext, task: TaskRow, lease_owner: str) -> None:
    if task.status is TaskStatus.READY:
        contestants = await _contestants(ctx, task)

        async def start_clock(conn: asyncpg.Connection) -> None:
            await tasks_db.set_termination(conn, task_id=task.task_id, lease_owner=lease_owner)

        task = await transition(
            ctx,
            task.task_id,
            lease_owner,
            TaskStatus.TRAINING,
            f"training {len(contestants)} contestants for up to {task.hours_to_complete:g} h",
            release=False,
            writes=start_clock,
        )

    contestants = await _contestants(ctx, task)
    past_deadline = datetime.now(UTC) > _deadline(ctx, task)
    for contestant in contestants:
        with log_context(hotkey=contestant.hotkey):
            if contestant.status is ContestantStatus.DISPATCHING and not past_deadline:
                await _post_job(ctx, task, contestant, lease_owner, contestant.trainer_url, contestant.trainer_hotkey)
            elif contestant.status is ContestantStatus.TRAINING:
                await _poll(ctx, task, contestant, lease_owner)
    waiting = [item for item in contestants if item.status in (ContestantStatus.PENDING, ContestantStatus.DISPATCHING)]
    if past_deadline and waiting:
        await _fail_undispatched(ctx, waiting, lease_owner)
    else:
        pending = [item for item in await _contestants(ctx, task) if item.status is ContestantStatus.PENDING]
        if pending:
            await _dispatch(ctx, task, pending, lease_owner)

    contestants = await _contestants(ctx, task)
    if not all(item.status.is_terminal for item in contestants):
        await release(ctx, task.task_id, lease_owner, retry_in_seconds=ctx.settings.poll_interval_seconds)
        return
    trained = [item for item in contestants if item.status is ContestantStatus.TRAINED]
    if trained:
        await transition(
            ctx,
            task.task_id,
            lease_owner,
            TaskStatus.PREEVALUATION,
            f"{len(trained)} of {len(contestants)} training jobs produced a model",
        )
        return
    reasons = "; ".join(f"{item.hotkey}: {item.error}" for item in contestants)
    await fail_task(ctx, task.task_id, lease_owner, f"all {len(contestants)} training jobs failed: {reasons}")


STAGE = Stage(name="training", statuses=(TaskStatus.READY, TaskStatus.TRAINING), handler=train)
