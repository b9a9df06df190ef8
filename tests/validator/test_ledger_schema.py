"""The ledger's guards in the schema itself, and migration 0003 rolling back and forward."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import pytest

from core.db import apply_migrations, rollback_migrations
from validator.db import MIGRATIONS_DIR, accounts as accounts_db, ledger as ledger_db


async def test_the_balance_cannot_go_negative_even_by_hand(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        account = await accounts_db.create_account(conn, name="hank", fingerprint="godf_hank")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE accounts SET balance_usd = -1 WHERE account_id = $1", account.account_id)
        with pytest.raises(ledger_db.InsufficientBalance):
            await ledger_db.charge_for_task(
                conn, account_id=account.account_id, task_id=uuid.uuid4(), price_usd=Decimal("0.01")
            )
        with pytest.raises(asyncpg.CheckViolationError):  # a deposit needs its transfer
            await conn.execute(
                "INSERT INTO ledger_entries (account_id, kind, amount_usd) VALUES ($1, 'deposit', 5)",
                account.account_id,
            )
        assert await ledger_db.list_entries(conn, account_id=account.account_id) == []


async def test_migrations_0003_and_0004_roll_back_and_forward(pool: asyncpg.Pool) -> None:
    rolled_back = await rollback_migrations(pool, MIGRATIONS_DIR, steps=2)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('ledger_entries')") is None
        columns = {
            row["column_name"]
            for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts'"
            )
        }
    assert columns == {"account_id", "name", "created_at"}
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_name = 'tasks' AND column_name = 'deleted_at'"
            )
            == 0
        )

    assert await apply_migrations(pool, MIGRATIONS_DIR) == rolled_back[::-1]  # rolled back newest first
    assert len(rolled_back) == 2 and {label[:4] for label in rolled_back} == {"0003", "0004"}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('ledger_entries')") is not None
