"""A task that fails before its training starts is refunded exactly once; one that fails later is not."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from core.tasks import TaskStatus
from tests.validator.conftest import events, get_task, insert_task, run_until
from validator.db import ledger as ledger_db, tasks as tasks_db
from validator.workers import WorkerContext, prepare
from validator.workers.runner import fail_task


async def paid_task(pool: asyncpg.Pool, ds_repo: str, price: Decimal = Decimal("12.5")) -> tuple[uuid.UUID, uuid.UUID]:
    task = await insert_task(pool, ds_repo=ds_repo, account="payer")
    async with pool.acquire() as conn, conn.transaction():
        await ledger_db.credit_deposit(
            conn,
            account_id=task.account_id,
            transfer_id=f"t-{task.task_id}",
            amount_tao=Decimal(1),
            usd_per_tao=Decimal(20),
            amount_usd=Decimal(20),
        )
        await ledger_db.charge_for_task(conn, account_id=task.account_id, task_id=task.task_id, price_usd=price)
    return task.task_id, task.account_id


async def balance(pool: asyncpg.Pool, account_id: uuid.UUID) -> Decimal:
    async with pool.acquire() as conn:
        value = await ledger_db.get_balance(conn, account_id=account_id)
        assert await ledger_db.ledger_sum(conn, account_id=account_id) == value
        return value


async def test_a_task_failing_in_data_preparation_is_refunded_once(ctx: WorkerContext, tmp_path: Path) -> None:
    task_id, account_id = await paid_task(ctx.pool, str(tmp_path / "missing.json"))
    assert await balance(ctx.pool, account_id) == Decimal("7.5")

    task = await run_until(ctx, prepare.STAGE, task_id, {TaskStatus.FAILURE})

    assert task.status is TaskStatus.FAILURE
    assert await balance(ctx.pool, account_id) == Decimal("20")
    assert ("failure", "refunded $12.50: training never started") in await events(ctx.pool, task_id)
    async with ctx.pool.acquire() as conn:
        assert await ledger_db.refund_task(conn, task_id=task_id) is None  # a second refund is refused
    assert await balance(ctx.pool, account_id) == Decimal("20")


@pytest.mark.parametrize("training_started", [False, True])
async def test_refunds_depend_on_whether_training_started(ctx: WorkerContext, training_started: bool) -> None:
    task_id, account_id = await paid_task(ctx.pool, "org/data")
    async with ctx.pool.acquire() as conn:
        claimed = await tasks_db.claim_task(conn, statuses=[TaskStatus.PENDING], lease_owner="w", lease_seconds=30)
        assert claimed is not None and claimed.task.task_id == task_id
        if training_started:
            await tasks_db.set_termination(conn, task_id=task_id, lease_owner="w")

    await fail_task(ctx, task_id, "w", "all training jobs failed")

    assert (await get_task(ctx.pool, task_id)).status is TaskStatus.FAILURE
    assert await balance(ctx.pool, account_id) == (Decimal("7.5") if training_started else Decimal("20"))


async def test_free_tasks_have_nothing_to_refund(ctx: WorkerContext, tmp_path: Path) -> None:
    task = await insert_task(ctx.pool, ds_repo=str(tmp_path / "missing.json"), account="free")

    await run_until(ctx, prepare.STAGE, task.task_id, {TaskStatus.FAILURE})

    async with ctx.pool.acquire() as conn:
        assert await ledger_db.list_entries(conn, account_id=task.account_id) == []
        assert await ledger_db.get_balance(conn, account_id=task.account_id) == 0
