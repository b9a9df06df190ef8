"""Tasks, their leases and their log.

A worker claims one task with `claim_task` (`FOR UPDATE SKIP LOCKED` plus a lease); every later write of that worker
is fenced on `lease_owner`, so a worker whose lease expired and was taken over cannot overwrite the new owner's work
(`LeaseLost`). Status changes go through `set_status`, which also writes the `task_events` row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from core.tasks import TaskStatus


class LeaseLost(Exception):
    """The worker no longer owns the task (its lease expired and another worker took it over)."""


@dataclass(frozen=True)
class TaskRow:
    task_id: UUID
    account_id: UUID
    task_type: str
    status: TaskStatus
    model_repo: str
    ds_repo: str
    file_format: str
    hours_to_complete: float
    request: dict[str, Any]
    dataset_type: dict[str, Any] | None
    result_model_name: str | None
    split_seed: int
    train_artifact_key: str | None
    test_artifact_key: str | None
    train_rows: int | None
    test_rows: int | None
    dropped_rows: int | None
    base_test_loss: float | None
    trained_model_repository: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    termination_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    attempts: int
    times_delayed: int
    next_attempt_at: datetime | None
    # When the customer deleted the task (hidden from the account's routes from then on); None while it is not.
    deleted_at: datetime | None = None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> TaskRow:
        values = {field.name: record[field.name] for field in dataclasses.fields(cls)}
        values["status"] = TaskStatus(values["status"])
        return cls(**values)


@dataclass(frozen=True)
class TaskEvent:
    at: datetime
    status: str
    message: str


@dataclass(frozen=True)
class ClaimedTask:
    task: TaskRow
    # Who held the lease before it expired (None when the task was free): a crash or a hung worker.
    previous_owner: str | None


_INSERT_TASK = """
INSERT INTO tasks (
    task_id, account_id, task_type, status, model_repo, ds_repo, file_format, hours_to_complete, request,
    result_model_name, split_seed
) VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, $10)
RETURNING *
"""

_INSERT_EVENT = "INSERT INTO task_events (task_id, status, message) VALUES ($1, $2, $3)"


async def insert_task(
    conn: asyncpg.Connection,
    *,
    task_id: UUID,
    account_id: UUID,
    task_type: str,
    model_repo: str,
    ds_repo: str,
    file_format: str,
    hours_to_complete: float,
    request: dict[str, Any],
    result_model_name: str | None,
    split_seed: int,
) -> TaskRow:
    """Insert a pending task and its first log line."""
    record = await conn.fetchrow(
        _INSERT_TASK,
        task_id,
        account_id,
        task_type,
        model_repo,
        ds_repo,
        file_format,
        hours_to_complete,
        request,
        result_model_name,
        split_seed,
    )
    await conn.execute(_INSERT_EVENT, task_id, TaskStatus.PENDING.value, "task created")
    return TaskRow.from_record(record)


async def get_task(conn: asyncpg.Connection, *, task_id: UUID) -> TaskRow | None:
    record = await conn.fetchrow("SELECT * FROM tasks WHERE task_id = $1", task_id)
    return TaskRow.from_record(record) if record is not None else None


async def get_account_task(conn: asyncpg.Connection, *, task_id: UUID, account_id: UUID) -> TaskRow | None:
    """The task if it belongs to the account and is not deleted (another account's task reads as missing)."""
    record = await conn.fetchrow(
        "SELECT * FROM tasks WHERE task_id = $1 AND account_id = $2 AND deleted_at IS NULL", task_id, account_id
    )
    return TaskRow.from_record(record) if record is not None else None


async def add_event(conn: asyncpg.Connection, *, task_id: UUID, status: TaskStatus | str, message: str) -> None:
    await conn.execute(_INSERT_EVENT, task_id, str(status), message)


async def list_events(conn: asyncpg.Connection, *, task_id: UUID) -> list[TaskEvent]:
    records = await conn.fetch(
        "SELECT at, status, message FROM task_events WHERE task_id = $1 ORDER BY event_id", task_id
    )
    return [TaskEvent(at=record["at"], status=record["status"], message=record["message"]) for record in records]


# The oldest due task in one of the statuses whose lease is free or expired. SKIP LOCKED makes concurrent claims
# pick different rows instead of queueing on the same one.
_CLAIM_TASK = """
WITH candidate AS (
    SELECT task_id, lease_owner AS previous_owner
    FROM tasks
    WHERE status = ANY($1::text[])
      AND deleted_at IS NULL
      AND (lease_until IS NULL OR lease_until < now())
      AND (next_attempt_at IS NULL OR next_attempt_at <= now())
    ORDER BY COALESCE(next_attempt_at, created_at), created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks AS t
SET lease_owner = $2,
    lease_until = now() + make_interval(secs => $3),
    attempts = t.attempts + CASE WHEN candidate.previous_owner IS NULL THEN 0 ELSE 1 END
FROM candidate
WHERE t.task_id = candidate.task_id
RETURNING t.*, candidate.previous_owner
"""


async def claim_task(
    conn: asyncpg.Connection, *, statuses: list[TaskStatus], lease_owner: str, lease_seconds: float
) -> ClaimedTask | None:
    """Lease one due task in one of `statuses`; None when there is none. Taking over an expired lease counts as
    a failed attempt at the current status."""
    record = await conn.fetchrow(_CLAIM_TASK, [str(status) for status in statuses], lease_owner, lease_seconds)
    if record is None:
        return None
    return ClaimedTask(task=TaskRow.from_record(record), previous_owner=record["previous_owner"])


async def renew_lease(conn: asyncpg.Connection, *, task_id: UUID, lease_owner: str, lease_seconds: float) -> bool:
    """Extend the lease; False when the worker no longer owns the task."""
    result = await conn.execute(
        "UPDATE tasks SET lease_until = now() + make_interval(secs => $3) WHERE task_id = $1 AND lease_owner = $2",
        task_id,
        lease_owner,
        lease_seconds,
    )
    return result != "UPDATE 0"


async def release_task(conn: asyncpg.Connection, *, task_id: UUID, lease_owner: str, retry_in_seconds: float) -> bool:
    """Give the task back, due again in `retry_in_seconds` (a polling stage's next look)."""
    result = await conn.execute(
        """
        UPDATE tasks
        SET lease_owner = NULL, lease_until = NULL, next_attempt_at = now() + make_interval(secs => $3)
        WHERE task_id = $1 AND lease_owner = $2
        """,
        task_id,
        lease_owner,
        retry_in_seconds,
    )
    return result != "UPDATE 0"


async def record_failed_attempt(conn: asyncpg.Connection, *, task_id: UUID, lease_owner: str) -> int | None:
    """Count an unexpected failure at the current status (the caller then retries later or gives up).

    Returns the number of failed attempts so far, or None when the worker no longer owns the task.
    """
    return await conn.fetchval(
        "UPDATE tasks SET attempts = attempts + 1, updated_at = now() "
        "WHERE task_id = $1 AND lease_owner = $2 RETURNING attempts",
        task_id,
        lease_owner,
    )


_SET_STATUS = """
UPDATE tasks
SET status = $3,
    error = COALESCE($4, error),
    started_at = CASE WHEN $5 THEN COALESCE(started_at, now()) ELSE started_at END,
    finished_at = CASE WHEN $6 THEN now() ELSE finished_at END,
    attempts = 0,
    next_attempt_at = NULL,
    lease_owner = CASE WHEN $7 THEN NULL ELSE lease_owner END,
    lease_until = CASE WHEN $7 THEN NULL ELSE lease_until END,
    updated_at = now()
WHERE task_id = $1 AND lease_owner = $2
RETURNING *
"""


async def set_status(
    conn: asyncpg.Connection,
    *,
    task_id: UUID,
    lease_owner: str,
    status: TaskStatus,
    message: str,
    error: str | None = None,
    release: bool = True,
) -> TaskRow:
    """Move the task to `status` and log `message` in its events; run it inside the caller's transaction.

    `release` hands the lease back so the next stage's worker can claim the task at once. Raises LeaseLost.
    """
    record = await conn.fetchrow(
        _SET_STATUS,
        task_id,
        lease_owner,
        str(status),
        error,
        status is TaskStatus.PREPARING_DATA,
        status.is_terminal,
        release or status.is_terminal,
    )
    if record is None:
        raise LeaseLost(f"task {task_id} is no longer leased by {lease_owner}")
    await conn.execute(_INSERT_EVENT, task_id, str(status), message)
    return TaskRow.from_record(record)


async def _fenced(conn: asyncpg.Connection, query: str, task_id: UUID, lease_owner: str, *args: Any) -> None:
    result = await conn.execute(query, task_id, lease_owner, *args)
    if result == "UPDATE 0":
        raise LeaseLost(f"task {task_id} is no longer leased by {lease_owner}")


async def save_prepared_data(
    conn: asyncpg.Connection,
    *,
    task_id: UUID,
    lease_owner: str,
    dataset_type: dict[str, Any],
    train_artifact_key: str,
    test_artifact_key: str,
    train_rows: int,
    test_rows: int,
    dropped_rows: int,
) -> None:
    await _fenced(
        conn,
        """
        UPDATE tasks
        SET dataset_type = $3, train_artifact_key = $4, test_artifact_key = $5, train_rows = $6, test_rows = $7,
            dropped_rows = $8, updated_at = now()
        WHERE task_id = $1 AND lease_owner = $2
        """,
        task_id,
        lease_owner,
        dataset_type,
        train_artifact_key,
        test_artifact_key,
        train_rows,
        test_rows,
        dropped_rows,
    )


async def delay_task(
    conn: asyncpg.Connection, *, task_id: UUID, lease_owner: str, delay_seconds: float, message: str
) -> TaskRow:
    """Move the task to `delayed`, due again `delay_seconds` from now (counted from now, not from an old due time)."""
    record = await conn.fetchrow(
        """
        UPDATE tasks
        SET status = 'delayed', times_delayed = times_delayed + 1, attempts = 0,
            next_attempt_at = now() + make_interval(secs => $3),
            lease_owner = NULL, lease_until = NULL, updated_at = now()
        WHERE task_id = $1 AND lease_owner = $2
        RETURNING *
        """,
        task_id,
        lease_owner,
        delay_seconds,
    )
    if record is None:
        raise LeaseLost(f"task {task_id} is no longer leased by {lease_owner}")
    await conn.execute(_INSERT_EVENT, task_id, TaskStatus.DELAYED.value, message)
    return TaskRow.from_record(record)


async def set_termination(conn: asyncpg.Connection, *, task_id: UUID, lease_owner: str) -> None:
    """Training starts now: the task's training window ends `hours_to_complete` from now."""
    await _fenced(
        conn,
        """
        UPDATE tasks
        SET termination_at = now() + make_interval(secs => hours_to_complete * 3600), updated_at = now()
        WHERE task_id = $1 AND lease_owner = $2
        """,
        task_id,
        lease_owner,
    )


async def save_results(
    conn: asyncpg.Connection,
    *,
    task_id: UUID,
    lease_owner: str,
    base_test_loss: float | None,
    trained_model_repository: str | None,
) -> None:
    await _fenced(
        conn,
        """
        UPDATE tasks
        SET base_test_loss = $3, trained_model_repository = $4, updated_at = now()
        WHERE task_id = $1 AND lease_owner = $2
        """,
        task_id,
        lease_owner,
        base_test_loss,
        trained_model_repository,
    )


# -- the customer's view: own tasks, paged, and deleting one (docs/api.md, "Monitoring") --


async def list_account_tasks(conn: asyncpg.Connection, *, account_id: UUID, limit: int, offset: int) -> list[TaskRow]:
    """The account's tasks that are not deleted, newest first."""
    records = await conn.fetch(
        """
        SELECT * FROM tasks WHERE account_id = $1 AND deleted_at IS NULL
        ORDER BY created_at DESC, task_id DESC LIMIT $2 OFFSET $3
        """,
        account_id,
        limit,
        offset,
    )
    return [TaskRow.from_record(record) for record in records]


def _like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_completed_account_tasks(
    conn: asyncpg.Connection,
    *,
    account_id: UUID,
    limit: int,
    offset: int,
    hours: float | None = None,
    task_type: str | None = None,
    model_name: str | None = None,
) -> list[TaskRow]:
    """The account's successful tasks, latest finished first: finished in the last `hours`, of `task_type`, and whose
    base model or result model name contains `model_name` (case-insensitive), each filter when given."""
    records = await conn.fetch(
        """
        SELECT * FROM tasks
        WHERE account_id = $1 AND deleted_at IS NULL AND status = 'success'
          AND ($4::double precision IS NULL OR finished_at >= now() - make_interval(secs => $4 * 3600))
          AND ($5::text IS NULL OR task_type = $5)
          AND ($6::text IS NULL OR model_repo ILIKE $6 OR result_model_name ILIKE $6)
        ORDER BY finished_at DESC, task_id DESC LIMIT $2 OFFSET $3
        """,
        account_id,
        limit,
        offset,
        hours,
        task_type,
        _like_pattern(model_name) if model_name else None,
    )
    return [TaskRow.from_record(record) for record in records]


@dataclass(frozen=True)
class DeletedTask:
    task: TaskRow
    # True when the deletion ended the task (it was not finished); False when a finished task was only hidden.
    ended: bool


DELETED_BEFORE_TRAINING = "deleted by the customer before training started"
DELETED_AFTER_TRAINING_STARTED = "deleted by the customer after training started (not refunded)"

# An unfinished task ends in failure; clearing the lease fences out a worker still on it (its next write raises
# LeaseLost), and claim_task skips deleted tasks. termination_at is set in the transaction that starts training.
_DELETE_TASK = """
WITH old AS (
    SELECT task_id, status IN ('success', 'failure') AS finished, termination_at IS NOT NULL AS trained
    FROM tasks WHERE task_id = $1 AND account_id = $2 AND deleted_at IS NULL
    FOR UPDATE
)
UPDATE tasks AS t
SET deleted_at = now(), updated_at = now(),
    status = CASE WHEN old.finished THEN t.status ELSE 'failure' END,
    error = CASE WHEN old.finished THEN t.error WHEN old.trained THEN $4 ELSE $3 END,
    finished_at = CASE WHEN old.finished THEN t.finished_at ELSE now() END,
    lease_owner = CASE WHEN old.finished THEN t.lease_owner END,
    lease_until = CASE WHEN old.finished THEN t.lease_until END,
    next_attempt_at = CASE WHEN old.finished THEN t.next_attempt_at END
FROM old
WHERE t.task_id = old.task_id
RETURNING t.*, old.finished AS was_finished
"""


async def delete_account_task(conn: asyncpg.Connection, *, task_id: UUID, account_id: UUID) -> DeletedTask | None:
    """Delete the account's task: hide it, and end it (status failure) when it is not finished. None when the account
    has no such task or deleted it already. Run it in one transaction with the refund (docs/api.md)."""
    record = await conn.fetchrow(
        _DELETE_TASK, task_id, account_id, DELETED_BEFORE_TRAINING, DELETED_AFTER_TRAINING_STARTED
    )
    if record is None:
        return None
    task = TaskRow.from_record(record)
    ended = not record["was_finished"]
    message = task.error if ended else "deleted by the customer (hidden)"
    await conn.execute(_INSERT_EVENT, task_id, str(task.status), message)
    return DeletedTask(task=task, ended=ended)


async def count_tasks_by_status(conn: asyncpg.Connection) -> dict[str, int]:
    """How many tasks are in each status (deleted ones included: they were real work)."""
    records = await conn.fetch("SELECT status, count(*) AS n FROM tasks GROUP BY status")
    return {record["status"]: record["n"] for record in records}
