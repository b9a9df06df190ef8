"""Inputs of the weight setter (scores of recently finished tasks) and the weight sets it sent to the chain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class TaskScore:
    task_id: UUID
    hotkey: str
    score: float
    finished_at: datetime
    task_type: str = ""
    uid: int | None = None  # the hotkey's uid when it became a contestant


@dataclass(frozen=True)
class WeightSetRow:
    weight_set_id: int
    block: int
    validator_hotkey: str
    version_key: int
    weights: dict[str, float]  # by hotkey
    uids: list[int]
    inputs: dict[str, Any]
    created_at: datetime
    evaluated_at: datetime | None = None  # None: stored before the auditable format (migration 0002)
    weights_by_uid: dict[int, float] | None = None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> WeightSetRow:
        by_uid = r["weights_by_uid"]
        return cls(
            weight_set_id=r["weight_set_id"],
            block=r["block"],
            validator_hotkey=r["validator_hotkey"],
            version_key=r["version_key"],
            weights=r["weights"],
            uids=list(r["uids"]),
            inputs=r["inputs"],
            created_at=r["created_at"],
            evaluated_at=r["evaluated_at"],
            weights_by_uid={int(uid): weight for uid, weight in by_uid.items()} if by_uid is not None else None,
        )


async def list_task_scores(conn: asyncpg.Connection, *, since: datetime, until: datetime) -> list[TaskScore]:
    """Every contestant score of tasks that reached success with since <= finished_at <= until."""
    records = await conn.fetch(
        """
        SELECT c.task_id, t.task_type, t.finished_at, c.hotkey, c.uid, c.score
        FROM contestants AS c
        JOIN tasks AS t ON t.task_id = c.task_id
        WHERE t.status = 'success'
          AND t.finished_at >= $1 AND t.finished_at <= $2
          AND c.score IS NOT NULL
        ORDER BY t.finished_at, c.task_id, c.hotkey
        """,
        since,
        until,
    )
    return [
        TaskScore(
            task_id=r["task_id"],
            hotkey=r["hotkey"],
            score=r["score"],
            finished_at=r["finished_at"],
            task_type=r["task_type"],
            uid=r["uid"],
        )
        for r in records
    ]


async def insert_weight_set(
    conn: asyncpg.Connection,
    *,
    block: int,
    validator_hotkey: str,
    version_key: int,
    weights: dict[str, float],
    uids: list[int],
    inputs: dict[str, Any],
    evaluated_at: datetime | None = None,
    weights_by_uid: Mapping[int, float] | None = None,
) -> int:
    return await conn.fetchval(
        """
        INSERT INTO weight_sets (block, validator_hotkey, version_key, weights, uids, inputs, evaluated_at,
                                 weights_by_uid)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        RETURNING weight_set_id
        """,
        block,
        validator_hotkey,
        version_key,
        weights,
        uids,
        inputs,
        evaluated_at,
        {str(uid): weight for uid, weight in weights_by_uid.items()} if weights_by_uid is not None else None,
    )


async def list_weight_sets(conn: asyncpg.Connection, *, limit: int = 10) -> list[WeightSetRow]:
    """The newest weight sets first."""
    records = await conn.fetch("SELECT * FROM weight_sets ORDER BY weight_set_id DESC LIMIT $1", limit)
    return [WeightSetRow.from_record(r) for r in records]


async def get_weight_set(conn: asyncpg.Connection, *, weight_set_id: int) -> WeightSetRow | None:
    record = await conn.fetchrow("SELECT * FROM weight_sets WHERE weight_set_id = $1", weight_set_id)
    return WeightSetRow.from_record(record) if record is not None else None


async def latest_auditable_weight_set(conn: asyncpg.Connection) -> WeightSetRow | None:
    """The newest weight set stored with its full inputs (every one since migration 0002)."""
    record = await conn.fetchrow(
        "SELECT * FROM weight_sets WHERE evaluated_at IS NOT NULL ORDER BY weight_set_id DESC LIMIT 1"
    )
    return WeightSetRow.from_record(record) if record is not None else None
