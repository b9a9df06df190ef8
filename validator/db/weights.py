"""Inputs of the weight setter (scores of recently finished tasks) and the weight sets it sent to the chain."""

from __future__ import annotations

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


@dataclass(frozen=True)
class WeightSetRow:
    weight_set_id: int
    block: int
    validator_hotkey: str
    version_key: int
    weights: dict[str, float]
    uids: list[int]
    inputs: dict[str, Any]
    created_at: datetime


async def list_recent_scores(conn: asyncpg.Connection, *, window_seconds: float) -> list[TaskScore]:
    """Every contestant score of tasks that reached success within the last `window_seconds`."""
    records = await conn.fetch(
        """
        SELECT c.task_id, c.hotkey, c.score, t.finished_at
        FROM contestants AS c
        JOIN tasks AS t ON t.task_id = c.task_id
        WHERE t.status = 'success'
          AND t.finished_at >= now() - make_interval(secs => $1)
          AND c.score IS NOT NULL
        ORDER BY t.finished_at, c.hotkey
        """,
        window_seconds,
    )
    return [
        TaskScore(task_id=r["task_id"], hotkey=r["hotkey"], score=r["score"], finished_at=r["finished_at"])
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
) -> int:
    return await conn.fetchval(
        """
        INSERT INTO weight_sets (block, validator_hotkey, version_key, weights, uids, inputs)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING weight_set_id
        """,
        block,
        validator_hotkey,
        version_key,
        weights,
        uids,
        inputs,
    )


async def list_weight_sets(conn: asyncpg.Connection, *, limit: int = 10) -> list[WeightSetRow]:
    """The newest weight sets first."""
    records = await conn.fetch("SELECT * FROM weight_sets ORDER BY weight_set_id DESC LIMIT $1", limit)
    return [
        WeightSetRow(
            weight_set_id=r["weight_set_id"],
            block=r["block"],
            validator_hotkey=r["validator_hotkey"],
            version_key=r["version_key"],
            weights=r["weights"],
            uids=list(r["uids"]),
            inputs=r["inputs"],
            created_at=r["created_at"],
        )
        for r in records
    ]
