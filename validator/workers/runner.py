"""Running one stage of the task lifecycle on one task at a time, safely across crashes and processes.

A stage worker claims ONE due task (`FOR UPDATE SKIP LOCKED` plus a lease), works on it while a background task
renews the lease, and ends by changing the task's status or handing it back for a later look. A worker that
crashes leaves an expired lease behind; the next claim takes the task over and counts a failed attempt, and after
`max_stage_attempts` the task fails with a reason instead of looping forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from core.logging import log_context
from core.tasks import TaskStatus
from validator.db import ledger as ledger_db, tasks as tasks_db
from validator.db.tasks import LeaseLost, TaskRow
from validator.workers.context import WorkerContext

logger = logging.getLogger(__name__)

T = TypeVar("T")
StageHandler = Callable[[WorkerContext, TaskRow, str], Coroutine[Any, Any, None]]
MAX_RETRY_SECONDS = 300.0
RELEASE_ON_SHUTDOWN_TIMEOUT = 5.0


@dataclass(frozen=True)
class Stage:
    """A step of the lifecycle: which statuses it claims and the coroutine that works on a claimed task.

    The handler must end by changing the task's status (`transition`) or handing it back (`release`); otherwise
    the lease simply expires and the task is taken over as if the worker had crashed.
    """

    name: str
    statuses: tuple[TaskStatus, ...]
    handler: StageHandler


def new_lease_owner(stage_name: str) -> str:
    """A name unique to one worker loop of one process, readable in the tasks table."""
    return f"{socket.gethostname()}:{os.getpid()}:{stage_name}:{uuid.uuid4().hex[:8]}"


async def transition(
    ctx: WorkerContext,
    task_id: UUID,
    lease_owner: str,
    status: TaskStatus,
    message: str,
    *,
    error: str | None = None,
    release: bool = True,
    writes: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> TaskRow:
    """Change the task's status, with its log event and any other `writes`, in one transaction; log one line."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        if writes is not None:
            await writes(conn)
        task = await tasks_db.set_status(
            conn, task_id=task_id, lease_owner=lease_owner, status=status, message=message, error=error, release=release
        )
        refunded = await _refund_if_unstarted(conn, task) if status is TaskStatus.FAILURE else None
    logger.info("task %s is now %s: %s", task_id, status, message)
    if refunded is not None:
        logger.info("task %s refunded $%s to account %s", task_id, refunded, task.account_id)
    if status is TaskStatus.SUCCESS:
        ctx.on_task_success()
    return task


async def _refund_if_unstarted(conn: asyncpg.Connection, task: TaskRow) -> Decimal | None:
    """Refund a task that failed before its training started (docs/api.md, "Refunds"), in the transaction that marks
    it failed; the ledger allows one refund per task, so a retried transition cannot refund twice."""
    if task.termination_at is not None:  # set in the transaction that moved it to training
        return None
    amount = await ledger_db.refund_task(conn, task_id=task.task_id)
    if amount is not None:
        await tasks_db.add_event(
            conn,
            task_id=task.task_id,
            status=TaskStatus.FAILURE,
            message=f"refunded ${amount:.2f}: training never started",
        )
    return amount


async def fail_task(ctx: WorkerContext, task_id: UUID, lease_owner: str, reason: str) -> TaskRow:
    """End the task in failure; `reason` is what the customer reads."""
    return await transition(ctx, task_id, lease_owner, TaskStatus.FAILURE, reason, error=reason)


async def release(ctx: WorkerContext, task_id: UUID, lease_owner: str, *, retry_in_seconds: float) -> None:
    """Hand the task back, due again in `retry_in_seconds` (a polling stage's next look)."""
    async with ctx.pool.acquire() as conn:
        released = await tasks_db.release_task(
            conn, task_id=task_id, lease_owner=lease_owner, retry_in_seconds=retry_in_seconds
        )
    if not released:
        raise LeaseLost(f"task {task_id} is no longer leased by {lease_owner}")


async def _keep_lease(ctx: WorkerContext, task_id: UUID, lease_owner: str) -> None:
    """Renew the lease every third of its length; returns only when the lease is lost."""
    lease_seconds = ctx.settings.lease_seconds
    while True:
        await asyncio.sleep(lease_seconds / 3)
        try:
            async with ctx.pool.acquire() as conn:
                renewed = await tasks_db.renew_lease(
                    conn, task_id=task_id, lease_owner=lease_owner, lease_seconds=lease_seconds
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # The work's own fenced writes notice if the lease expires meanwhile.
            logger.warning("could not renew the lease of task %s: %s", task_id, error)
            continue
        if not renewed:
            return


async def run_under_lease(ctx: WorkerContext, task_id: UUID, lease_owner: str, work: Awaitable[T]) -> T:
    """Await `work` while renewing the lease; cancel it and raise LeaseLost if another worker takes the task."""
    work_task = asyncio.ensure_future(work)
    renewer = asyncio.create_task(_keep_lease(ctx, task_id, lease_owner))
    try:
        await asyncio.wait({work_task, renewer}, return_when=asyncio.FIRST_COMPLETED)
        if work_task.done():
            return work_task.result()
        renewer.result()  # re-raises if renewing itself broke
        raise LeaseLost(f"task {task_id} was taken over by another worker")
    finally:
        for pending in (work_task, renewer):
            pending.cancel()
        await asyncio.gather(work_task, renewer, return_exceptions=True)


def retry_delay(ctx: WorkerContext, attempts: int) -> float:
    return min(ctx.settings.poll_interval_seconds * 2 ** max(attempts, 0), MAX_RETRY_SECONDS)


async def _after_unexpected_error(ctx: WorkerContext, stage: Stage, task: TaskRow, lease_owner: str) -> None:
    async with ctx.pool.acquire() as conn:
        attempts = await tasks_db.record_failed_attempt(conn, task_id=task.task_id, lease_owner=lease_owner)
    if attempts is None:
        return
    if attempts >= ctx.settings.max_stage_attempts:
        await fail_task(
            ctx,
            task.task_id,
            lease_owner,
            f"internal error in {stage.name} after {attempts} attempts; the validator operator can see the cause "
            "in its logs",
        )
    else:
        await release(ctx, task.task_id, lease_owner, retry_in_seconds=retry_delay(ctx, attempts))


async def _release_on_shutdown(ctx: WorkerContext, task_id: UUID, lease_owner: str) -> None:
    # Handing the task back at once saves the next worker waiting for the lease to expire (and counting a failure).
    try:
        await asyncio.wait_for(release(ctx, task_id, lease_owner, retry_in_seconds=0), RELEASE_ON_SHUTDOWN_TIMEOUT)
    except (Exception, asyncio.CancelledError) as error:
        logger.debug("could not hand back task %s on shutdown: %s", task_id, error)


async def run_stage_once(ctx: WorkerContext, stage: Stage, *, lease_owner: str) -> bool:
    """Claim one due task of the stage and work on it; False when no task was due."""
    async with ctx.pool.acquire() as conn:
        claimed = await tasks_db.claim_task(
            conn, statuses=list(stage.statuses), lease_owner=lease_owner, lease_seconds=ctx.settings.lease_seconds
        )
    if claimed is None:
        return False
    task = claimed.task
    with log_context(task_id=task.task_id):
        if claimed.previous_owner is not None:
            logger.warning(
                "took over task %s (%s) from %s, whose lease expired (failed attempts: %d)",
                task.task_id,
                task.status,
                claimed.previous_owner,
                task.attempts,
            )
        try:
            if task.attempts >= ctx.settings.max_stage_attempts:
                await fail_task(
                    ctx,
                    task.task_id,
                    lease_owner,
                    f"gave up in {stage.name}: {task.attempts} attempts did not finish (worker crashed or hung); "
                    "the validator operator can see the cause in its logs",
                )
                return True
            await run_under_lease(ctx, task.task_id, lease_owner, stage.handler(ctx, task, lease_owner))
        except LeaseLost as error:
            logger.warning("stopped working on task %s: %s", task.task_id, error)
        except asyncio.CancelledError:
            await _release_on_shutdown(ctx, task.task_id, lease_owner)
            raise
        except Exception:
            logger.exception("%s failed on task %s", stage.name, task.task_id)
            await _after_unexpected_error(ctx, stage, task, lease_owner)
    return True
