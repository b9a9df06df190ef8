"""Read-only queries behind the public auditing pages: finished tasks and their submissions' results.

Only the columns the public may see are selected (never the account, the dataset or the customer's model names).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

FINISHED_STATUSES = ["success", "failure"]


@dataclass(frozen=True)
class AuditSubmission:
    hotkey: str
    uid: int | None
    test_loss: float | None
    score: float | None


@dataclass(frozen=True)
class AuditTask:
    task_id: UUID
    task_type: str
    base_model: str
    status: str
    finished_at: datetime | None
    submissions: list[AuditSubmission]


_TASK_COLUMNS = "t.task_id, t.task_type, t.model_repo, t.status, t.finished_at"


async def _with_submissions(conn: asyncpg.Connection, records: list[asyncpg.Record]) -> list[AuditTask]:
    task_ids = [record["task_id"] for record in records]
    submissions: dict[UUID, list[AuditSubmission]] = {task_id: [] for task_id in task_ids}
    if task_ids:
        rows = await conn.fetch(
            """
            SELECT task_id, hotkey, uid, test_loss, score
            FROM contestants
            WHERE task_id = ANY($1::uuid[])
            ORDER BY task_id, score DESC NULLS LAST, hotkey
            """,
            task_ids,
        )
        for row in rows:
            submissions[row["task_id"]].append(
                AuditSubmission(hotkey=row["hotkey"], uid=row["uid"], test_loss=row["test_loss"], score=row["score"])
            )
    return [
        AuditTask(
            task_id=record["task_id"],
            task_type=record["task_type"],
            base_model=record["model_repo"],
            status=record["status"],
            finished_at=record["finished_at"],
            submissions=submissions[record["task_id"]],
        )
        for record in records
    ]


async def list_finished_tasks(
    conn: asyncpg.Connection, *, limit: int, offset: int, hotkey: str | None = None
) -> list[AuditTask]:
    """Finished tasks newest first (optionally only those `hotkey` took part in)."""
    records = await conn.fetch(
        f"""
        SELECT {_TASK_COLUMNS}
        FROM tasks AS t
        WHERE t.status = ANY($1::text[])
          AND ($2::text IS NULL OR EXISTS (
              SELECT 1 FROM contestants AS c WHERE c.task_id = t.task_id AND c.hotkey = $2
          ))
        ORDER BY t.finished_at DESC NULLS LAST, t.task_id DESC
        LIMIT $3 OFFSET $4
        """,
        FINISHED_STATUSES,
        hotkey,
        limit,
        offset,
    )
    return await _with_submissions(conn, records)


async def get_finished_task(conn: asyncpg.Connection, *, task_id: UUID) -> AuditTask | None:
    """The task if it has finished; a task still in progress reads as missing."""
    records = await conn.fetch(
        f"SELECT {_TASK_COLUMNS} FROM tasks AS t WHERE t.task_id = $1 AND t.status = ANY($2::text[])",
        task_id,
        FINISHED_STATUSES,
    )
    tasks = await _with_submissions(conn, records)
    return tasks[0] if tasks else None
