"""The deposit watcher credits each transfer to a deposit address exactly once, whatever it sees twice."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
from bittensor.sp_core import Keypair

from core.chain import LocalChain
from tests.validator.conftest import Keys, coldkey
from validator.db import accounts as accounts_db, ledger as ledger_db
from validator.deposits import FixedRate, scan_once

RATE = FixedRate(Decimal("250"))


async def account_with_address(pool: asyncpg.Pool, name: str) -> tuple[uuid.UUID, str]:
    address = Keypair.create_from_mnemonic(Keypair.generate_mnemonic(12)).ss58_address
    async with pool.acquire() as conn:
        account = await accounts_db.create_account(conn, name=name, fingerprint=f"godf_{name}")
        await accounts_db.set_deposit_keypair(
            conn, account_id=account.account_id, ss58=address, encrypted_secret=b"sealed"
        )
    return account.account_id, address


async def balance_and_sum(pool: asyncpg.Pool, account_id: uuid.UUID) -> tuple[Decimal, Decimal]:
    async with pool.acquire() as conn:
        return (
            await ledger_db.get_balance(conn, account_id=account_id),
            await ledger_db.ledger_sum(conn, account_id=account_id),
        )


async def test_a_transfer_seen_twice_is_credited_once(pool: asyncpg.Pool, chain: LocalChain, keys: Keys) -> None:
    account_id, address = await account_with_address(pool, "dora")
    _, other_address = await account_with_address(pool, "eve")
    await chain.transfer(coldkey(keys.miners[0]), address, 0.5)
    await chain.transfer(coldkey(keys.miners[1]), other_address, 2.0)

    first = await scan_once(pool, chain, RATE)
    again = await scan_once(pool, chain, RATE)  # the same block is read again (inclusive cursor)
    async with pool.acquire() as conn:  # a restart that lost its cursor reads the whole chain again
        await conn.execute("DELETE FROM deposit_watch")
    restarted = await scan_once(pool, chain, RATE)

    assert first.credited == 2
    assert again.credited == 0 and restarted.credited == 0 and restarted.already_credited == 2
    assert await balance_and_sum(pool, account_id) == (Decimal("125"), Decimal("125"))
    async with pool.acquire() as conn:
        entries = await ledger_db.list_entries(conn, account_id=account_id)
    assert [(entry.kind, entry.amount_tao, entry.usd_per_tao) for entry in entries] == [
        ("deposit", Decimal("0.5"), Decimal("250"))
    ]


async def test_concurrent_watchers_credit_once(pool: asyncpg.Pool, chain: LocalChain, keys: Keys) -> None:
    account_id, address = await account_with_address(pool, "fay")
    for _ in range(3):
        await chain.transfer(coldkey(keys.miners[0]), address, 0.1)

    results = await asyncio.gather(*(scan_once(pool, chain, RATE) for _ in range(4)), return_exceptions=True)

    assert not [result for result in results if isinstance(result, BaseException)], results
    assert sum(result.credited for result in results) == 3
    assert await balance_and_sum(pool, account_id) == (Decimal("75"), Decimal("75"))


async def test_later_transfers_are_credited_by_later_scans(pool: asyncpg.Pool, chain: LocalChain, keys: Keys) -> None:
    account_id, address = await account_with_address(pool, "gus")
    await chain.transfer(coldkey(keys.miners[0]), address, 0.2)
    await scan_once(pool, chain, RATE)
    await asyncio.sleep(0.12)  # a few blocks later
    await chain.transfer(coldkey(keys.miners[0]), address, 0.2)

    assert (await scan_once(pool, chain, RATE)).credited == 1
    assert await balance_and_sum(pool, account_id) == (Decimal("100"), Decimal("100"))
