"""Contestants: one training run of one miner's repo for one task.

Status: pending → dispatching (trainer chosen and committed before the job is posted) → training → trained | failed.
Every write is fenced on the task's lease (`LeaseLost` otherwise) and on the expected previous status.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import asyncpg

from validator.db.tasks import LeaseLost


class ContestantStatus(StrEnum):
    PENDING = "pending"
    DISPATCHING = "dispatching"
    TRAINING = "training"
    TRAINED = "trained"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (ContestantStatus.TRAINED, ContestantStatus.FAILED)


@dataclass(frozen=True)
class NewContestant:
    hotkey: str
    uid: int | None
    repo_url: str
    commit_hash: str
    job_id: UUID
    expected_repo_name: str


@dataclass(frozen=True)
class ContestantRow:
    task_id: UUID
    hotkey: str
    uid: int | None
    repo_url: str
    commit_hash: str
    job_id: UUID
    expected_repo_name: str
    trainer_url: str | None
    trainer_hotkey: str | None
    status: ContestantStatus
    output_repository: str | None
    error: str | None
    test_loss: float | None
    score: float | None
    is_valid: bool | None
    invalid_reason: str | None
    created_at: datetime
    dispatched_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> ContestantRow:
        values = {field.name: record[field.name] for field in dataclasses.fields(cls)}
        values["status"] = ContestantStatus(values["status"])
        return cls(**values)


async def insert_contestants(conn: asyncpg.Connection, *, task_id: UUID, contestants: list[NewContestant]) -> None:
    await conn.executemany(
        """
        INSERT INTO contestants (task_id, hotkey, uid, repo_url, commit_hash, job_id, expected_repo_name)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        [
            (task_id, item.hotkey, item.uid, item.repo_url, item.commit_hash, item.job_id, item.expected_repo_name)
            for item in contestants
        ],
    )


async def list_contestants(conn: asyncpg.Connection, *, task_id: UUID) -> list[ContestantRow]:
    records = await conn.fetch("SELECT * FROM contestants WHERE task_id = $1 ORDER BY uid NULLS LAST, hotkey", task_id)
    return [ContestantRow.from_record(record) for record in records]


async def _update(conn: asyncpg.Connection, query: str, job_id: UUID, lease_owner: str, *args: Any) -> None:
    record = await conn.fetchrow(query, job_id, lease_owner, *args)
    if record is None:
        raise LeaseLost(f"contestant job {job_id}: task lease lost or contestant not in the expected status")


# `FROM tasks` fences each write on the task lease: a worker that lost its lease changes nothing.
async def mark_dispatching(
    conn: asyncpg.Connection, *, job_id: UUID, lease_owner: str, trainer_url: str, trainer_hotkey: str
) -> None:
    """Commit the chosen trainer before the job is posted, so a restart re-posts to the same trainer."""
    await _update(
        conn,
        """
        UPDATE contestants AS c
        SET status = 'dispatching', trainer_url = $3, trainer_hotkey = $4
        FROM tasks AS t
        WHERE c.job_id = $1 AND t.task_id = c.task_id AND t.lease_owner = $2 AND c.status = 'pending'
        RETURNING c.job_id
        """,
        job_id,
        lease_owner,
        trainer_url,
        trainer_hotkey,
    )


async def mark_training(conn: asyncpg.Connection, *, job_id: UUID, lease_owner: str) -> None:
    await _update(
        conn,
        """
        UPDATE contestants AS c
        SET status = 'training', dispatched_at = COALESCE(c.dispatched_at, now())
        FROM tasks AS t
        WHERE c.job_id = $1 AND t.task_id = c.task_id AND t.lease_owner = $2 AND c.status = 'dispatching'
        RETURNING c.job_id
        """,
        job_id,
        lease_owner,
    )


async def return_to_pending(conn: asyncpg.Connection, *, job_id: UUID, lease_owner: str) -> None:
    """The trainer refused the job for lack of room (so it does not exist): choose a trainer again later."""
    await _update(
        conn,
        """
        UPDATE contestants AS c
        SET status = 'pending', trainer_url = NULL, trainer_hotkey = NULL
        FROM tasks AS t
        WHERE c.job_id = $1 AND t.task_id = c.task_id AND t.lease_owner = $2 AND c.status = 'dispatching'
        RETURNING c.job_id
        """,
        job_id,
        lease_owner,
    )


async def mark_trained(conn: asyncpg.Connection, *, job_id: UUID, lease_owner: str, output_repository: str) -> None:
    await _update(
        conn,
        """
        UPDATE contestants AS c
        SET status = 'trained', output_repository = $3, finished_at = now()
        FROM tasks AS t
        WHERE c.job_id = $1 AND t.task_id = c.task_id AND t.lease_owner = $2
          AND c.status IN ('dispatching', 'training')
        RETURNING c.job_id
        """,
        job_id,
        lease_owner,
        output_repository,
    )


async def mark_failed(conn: asyncpg.Connection, *, job_id: UUID, lease_owner: str, error: str) -> None:
    await _update(
        conn,
        """
        UPDATE contestants AS c
        SET status = 'failed', error = $3, is_valid = false, invalid_reason = $3, score = 0, finished_at = now()
        FROM tasks AS t
        WHERE c.job_id = $1 AND t.task_id = c.task_id AND t.lease_owner = $2
          AND c.status IN ('pending', 'dispatching', 'training')
        RETURNING c.job_id
        """,
        job_id,
        lease_owner,
        error,
    )


async def set_validity(
    conn: asyncpg.Connection, *, job_id: UUID, lease_owner: str, is_valid: bool, invalid_reason: str | None
) -> None:
    """The pre-evaluation verdict on a trained output; an invalid one scores 0."""
    await _update(
        conn,
        """
        UPDATE contestants AS c
        SET is_valid = $3, invalid_reason = $4, score = CASE WHEN $3 THEN c.score ELSE 0 END
        FROM tasks AS t
        WHERE c.job_id = $1 AND t.task_id = c.task_id AND t.lease_owner = $2
        RETURNING c.job_id
        """,
        job_id,
        lease_owner,
        is_valid,
        invalid_reason,
    )


async def set_score(
    conn: asyncpg.Connection,
    *,
    job_id: UUID,
    lease_owner: str,
    test_loss: float | None,
    score: float,
    is_valid: bool,
    invalid_reason: str | None,
) -> None:
    await _update(
        conn,
        """
        UPDATE contestants AS c
        SET test_loss = $3, score = $4, is_valid = $5, invalid_reason = $6
        FROM tasks AS t
        WHERE c.job_id = $1 AND t.task_id = c.task_id AND t.lease_owner = $2
        RETURNING c.job_id
        """,
        job_id,
        lease_owner,
        test_loss,
        score,
        is_valid,
        invalid_reason,
    )


async def count_jobs_training(conn: asyncpg.Connection) -> int:
    """Training jobs dispatched and not finished, of tasks still running (a deleted task's jobs no longer count)."""
    return await conn.fetchval(
        """
        SELECT count(*) FROM contestants AS c JOIN tasks AS t ON t.task_id = c.task_id
        WHERE c.status IN ('dispatching', 'training') AND t.status NOT IN ('success', 'failure')
        """
    )
