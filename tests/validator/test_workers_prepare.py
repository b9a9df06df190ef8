"""Data preparation: train/test artifacts and counts, or a failure whose reason the customer can act on."""

from __future__ import annotations

import json
from pathlib import Path

from core.tasks import TaskStatus
from tests.validator.conftest import events, get_task, insert_task, write_dataset
from tests.validator.fakes import word_rows
from validator.workers import WorkerContext, run_stage_once
from validator.workers.prepare import STAGE


async def prepare(ctx: WorkerContext) -> None:
    assert await run_stage_once(ctx, STAGE, lease_owner="prep-worker")


async def test_rows_are_mapped_split_and_stored(ctx: WorkerContext, tmp_path: Path) -> None:
    rows = word_rows(40, seed=3)
    rows[5]["answer"] = ""  # unusable
    rows[6] = dict(rows[7])  # duplicate
    task = await insert_task(ctx.pool, ds_repo=str(write_dataset(tmp_path, rows)))

    await prepare(ctx)

    task = await get_task(ctx.pool, task.task_id)
    assert task.status is TaskStatus.LOOKING_FOR_NODES
    assert (task.train_rows, task.test_rows, task.dropped_rows) == (35, 3, 2)
    assert task.started_at is not None and task.lease_owner is None
    train = json.loads(ctx.artifact_store.get_bytes(task.train_artifact_key))
    test = json.loads(ctx.artifact_store.get_bytes(task.test_artifact_key))
    assert task.train_artifact_key == f"tasks/{task.task_id}/train.json"
    assert task.test_artifact_key == f"tasks/{task.task_id}/test.json"
    assert len(train) == 35 and len(test) == 3
    assert set(train[0]) == {"instruct", "output"}
    held_out = {row["instruct"] for row in test}
    assert held_out.isdisjoint(row["instruct"] for row in train)
    assert task.dataset_type["field_instruction"] == "instruct"
    assert task.dataset_type["field_output"] == "output"
    log = await events(ctx.pool, task.task_id)
    assert [status for status, _ in log] == ["pending", "preparing_data", "preparing_data", "looking_for_nodes"]
    assert "read 40 rows, dropped 2" in log[2][1]


async def test_the_split_follows_the_tasks_seed(ctx: WorkerContext, dataset_file: Path) -> None:
    first = await insert_task(ctx.pool, ds_repo=str(dataset_file))
    second = await insert_task(ctx.pool, ds_repo=str(dataset_file))
    async with ctx.pool.acquire() as conn:
        await conn.execute("UPDATE tasks SET split_seed = 99 WHERE task_id = $1", second.task_id)

    await prepare(ctx)
    await prepare(ctx)

    tests = [
        json.loads(ctx.artifact_store.get_bytes((await get_task(ctx.pool, task.task_id)).test_artifact_key))
        for task in (first, second)
    ]
    assert tests[0] != tests[1]


async def test_a_missing_column_fails_the_task_naming_it(ctx: WorkerContext, dataset_file: Path) -> None:
    task = await insert_task(ctx.pool, ds_repo=str(dataset_file), field_instruction="prompt")

    await prepare(ctx)

    task = await get_task(ctx.pool, task.task_id)
    assert task.status is TaskStatus.FAILURE
    assert task.error.startswith("data preparation failed:")
    assert "'prompt'" in task.error
    assert task.finished_at is not None
    assert (await events(ctx.pool, task.task_id))[-1] == ("failure", task.error)


async def test_too_few_rows_fail_the_task_with_the_count(ctx: WorkerContext, tmp_path: Path) -> None:
    task = await insert_task(ctx.pool, ds_repo=str(write_dataset(tmp_path, word_rows(6))))

    await prepare(ctx)

    task = await get_task(ctx.pool, task.task_id)
    assert task.status is TaskStatus.FAILURE
    assert "6 usable rows" in task.error and "at least 10" in task.error


async def test_an_unknown_base_model_fails_before_any_data_is_read(ctx: WorkerContext, dataset_file: Path) -> None:
    task = await insert_task(ctx.pool, ds_repo=str(dataset_file), model_repo="nobody/nothing")

    await prepare(ctx)

    task = await get_task(ctx.pool, task.task_id)
    assert task.status is TaskStatus.FAILURE
    assert task.error == "model_repo: base model 'nobody/nothing' was not found in the model store"
    assert task.train_artifact_key is None
