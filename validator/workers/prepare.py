"""pending → preparing_data → looking_for_nodes: fetch the dataset, map its columns, split it, store train/test."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from core.stores import StoreError
from core.tasks import TaskStatus
from validator.data import (
    DataPreparationError,
    display_source,
    instruct_dataset_type,
    load_rows,
    prepare_instruct_rows,
    rows_to_json_bytes,
    split_rows,
)
from validator.db import tasks as tasks_db
from validator.db.tasks import TaskRow
from validator.workers.context import WorkerContext
from validator.workers.runner import Stage, fail_task, transition

logger = logging.getLogger(__name__)


def train_key(task_id: object) -> str:
    return f"tasks/{task_id}/train.json"


def test_key(task_id: object) -> str:
    return f"tasks/{task_id}/test.json"


def _load_and_split(ctx: WorkerContext, task: TaskRow) -> tuple[int, list[dict], list[dict], int]:
    """Blocking (download, parsing, shuffling): run it in a thread."""
    request = task.request
    rows = load_rows(
        task.ds_repo,
        task.file_format,
        artifact_store=ctx.artifact_store,
        allow_local_paths=ctx.settings.allow_local_datasets,
    )
    prepared, dropped = prepare_instruct_rows(
        rows,
        field_instruction=request["field_instruction"],
        field_input=request.get("field_input"),
        field_output=request.get("field_output"),
        field_system=request.get("field_system"),
    )
    train_rows, test_rows = split_rows(
        prepared,
        seed=task.split_seed,
        test_fraction=ctx.settings.test_fraction,
        max_test_rows=ctx.settings.max_test_rows,
        min_rows=ctx.settings.min_dataset_rows,
    )
    return len(rows), train_rows, test_rows, dropped


async def prepare_data(ctx: WorkerContext, task: TaskRow, lease_owner: str) -> None:
    if task.status is TaskStatus.PENDING:
        await transition(
            ctx,
            task.task_id,
            lease_owner,
            TaskStatus.PREPARING_DATA,
            f"preparing data from {display_source(task.ds_repo)}",
            release=False,
        )

    # A missing base model fails the task now rather than after hours of training.
    try:
        model_found = await asyncio.to_thread(ctx.model_store.exists, task.model_repo)
    except StoreError as error:
        await fail_task(ctx, task.task_id, lease_owner, f"model_repo: {error}")
        return
    if not model_found:
        await fail_task(
            ctx,
            task.task_id,
            lease_owner,
            f"model_repo: base model {task.model_repo!r} was not found in the model store",
        )
        return

    request = task.request
    try:
        n_rows, train_rows, test_rows, dropped = await asyncio.to_thread(_load_and_split, ctx, task)
    except DataPreparationError as error:
        logger.info("data preparation of task %s failed: %s", task.task_id, error)
        await fail_task(ctx, task.task_id, lease_owner, f"data preparation failed: {error}")
        return

    dataset_type = instruct_dataset_type(
        field_input=request.get("field_input"),
        field_system=request.get("field_system"),
        format=request.get("format"),
        no_input_format=request.get("no_input_format"),
        system_format=request.get("system_format"),
    )
    # Written before the status change: a crash in between only rewrites the same keys on the retry.
    await asyncio.to_thread(ctx.artifact_store.put_bytes, train_key(task.task_id), rows_to_json_bytes(train_rows))
    await asyncio.to_thread(ctx.artifact_store.put_bytes, test_key(task.task_id), rows_to_json_bytes(test_rows))

    async def save(conn: asyncpg.Connection) -> None:
        await tasks_db.save_prepared_data(
            conn,
            task_id=task.task_id,
            lease_owner=lease_owner,
            dataset_type=dataset_type.model_dump(mode="json"),
            train_artifact_key=train_key(task.task_id),
            test_artifact_key=test_key(task.task_id),
            train_rows=len(train_rows),
            test_rows=len(test_rows),
            dropped_rows=dropped,
        )
        await tasks_db.add_event(
            conn,
            task_id=task.task_id,
            status=TaskStatus.PREPARING_DATA,
            message=(
                f"read {n_rows} rows, dropped {dropped} (empty instruction or output, unusable cells or "
                f"duplicates); split into {len(train_rows)} training and {len(test_rows)} test rows"
            ),
        )

    await transition(
        ctx,
        task.task_id,
        lease_owner,
        TaskStatus.LOOKING_FOR_NODES,
        f"data ready: {len(train_rows)} training and {len(test_rows)} test rows",
        writes=save,
    )


STAGE = Stage(
    name="data preparation",
    statuses=(TaskStatus.PENDING, TaskStatus.PREPARING_DATA),
    handler=prepare_data,
)
