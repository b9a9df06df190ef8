"""The deposit watcher: credits TAO transfers to accounts' deposit addresses, exactly once per transfer.

Each scan reads the transfers to every deposit address from the saved cursor block (inclusive) through the chain's
`transfers_to`, converts each to USD with the rate source, and writes one deposit ledger entry per transfer. The
ledger's unique transfer id makes a transfer seen twice (a rescan, a restart, two watchers) credit once. The cursor
moves to the block read at the start of the scan, not past it: a transfer landing in that block after the read is
seen by the next scan, and its duplicate of anything already credited is ignored.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

import asyncpg

from core.chain import Chain, ChainError, Transfer
from validator.db import accounts as accounts_db, ledger as ledger_db

logger = logging.getLogger(__name__)

MICRO_USD = Decimal("0.000001")


class RateSource(Protocol):
    async def usd_per_tao(self) -> Decimal: ...


@dataclass(frozen=True)
class FixedRate:
    """A rate from the settings (VALIDATOR_TAO_USD_RATE)."""

    rate: Decimal

    async def usd_per_tao(self) -> Decimal:
        return self.rate


@dataclass(frozen=True)
class ScanResult:
    credited: int
    already_credited: int
    next_block: int


def usd_of(amount_tao: Decimal, usd_per_tao: Decimal) -> Decimal:
    # Rounded down: the validator never credits more than the transfer was worth.
    return (amount_tao * usd_per_tao).quantize(MICRO_USD, rounding=ROUND_DOWN)


async def scan_once(pool: asyncpg.Pool, chain: Chain, rates: RateSource) -> ScanResult:
    """Credit every transfer to a deposit address since the cursor; returns what it did."""
    async with pool.acquire() as conn:
        cursor = await ledger_db.deposit_cursor(conn) or 0
        addresses = await accounts_db.deposit_addresses(conn)
    block = await chain.current_block()
    transfers: list[Transfer] = await chain.transfers_to(sorted(addresses), since_block=cursor) if addresses else []
    usd_per_tao = await rates.usd_per_tao() if transfers else Decimal(0)
    credited = already = 0
    async with pool.acquire() as conn, conn.transaction():
        for transfer in transfers:
            account_id = addresses.get(transfer.to_ss58)
            amount_tao = Decimal(str(transfer.amount_tao))
            amount_usd = usd_of(amount_tao, usd_per_tao)
            if account_id is None or amount_usd <= 0:
                logger.warning("transfer %s of %s TAO is not creditable; skipped", transfer.id, amount_tao)
                continue
            if await ledger_db.credit_deposit(
                conn,
                account_id=account_id,
                transfer_id=transfer.id,
                amount_tao=amount_tao,
                usd_per_tao=usd_per_tao,
                amount_usd=amount_usd,
            ):
                credited += 1
                logger.info(
                    "credited transfer %s to account %s: %s TAO = $%s", transfer.id, account_id, amount_tao, amount_usd
                )
            else:
                already += 1
        next_block = max(cursor, block)
        await ledger_db.set_deposit_cursor(conn, next_block=next_block)
    return ScanResult(credited=credited, already_credited=already, next_block=next_block)


class DepositWatcher:
    def __init__(self, *, pool: asyncpg.Pool, chain: Chain, rates: RateSource, interval_seconds: float) -> None:
        self.pool = pool
        self.chain = chain
        self.rates = rates
        self.interval_seconds = interval_seconds
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        logger.info("deposit watcher started (every %.1f s)", self.interval_seconds)
        while not self._stopping.is_set():
            try:
                await scan_once(self.pool, self.chain, self.rates)
            except ChainError as error:
                logger.warning("deposit scan failed: %s", error)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.warning("deposit scan failed: %s: %s", type(error).__name__, error)
            except Exception:
                logger.exception("deposit scan failed unexpectedly")
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)
            except TimeoutError:
                pass
