"""Weights: recent task scores → normalised weights per hotkey → `set_weights` on chain, stored with their inputs.

TODO(#5): the reference's weight formula (tournament pools, burn hotkey, participation); remove when tournaments land.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.chain.base import Chain, ChainError, RateLimited, WeightsRecord
from validator.db import weights as weights_db

logger = logging.getLogger(__name__)

# Any fixed number: only one process of a database sets weights at a time.
WEIGHTS_LOCK_KEY = 0x60D_3E16_4715
MAX_RATE_LIMIT_RETRIES = 3


def compute_weights(scores_by_hotkey: Mapping[str, Iterable[float]]) -> dict[str, float]:
    """Sum each hotkey's task scores and normalise the sums to 1; hotkeys summing to 0 get no weight.

    Non-finite and negative scores are ignored. No positive score anywhere gives {}.
    """
    totals = {}
    for hotkey, scores in scores_by_hotkey.items():
        total = sum(score for score in scores if math.isfinite(score) and score > 0)
        if total > 0:
            totals[hotkey] = total
    grand_total = sum(totals.values())
    if grand_total <= 0:
        return {}
    return {hotkey: totals[hotkey] / grand_total for hotkey in sorted(totals)}


@dataclass(frozen=True)
class WeightSetResult:
    block: int
    weights: dict[str, float]  # by hotkey, as sent
    uids: list[int]
    weight_set_id: int


class WeightSetter:
    """Sets weights every `interval_seconds`, and soon after `request_update()` (called when a task succeeds)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        chain: Chain,
        wallet: Any,
        version_key: int,
        window_seconds: float,
        interval_seconds: float,
        block_poll_seconds: float = 1.0,
    ) -> None:
        self.pool = pool
        self.chain = chain
        self.wallet = wallet
        self.version_key = version_key
        self.window_seconds = window_seconds
        self.interval_seconds = interval_seconds
        self.block_poll_seconds = block_poll_seconds
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()

    @property
    def hotkey(self) -> str:
        return self.wallet.hotkey.ss58_address

    def request_update(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Loop until `stop()`; a failed round is logged and retried next interval."""
        logger.info("weight setter started (every %.0f s)", self.interval_seconds)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self.set_weights_once()
            except (ChainError, OSError, asyncpg.PostgresError) as error:
                logger.warning("setting weights failed, retrying in %.0f s: %s", self.interval_seconds, error)
            except Exception:
                logger.exception("setting weights failed unexpectedly")
            await self._sleep(self.interval_seconds, wake_on_request=True)
        logger.info("weight setter stopped")

    async def _sleep(self, seconds: float, *, wake_on_request: bool = False) -> None:
        waiters = [asyncio.ensure_future(self._stop.wait())]
        if wake_on_request:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _wait_for_block(self, block: int) -> None:
        while not self._stop.is_set() and await self.chain.current_block() < block:
            await self._sleep(self.block_poll_seconds)

    async def _send(self, uids: list[int], weights: list[float]) -> WeightsRecord:
        """`set_weights`, waiting out the rate limit (the chain says from which block) a few times at most."""
        attempt = 0
        while True:
            try:
                return await self.chain.set_weights(
                    wallet=self.wallet, uids=uids, weights=weights, version_key=self.version_key
                )
            except RateLimited as error:
                attempt += 1
                if attempt > MAX_RATE_LIMIT_RETRIES or self._stop.is_set():
                    raise
                logger.info("weights rate-limited; waiting for block %d", error.retry_at_block)
                await self._wait_for_block(error.retry_at_block)

    async def set_weights_once(self) -> WeightSetResult | None:
        """One round: compute, send and store. None when there is nothing to set or another process holds the turn."""
        async with self.pool.acquire() as lock_conn:
            if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", WEIGHTS_LOCK_KEY):
                logger.debug("another validator process is setting weights")
                return None
            try:
                return await self._set_weights()
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock($1)", WEIGHTS_LOCK_KEY)

    async def _set_weights(self) -> WeightSetResult | None:
        async with self.pool.acquire() as conn:
            task_scores = await weights_db.list_recent_scores(conn, window_seconds=self.window_seconds)
        scores_by_hotkey: dict[str, list[float]] = defaultdict(list)
        for item in task_scores:
            scores_by_hotkey[item.hotkey].append(item.score)
        weights = compute_weights(scores_by_hotkey)
        if not weights:
            logger.debug("no scores in the last %.0f s; no weights to set", self.window_seconds)
            return None

        # Hotkeys that left the subnet cannot be paid; their share is redistributed by the chain's normalisation.
        uid_by_hotkey = {neuron.hotkey: neuron.uid for neuron in await self.chain.metagraph()}
        unregistered = sorted(hotkey for hotkey in weights if hotkey not in uid_by_hotkey)
        sent = {hotkey: weight for hotkey, weight in weights.items() if hotkey in uid_by_hotkey}
        if unregistered:
            logger.info("skipping %d unregistered hotkeys: %s", len(unregistered), ", ".join(unregistered))
        if not sent:
            return None
        order = sorted(sent, key=lambda hotkey: uid_by_hotkey[hotkey])
        uids = [uid_by_hotkey[hotkey] for hotkey in order]
        values = [sent[hotkey] for hotkey in order]

        record = await self._send(uids, values)
        inputs = {
            "window_seconds": self.window_seconds,
            "scores": [
                {"task_id": str(item.task_id), "hotkey": item.hotkey, "score": item.score} for item in task_scores
            ],
            "weights_by_hotkey": weights,
            "unregistered_hotkeys": unregistered,
        }
        async with self.pool.acquire() as conn:
            weight_set_id = await weights_db.insert_weight_set(
                conn,
                block=record.block,
                validator_hotkey=self.hotkey,
                version_key=self.version_key,
                weights=sent,
                uids=uids,
                inputs=inputs,
            )
        logger.info("set weights at block %d for %d uids (weight set %d)", record.block, len(uids), weight_set_id)
        return WeightSetResult(block=record.block, weights=sent, uids=uids, weight_set_id=weight_set_id)
