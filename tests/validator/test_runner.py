"""Leases: one worker per task at a time, crashed workers' tasks are taken over, and repeated failures end a task."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from core.tasks import TaskStatus
from tests.validator.conftest import get_task, insert_task
from validator.db import tasks as tasks_db
from validator.db.tasks import LeaseLost, TaskRow
from validator.workers import Stage, WorkerContext, run_stage_once
from validator.workers.runner import transition


class Recorder:
    """A stage handler that records what it saw and how many copies of it ran at once."""

    def __init__(self, *, seconds: float = 0.0, then: TaskStatus | None = TaskStatus.PREPARING_DATA) -> None:
        self.seconds = seconds
        self.then = then
        self.active = 0
        self.max_active = 0
        self.seen: list[TaskRow] = []
        self.cancelled = 0

    async def __call__(self, ctx: WorkerContext, task: TaskRow, lease_owner: str) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.seen.append(task)
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
        if self.then is not None:
            await transition(ctx, task.task_id, lease_owner, self.then, "done by the test stage")


def stage(handler) -> Stage:
    return Stage(name="test stage", statuses=(TaskStatus.PENDING,), handler=handler)


async def test_concurrent_workers_never_work_on_one_task_together(ctx: WorkerContext, dataset_file) -> None:
    task = await insert_task(ctx.pool, ds_repo=str(dataset_file))
    recorder = Recorder(seconds=0.3)

    worked = await asyncio.gather(
        *(run_stage_once(ctx, stage(recorder), lease_owner=f"worker-{index}") for index in range(4))
    )

    assert sorted(worked) == [False, False, False, True]
    assert recorder.max_active == 1
    assert [seen.task_id for seen in recorder.seen] == [task.task_id]
    assert (await get_task(ctx.pool, task.task_id)).status is TaskStatus.PREPARING_DATA


async def test_concurrent_workers_take_different_tasks(ctx: WorkerContext, dataset_file) -> None:
    first = await insert_task(ctx.pool, ds_repo=str(dataset_file))
    second = await insert_task(ctx.pool, ds_repo=str(dataset_file))
    recorder = Recorder(seconds=0.2)

    worked = await asyncio.gather(*(run_stage_once(ctx, stage(recorder), lease_owner=f"w{i}") for i in range(2)))

    assert worked == [True, True]
    assert {seen.task_id for seen in recorder.seen} == {first.task_id, second.task_id}


async def claim(pool: asyncpg.Pool, owner: str, lease_seconds: float) -> TaskRow | None:
    async with pool.acquire() as conn:
        claimed = await tasks_db.claim_task(
            conn, statuses=[TaskStatus.PENDING], lease_owner=owner, lease_seconds=lease_seconds
        )
    return claimed.task if claimed else None


async def test_a_leased_task_is_not_claimed_but_an_expired_lease_is_taken_over(
    ctx: WorkerContext, dataset_file
) -> None:
    task = await insert_task(ctx.pool, ds_repo=str(dataset_file))
    assert (await claim(ctx.pool, "crashed-worker", lease_seconds=0.3)).task_id == task.task_id
    recorder = Recorder()

    assert await run_stage_once(ctx, stage(recorder), lease_owner="second") is False
    await asyncio.sleep(0.4)  # the crashed worker never renews
    assert await run_stage_once(ctx, stage(recorder), lease_owner="second") is True

    assert recorder.seen[0].attempts == 1  # the takeover counts as a failed attempt
    assert recorder.seen[0].lease_owner == "second"
    # The crashed worker, should it wake up, can no longer change the task.
    async with ctx.pool.acquire() as conn:
        with pytest.raises(LeaseLost):
            await tasks_db.set_status(
                conn, task_id=task.task_id, lease_owner="crashed-worker", status=TaskStatus.FAILURE, message="late"
            )
    task = await get_task(ctx.pool, task.task_id)
    assert task.status is TaskStatus.PREPARING_DATA
    assert task.attempts == 0 and task.lease_owner is None


async def test_the_lease_is_renewed_while_the_work_runs(ctx: WorkerContext, dataset_file) -> None:
    ctx.settings.lease_seconds = 0.3
    task = await insert_task(ctx.pool, ds_repo=str(dataset_file))
    slow = Recorder(seconds=1.0)
    intruder = Recorder()

    working = asyncio.create_task(run_stage_once(ctx, stage(slow), lease_owner="slow"))
    await asyncio.sleep(0.6)  # twice the lease: only renewal keeps the task
    intruded = await run_stage_once(ctx, stage(intruder), lease_owner="intruder")

    assert intruded is False
    assert await working is True
    assert intruder.seen == []
    assert (await get_task(ctx.pool, task.task_id)).status is TaskStatus.PREPARING_DATA


async def test_work_stops_when_the_lease_is_lost(ctx: WorkerContext, dataset_file) -> None:
    ctx.settings.lease_seconds = 0.3
    task = await insert_task(ctx.pool, ds_repo=str(dataset_file))
    slow = Recorder(seconds=5.0)

    working = asyncio.create_task(run_stage_once(ctx, stage(slow), lease_owner="slow"))
    await asyncio.sleep(0.05)
    async with ctx.pool.acquire() as conn:
        await conn.execute("UPDATE tasks SET lease_owner = 'someone-else' WHERE task_id = $1", task.task_id)

    assert await asyncio.wait_for(working, 2.0) is True
    assert slow.cancelled == 1
    task = await get_task(ctx.pool, task.task_id)
    assert task.status is TaskStatus.PENDING and task.lease_owner == "someone-else"


async def test_a_stage_that_keeps_crashing_fails_the_task_after_max_attempts(ctx: WorkerContext, dataset_file) -> None:
    task = await insert_task(ctx.pool, ds_repo=str(dataset_file))
    calls = 0

    async def broken(ctx: WorkerContext, task: TaskRow, lease_owner: str) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug in the stage")

    for _ in range(200):
        await run_stage_once(ctx, stage(broken), lease_owner="worker")
        if (await get_task(ctx.pool, task.task_id)).status.is_terminal:
            break
        await asyncio.sleep(0.05)

    task = await get_task(ctx.pool, task.task_id)
    assert calls == ctx.settings.max_stage_attempts
    assert task.status is TaskStatus.FAILURE
    assert task.error.startswith("internal error in test stage after 3 attempts")
    assert "bug in the stage" not in task.error  # internals stay in the logs
    assert task.finished_at is not None and task.lease_owner is None
