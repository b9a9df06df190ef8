"""The ledger of accounts' money: deposits, charges and refunds, one row each, amounts in USD.

An account's `balance_usd` is the sum of its entries; every function here that adds an entry changes the balance in
the same statement sequence, and must run inside the caller's transaction. Charges lock the account row
(`SELECT ... FOR UPDATE`) before reading the balance, so concurrent charges of one account queue and none can spend
what another already spent; the table's CHECK (balance >= 0) is the last guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg


class InsufficientBalance(Exception):
    def __init__(self, *, balance_usd: Decimal, price_usd: Decimal) -> None:
        super().__init__(f"the balance is ${balance_usd:.2f} but the task costs ${price_usd:.2f}")
        self.balance_usd = balance_usd
        self.price_usd = price_usd


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: int
    account_id: UUID
    kind: str
    amount_usd: Decimal
    task_id: UUID | None
    transfer_id: str | None
    amount_tao: Decimal | None
    usd_per_tao: Decimal | None
    created_at: datetime


async def _add_to_balance(conn: asyncpg.Connection, account_id: UUID, amount_usd: Decimal) -> Decimal:
    return await conn.fetchval(
        "UPDATE accounts SET balance_usd = balance_usd + $2 WHERE account_id = $1 RETURNING balance_usd",
        account_id,
        amount_usd,
    )


async def charge_for_task(conn: asyncpg.Connection, *, account_id: UUID, task_id: UUID, price_usd: Decimal) -> Decimal:
    """Charge the task's price; returns the balance left. Raises InsufficientBalance (nothing written then).

    Run it in the transaction that inserts the task, so a task exists exactly when it was paid for.
    """
    if price_usd <= 0:
        raise ValueError(f"a charge must be positive, got {price_usd}")
    balance = await conn.fetchval("SELECT balance_usd FROM accounts WHERE account_id = $1 FOR UPDATE", account_id)
    if balance is None:
        raise ValueError(f"account {account_id} does not exist")
    if balance < price_usd:
        raise InsufficientBalance(balance_usd=balance, price_usd=price_usd)
    await conn.execute(
        "INSERT INTO ledger_entries (account_id, kind, amount_usd, task_id) VALUES ($1, 'charge', $2, $3)",
        account_id,
        -price_usd,
        task_id,
    )
    return await _add_to_balance(conn, account_id, -price_usd)


async def refund_task(conn: asyncpg.Connection, *, task_id: UUID) -> Decimal | None:
    """Give back what the task was charged, once: returns the amount refunded, None when the task was not charged
    or is already refunded (a unique index allows one refund per task)."""
    record = await conn.fetchrow(
        """
        INSERT INTO ledger_entries (account_id, kind, amount_usd, task_id)
        SELECT account_id, 'refund', -amount_usd, task_id FROM ledger_entries WHERE task_id = $1 AND kind = 'charge'
        ON CONFLICT (task_id) WHERE kind = 'refund' DO NOTHING
        RETURNING account_id, amount_usd
        """,
        task_id,
    )
    if record is None:
        return None
    await _add_to_balance(conn, record["account_id"], record["amount_usd"])
    return record["amount_usd"]


async def credit_deposit(
    conn: asyncpg.Connection,
    *,
    account_id: UUID,
    transfer_id: str,
    amount_tao: Decimal,
    usd_per_tao: Decimal,
    amount_usd: Decimal,
) -> bool:
    """Credit a chain transfer to the account; False when this transfer was credited before (nothing written)."""
    inserted = await conn.fetchval(
        """
        INSERT INTO ledger_entries (account_id, kind, amount_usd, transfer_id, amount_tao, usd_per_tao)
        VALUES ($1, 'deposit', $2, $3, $4, $5)
        ON CONFLICT (transfer_id) DO NOTHING
        RETURNING entry_id
        """,
        account_id,
        amount_usd,
        transfer_id,
        amount_tao,
        usd_per_tao,
    )
    if inserted is None:
        return False
    await _add_to_balance(conn, account_id, amount_usd)
    return True


async def get_balance(conn: asyncpg.Connection, *, account_id: UUID) -> Decimal | None:
    return await conn.fetchval("SELECT balance_usd FROM accounts WHERE account_id = $1", account_id)


async def ledger_sum(conn: asyncpg.Connection, *, account_id: UUID) -> Decimal:
    """The sum of the account's entries (equal to its balance; a check for tests and audits)."""
    return await conn.fetchval(
        "SELECT COALESCE(sum(amount_usd), 0) FROM ledger_entries WHERE account_id = $1", account_id
    )


async def list_entries(conn: asyncpg.Connection, *, account_id: UUID) -> list[LedgerEntry]:
    records = await conn.fetch("SELECT * FROM ledger_entries WHERE account_id = $1 ORDER BY entry_id", account_id)
    return [LedgerEntry(**{name: record[name] for name in LedgerEntry.__dataclass_fields__}) for record in records]


async def deposit_cursor(conn: asyncpg.Connection) -> int | None:
    """The block the deposit watcher reads from next; None before its first scan."""
    return await conn.fetchval("SELECT next_block FROM deposit_watch")


async def set_deposit_cursor(conn: asyncpg.Connection, *, next_block: int) -> None:
    await conn.execute(
        """
        INSERT INTO deposit_watch (singleton, next_block) VALUES (true, $1)
        ON CONFLICT (singleton) DO UPDATE SET next_block = EXCLUDED.next_block, updated_at = now()
        """,
        next_block,
    )
