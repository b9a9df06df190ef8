"""Data preparation: train/test artifacts and counts, or a failure whose reason the customer can act on."""

from __future__ import annotations

import dataclasses
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


async def failure_of(ctx: WorkerContext, ds_repo: str, **fields: object) -> str:
    """Prepare one task from `ds_repo` and return its failure reason (the task must fail on the first attempt)."""
    task = await insert_task(ctx.pool, ds_repo=ds_repo, **fields)
    await prepare(ctx)
    task = await get_task(ctx.pool, task.task_id)
    assert task.status is TaskStatus.FAILURE, task.status
    assert task.error.startswith("data preparation failed:"), task.error
    return task.error


async def test_cells_with_lone_surrogates_are_dropped_not_a_crash(ctx: WorkerContext, tmp_path: Path) -> None:
    rows = word_rows(40, seed=5)
    path = tmp_path / "surrogates.json"
    # json.dumps writes the lone surrogate as the escape "\ud800", which json.loads reads back as one.
    path.write_text(json.dumps([{**rows[0], "answer": "broken \ud800"}, *rows[1:]]))
    task = await insert_task(ctx.pool, ds_repo=str(path))

    await prepare(ctx)

    task = await get_task(ctx.pool, task.task_id)
    assert task.status is TaskStatus.LOOKING_FOR_NODES, task.error
    assert task.dropped_rows == 1 and task.train_rows + task.test_rows == 39


async def test_json_the_parser_cannot_read_fails_the_task_with_the_reason(ctx: WorkerContext, tmp_path: Path) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    huge = tmp_path / "huge.jsonl"
    huge.write_text('{"question": "q", "answer": ' + "7" * 5000 + "}\n")

    assert "nested.json nests JSON lists or objects too deeply" in await failure_of(ctx, str(nested))
    assert "huge.jsonl line 1 holds an integer with more than" in await failure_of(ctx, str(huge))


async def test_hostile_column_names_still_give_a_stored_reason(ctx: WorkerContext, tmp_path: Path) -> None:
    path = write_dataset(tmp_path, [{"question\u0000": "q", "answer": "a", "\ud800": "x"}] * 20)

    error = await failure_of(ctx, str(path))

    assert "'question' (field_instruction) not found" in error
    assert "question\\x00" in error and "\\ud800" in error


async def test_a_malformed_url_fails_the_task_instead_of_the_stage(ctx: WorkerContext) -> None:
    error = await failure_of(ctx, "http://[::1/rows.json?sig=secret")

    assert "http://[::1/rows.json" in error and "secret" not in error


async def test_urls_of_the_validators_own_network_are_refused(ctx: WorkerContext) -> None:
    public = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"allow_local_datasets": False}))

    error = await failure_of(public, "http://127.0.0.1:9001/openapi.json", file_format="s3")

    assert error == (
        "data preparation failed: ds_repo: http://127.0.0.1:9001/openapi.json points to a private or local address, "
        "which this validator does not fetch"
    )
