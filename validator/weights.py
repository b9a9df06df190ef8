"""Weights: recent task scores and tournament results → weights per uid → `set_weights`, stored with their inputs.

The formula (`compute_weights`, a pure function of `WeightInputs`; `god audit` runs the same function on the published
inputs) follows the reference's organic scoring ("legacy" weights of G.O.D, see the spec's section 4.5):

1. A score counts as its value when finite and positive, otherwise as 0.
2. Organic share. For each time window w (default 1, 3 and 7 days weighing 0.3, 0.3 and 0.4) take the successful tasks
   that finished within w before `evaluated_at`. Per task type T, a hotkey's share of T is its summed score over the
   type's summed score; the window's share of the hotkey is the task-type-weighted mean of those shares (over the
   types that have any score in the window; types without a weight are not paid). The organic share is the
   window-weighted mean over the windows that have any score. It sums to 1 when any task scored.
3. Tournament share (TODO(#6): results come from tournaments once they exist; until then the list is empty). For each
   tournament type the latest completed tournament's shares, normalised, mixed by the tournament type weights.
4. Each hotkey gets organic_share · organic + tournament_share · tournament. Only a hotkey registered now is paid, at
   its current uid, and only for scores it earned at that uid: when a uid is recycled the new hotkey starts with no
   history, and a hotkey that re-registers at another uid does not bring its old scores along.
5. With a burn uid, it takes the remainder: the unpaid shares, the pools that have nothing to pay and 1 − organic_share
   − tournament_share. Without one, the paid shares are scaled to sum to 1 (the remainder is shared proportionally),
   and nothing to pay gives no weights at all.
6. No uid gets more than `max_weight` (the subnet's max weight limit). A miner's excess goes to the burn uid; if the
   burn uid itself is then above the limit, it keeps the limit and the rest is spread over the paid miners in
   proportion to their weights, none above the limit (water-filling). Without a burn uid, excess is water-filled over
   the other paid uids. When no distribution over the candidate uids can respect the limit (their count times the
   limit is at most 1), every candidate gets an equal weight: the closest any distribution comes, and what the
   bittensor SDK would send for such weights anyway.

The result is normalised to sum to 1 before the chain backend quantises it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from core.chain.base import Chain, ChainError, Neuron, RateLimited, WeightsRecord
from core.tasks import TaskType
from validator.db import nodes as nodes_db, weights as weights_db

if TYPE_CHECKING:
    from validator.settings import ValidatorSettings

logger = logging.getLogger(__name__)

# Any fixed number: only one process of a database sets weights at a time.
WEIGHTS_LOCK_KEY = 0x60D_3E16_4715
MAX_RATE_LIMIT_RETRIES = 3
FORMULA = "god-weights/1"
DAY_SECONDS = 24 * 3600.0

# The reference's task type weights (instruct and chat 0.35, DPO 0.2, GRPO 0.25, image 0.2).
DEFAULT_TASK_TYPE_WEIGHTS: dict[str, float] = {
    TaskType.INSTRUCT_TEXT.value: 0.35,
    TaskType.CHAT.value: 0.35,
    TaskType.DPO.value: 0.2,
    TaskType.GRPO.value: 0.25,
    TaskType.IMAGE.value: 0.2,
}
# The reference's split of the tournament pool between text and image tournaments.
DEFAULT_TOURNAMENT_TYPE_WEIGHTS: dict[str, float] = {"text": 0.6, "image": 0.4}
# The reference's legacy pools: organic 0.15, tournaments 0.525, burn the remaining 0.325.
DEFAULT_ORGANIC_SHARE = 0.15
DEFAULT_TOURNAMENT_SHARE = 0.525


class _Model(BaseModel):
    # Non-finite floats travel as "NaN" / "Infinity" strings in JSON: stored inputs keep exactly what the validator saw.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")


class ScoreWindow(_Model):
    seconds: float = Field(gt=0, allow_inf_nan=False, description="How far back from evaluated_at the window reaches")
    weight: float = Field(ge=0, allow_inf_nan=False)


DEFAULT_WINDOWS = (
    ScoreWindow(seconds=1 * DAY_SECONDS, weight=0.3),
    ScoreWindow(seconds=3 * DAY_SECONDS, weight=0.3),
    ScoreWindow(seconds=7 * DAY_SECONDS, weight=0.4),
)


class WeightParams(_Model):
    """Everything besides the scores that decides the weights; stored with every weight set."""

    windows: tuple[ScoreWindow, ...] = DEFAULT_WINDOWS
    task_type_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_TASK_TYPE_WEIGHTS))
    tournament_type_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_TOURNAMENT_TYPE_WEIGHTS))
    organic_share: float = Field(default=DEFAULT_ORGANIC_SHARE, ge=0, le=1, allow_inf_nan=False)
    tournament_share: float = Field(default=DEFAULT_TOURNAMENT_SHARE, ge=0, le=1, allow_inf_nan=False)
    max_weight: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)
    burn_uid: int | None = Field(default=None, ge=0, le=65535)

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, windows: tuple[ScoreWindow, ...]) -> tuple[ScoreWindow, ...]:
        if not any(window.weight > 0 for window in windows):
            raise ValueError("at least one window needs a positive weight")
        return windows

    @field_validator("task_type_weights", "tournament_type_weights")
    @classmethod
    def _check_type_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        for name, weight in weights.items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"the weight of {name!r} must be a finite number >= 0, got {weight}")
        return weights

    @model_validator(mode="after")
    def _check_shares(self) -> WeightParams:
        # A little slack: 0.15 + 0.85 is not exactly 1 in floating point.
        if self.organic_share + self.tournament_share > 1 + 1e-9:
            raise ValueError(
                f"organic_share + tournament_share must be at most 1 (the rest is burned), got "
                f"{self.organic_share} + {self.tournament_share}"
            )
        return self

    @property
    def longest_window_seconds(self) -> float:
        return max(window.seconds for window in self.windows)


class TaskScores(_Model):
    """The scores of one successful organic task."""

    task_id: str
    task_type: str
    finished_at: AwareDatetime
    scores: dict[str, float] = Field(description="Score by hotkey (non-finite and negative scores count as 0)")
    # The uid each hotkey had when it became a contestant; a hotkey missing here is not checked.
    uids: dict[str, int] = Field(default_factory=dict)


class TournamentResult(_Model):
    """One completed tournament's shares by hotkey. TODO(#6): produced by tournaments; until then none exist."""

    tournament_id: str
    tournament_type: str
    completed_at: AwareDatetime
    shares: dict[str, float]


class NodeEntry(_Model):
    uid: int = Field(ge=0, le=65535)
    hotkey: str


class WeightInputs(_Model):
    """All the inputs of one weight set: `compute_weights(inputs)` gives its weights, here and in `god audit`."""

    formula: str = FORMULA
    evaluated_at: AwareDatetime
    params: WeightParams
    organic: tuple[TaskScores, ...] = ()
    tournaments: tuple[TournamentResult, ...] = ()
    nodes: tuple[NodeEntry, ...] = Field(default=(), description="The uid ↔ hotkey map (metagraph) used")

    @field_validator("formula")
    @classmethod
    def _check_formula(cls, formula: str) -> str:
        if formula != FORMULA:
            raise ValueError(f"unknown weights formula {formula!r}; this code computes {FORMULA!r}")
        return formula

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, nodes: tuple[NodeEntry, ...]) -> tuple[NodeEntry, ...]:
        uids = [node.uid for node in nodes]
        hotkeys = [node.hotkey for node in nodes]
        if len(set(uids)) != len(uids) or len(set(hotkeys)) != len(hotkeys):
            raise ValueError("each uid and each hotkey may appear only once in nodes")
        return nodes

    @property
    def uid_by_hotkey(self) -> dict[str, int]:
        return {node.hotkey: node.uid for node in self.nodes}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (non-finite scores as strings), as stored and published."""
        return json.loads(self.model_dump_json())


@dataclass(frozen=True)
class Unpaid:
    hotkey: str
    share: float
    reason: str


@dataclass(frozen=True)
class WeightBreakdown:
    """The weights and how they came about."""

    weights: dict[int, float]  # by uid, positive, summing to 1 (empty: nothing to set)
    shares: dict[str, float]  # pool-weighted share by hotkey, before the uid map, the burn and the cap
    unpaid: list[Unpaid] = field(default_factory=list)
    infeasible_cap: bool = False  # the max weight limit could not be respected (equal weights instead)


def clean_score(value: Any) -> float:
    """A score as it counts: finite and positive, else 0."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        return 0.0
    return score if math.isfinite(score) and score > 0 else 0.0


# An earner is a hotkey together with the uid it had when it earned the score (None: not known, not checked).
Earner = tuple[str, int | None]


def _normalised(values: Mapping[Any, Iterable[float]]) -> dict[Any, float]:
    """Each key's summed values over the grand total (values are clean: >= 0); {} when the total is 0.

    Divides by the largest value first so that sums of huge scores cannot overflow.
    """
    flat = {key: [value for value in items if value > 0] for key, items in values.items()}
    top = max((value for items in flat.values() for value in items), default=0.0)
    if top <= 0:
        return {}
    sums = {key: math.fsum(value / top for value in items) for key, items in flat.items()}
    total = math.fsum(sums.values())
    if total <= 0:
        return {}
    return {key: value / total for key, value in sums.items() if value > 0}


def _mix(parts: list[tuple[float, dict[Any, float]]]) -> dict[Any, float]:
    """The weighted mean of shares over the parts with a positive weight (each part sums to 1)."""
    parts = [(weight, shares) for weight, shares in parts if weight > 0 and shares]
    total_weight = math.fsum(weight for weight, _ in parts)
    if total_weight <= 0:
        return {}
    terms: dict[Any, list[float]] = defaultdict(list)
    for weight, shares in parts:
        for key, share in shares.items():
            terms[key].append(weight / total_weight * share)
    return {key: math.fsum(values) for key, values in terms.items()}


def organic_shares(tasks: Iterable[TaskScores], evaluated_at: datetime, params: WeightParams) -> dict[Earner, float]:
    """Step 2 of the formula: window- and task-type-weighted score shares; sums to 1, or {} when nothing scored."""
    tasks = list(tasks)
    window_parts = []
    for window in params.windows:
        start = evaluated_at - timedelta(seconds=window.seconds)
        by_type: dict[str, dict[Earner, list[float]]] = defaultdict(lambda: defaultdict(list))
        for task in tasks:
            if not start <= task.finished_at <= evaluated_at:
                continue
            for hotkey, score in task.scores.items():
                by_type[task.task_type][(hotkey, task.uids.get(hotkey))].append(clean_score(score))
        type_parts = [
            (params.task_type_weights.get(task_type, 0.0), _normalised(scores))
            for task_type, scores in sorted(by_type.items())
        ]
        window_parts.append((window.weight, _mix(type_parts)))
    return _mix(window_parts)


def tournament_shares(
    tournaments: Iterable[TournamentResult], evaluated_at: datetime, params: WeightParams
) -> dict[Earner, float]:
    """Step 3 of the formula: the latest completed tournament per type; sums to 1, or {} when there is none."""
    latest: dict[str, tuple[TournamentResult, dict[Earner, float]]] = {}
    for result in sorted(tournaments, key=lambda item: (item.completed_at, item.tournament_id)):
        if result.completed_at > evaluated_at:
            continue
        shares = _normalised({(hotkey, None): [clean_score(share)] for hotkey, share in result.shares.items()})
        if shares:
            latest[result.tournament_type] = (result, shares)
    parts = [
        (params.tournament_type_weights.get(tournament_type, 0.0), shares)
        for tournament_type, (_, shares) in sorted(latest.items())
    ]
    return _mix(parts)


def _water_fill(weights: Mapping[int, float], total: float, cap: float) -> dict[int, float]:
    """`total` spread in proportion to `weights` with none above `cap` (needs len(weights) * cap >= total)."""
    remaining = {uid: weight for uid, weight in weights.items() if weight > 0}
    result: dict[int, float] = {}
    budget = total
    while remaining and budget > 0:
        top = max(remaining.values())
        scale = math.fsum(weight / top for weight in remaining.values())
        proposed = {uid: budget * (weight / top) / scale for uid, weight in remaining.items()}
        over = [uid for uid, value in proposed.items() if value > cap]
        if not over:
            result.update(proposed)
            break
        for uid in over:
            result[uid] = cap
            budget -= cap
            del remaining[uid]
    return result


def apply_max_weight(
    weights: Mapping[int, float], max_weight: float, burn_uid: int | None
) -> tuple[dict[int, float], bool]:
    """Step 6 of the formula: (weights within `max_weight`, whether the limit was infeasible). Input sums to 1."""
    positive = {uid: weight for uid, weight in weights.items() if weight > 0}
    if not positive or max(positive.values()) <= max_weight:
        return positive, False
    candidates = set(positive) | ({burn_uid} if burn_uid is not None else set())
    if len(candidates) * max_weight <= 1:
        return {uid: 1.0 / len(candidates) for uid in sorted(candidates)}, True
    if burn_uid is None:
        return _water_fill(positive, 1.0, max_weight), False
    miners = {uid: weight for uid, weight in positive.items() if uid != burn_uid}
    excess = math.fsum(weight - max_weight for weight in miners.values() if weight > max_weight)
    burn = positive.get(burn_uid, 0.0) + excess
    if burn <= max_weight:
        capped = {uid: min(weight, max_weight) for uid, weight in miners.items()}
        return {**capped, burn_uid: burn} if burn > 0 else capped, False
    # The burn uid can take no more than the limit either; the rest goes back to the miners, none above the limit.
    return {**_water_fill(miners, 1.0 - max_weight, max_weight), burn_uid: max_weight}, False


def _earner_order(item: tuple[Earner, Any]) -> tuple[str, int]:
    (hotkey, uid), _ = item
    return hotkey, -1 if uid is None else uid


def explain_weights(inputs: WeightInputs) -> WeightBreakdown:
    """The whole formula (module docstring), with the shares and the unpaid amounts that explain the result."""
    params = inputs.params
    organic = organic_shares(inputs.organic, inputs.evaluated_at, params)
    tournament = tournament_shares(inputs.tournaments, inputs.evaluated_at, params)
    earned: dict[Earner, list[float]] = defaultdict(list)
    for pool_share, shares in ((params.organic_share, organic), (params.tournament_share, tournament)):
        for earner, share in shares.items():
            earned[earner].append(pool_share * share)

    uid_by_hotkey = inputs.uid_by_hotkey
    paid_terms: dict[int, list[float]] = defaultdict(list)
    shares_by_hotkey: dict[str, list[float]] = defaultdict(list)
    unpaid_by_reason: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (hotkey, earned_at_uid), terms in sorted(earned.items(), key=_earner_order):
        share = math.fsum(terms)
        if share <= 0:
            continue
        shares_by_hotkey[hotkey].append(share)
        uid = uid_by_hotkey.get(hotkey)
        if uid is None:
            unpaid_by_reason[(hotkey, "not registered")].append(share)
        elif earned_at_uid is not None and earned_at_uid != uid:
            unpaid_by_reason[(hotkey, f"earned at uid {earned_at_uid}, registered at uid {uid} now")].append(share)
        else:
            paid_terms[uid].append(share)
    paid = {uid: math.fsum(terms) for uid, terms in paid_terms.items()}
    unpaid = [Unpaid(hotkey, math.fsum(terms), reason) for (hotkey, reason), terms in sorted(unpaid_by_reason.items())]
    shares = {hotkey: math.fsum(terms) for hotkey, terms in sorted(shares_by_hotkey.items())}

    paid_total = math.fsum(paid.values())
    if params.burn_uid is not None:
        weights = dict(paid)
        # A rounding residue is not a remainder: it would only put a dust weight on the burn uid.
        remainder = 1.0 - paid_total if 1.0 - paid_total > 1e-12 else 0.0
        weights[params.burn_uid] = weights.get(params.burn_uid, 0.0) + remainder
    elif paid_total > 0:
        weights = {uid: value / paid_total for uid, value in paid.items()}
    else:
        return WeightBreakdown(weights={}, shares=shares, unpaid=unpaid)

    capped, infeasible = apply_max_weight(weights, params.max_weight, params.burn_uid)
    total = math.fsum(capped.values())
    final = {uid: capped[uid] / total for uid in sorted(capped) if capped[uid] > 0} if total > 0 else {}
    return WeightBreakdown(weights=final, shares=shares, unpaid=unpaid, infeasible_cap=infeasible)


def compute_weights(inputs: WeightInputs) -> dict[int, float]:
    """Weights by uid: finite, positive, summing to 1 (before quantisation); {} when there is nothing to set."""
    return explain_weights(inputs).weights


def weight_params(settings: ValidatorSettings) -> WeightParams:
    """The formula's parameters from the settings (the weight setter lowers max_weight to the chain's, if lower)."""
    windows = (
        tuple(ScoreWindow(seconds=window.hours * 3600, weight=window.weight) for window in settings.weights_windows)
        if settings.weights_windows
        else DEFAULT_WINDOWS
    )
    return WeightParams(
        windows=windows,
        task_type_weights=dict(settings.weights_task_type_weights or DEFAULT_TASK_TYPE_WEIGHTS),
        organic_share=settings.weights_organic_share,
        tournament_share=settings.weights_tournament_share,
        max_weight=settings.weights_max_weight,
        burn_uid=settings.burn_uid,
    )


def _task_scores(rows: Iterable[weights_db.TaskScore]) -> tuple[TaskScores, ...]:
    grouped: dict[str, dict[str, Any]] = {}
    for row in rows:
        task = grouped.setdefault(
            str(row.task_id),
            {"task_id": str(row.task_id), "task_type": row.task_type, "finished_at": row.finished_at, "scores": {},
             "uids": {}},
        )  # fmt: skip
        task["scores"][row.hotkey] = row.score
        if row.uid is not None:
            task["uids"][row.hotkey] = row.uid
    return tuple(TaskScores(**task) for task in grouped.values())


@dataclass(frozen=True)
class WeightSetResult:
    block: int
    weights: dict[str, float]  # by hotkey, as sent
    uids: list[int]
    weight_set_id: int
    weights_by_uid: dict[int, float] = field(default_factory=dict)


class WeightSetter:
    """Sets weights every `interval_seconds`, and soon after `request_update()` (called when a task succeeds).

    Each round reads the metagraph into the `nodes` table, computes the weights from the scores of the tasks within the
    longest window (`params`), sends them and stores them with their inputs.
    """

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        chain: Chain,
        wallet: Any,
        version_key: int,
        params: WeightParams,
        interval_seconds: float,
        block_poll_seconds: float = 1.0,
    ) -> None:
        self.pool = pool
        self.chain = chain
        self.wallet = wallet
        self.version_key = version_key
        self.params = params
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

    async def _current_params(self) -> WeightParams:
        """The configured parameters, with the chain's max weight limit when the backend can read it and it is lower."""
        # Both chain backends read it; a backend without it leaves the configured limit alone.
        read_limit = getattr(self.chain, "max_weight_limit", None)
        if read_limit is None:
            return self.params
        limit = float(await read_limit())
        if 0 < limit < self.params.max_weight:
            return self.params.model_copy(update={"max_weight": limit})
        return self.params

    async def _set_weights(self) -> WeightSetResult | None:
        neurons = await self.chain.metagraph()
        params = await self._current_params()
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                changes = await nodes_db.sync_nodes(conn, neurons)
            for change in changes:
                logger.info(
                    "uid %d changed hotkey from %s to %s: the new hotkey starts with no history",
                    change.uid,
                    change.old_hotkey,
                    change.new_hotkey,
                )
            evaluated_at: datetime = await conn.fetchval("SELECT now()")
            rows = await weights_db.list_task_scores(
                conn, since=evaluated_at - timedelta(seconds=params.longest_window_seconds), until=evaluated_at
            )
        inputs = WeightInputs(
            evaluated_at=evaluated_at,
            params=params,
            organic=_task_scores(rows),
            tournaments=(),  # TODO(#6): completed tournaments' results.
            nodes=tuple(NodeEntry(uid=neuron.uid, hotkey=neuron.hotkey) for neuron in neurons),
        )
        if params.burn_uid is not None and params.burn_uid not in {neuron.uid for neuron in neurons}:
            raise ChainError(
                f"the burn uid {params.burn_uid} is not registered on netuid {self.chain.netuid}; "
                "set VALIDATOR_BURN_UID to a registered uid (or unset it)"
            )
        breakdown = explain_weights(inputs)
        if not breakdown.weights:
            logger.debug("no scores to pay within %.0f s; no weights to set", params.longest_window_seconds)
            return None
        if breakdown.infeasible_cap:
            logger.warning(
                "the max weight limit %.6f cannot hold for %d uids; every uid gets an equal weight",
                params.max_weight,
                len(breakdown.weights),
            )
        for item in breakdown.unpaid:
            logger.debug("hotkey %s is not paid its share %.6f: %s", item.hotkey, item.share, item.reason)

        uids = sorted(breakdown.weights)
        values = [breakdown.weights[uid] for uid in uids]
        record = await self._send(uids, values)
        hotkey_by_uid = _hotkey_by_uid(neurons)
        sent = {hotkey_by_uid[uid]: weight for uid, weight in breakdown.weights.items()}
        async with self.pool.acquire() as conn:
            weight_set_id = await weights_db.insert_weight_set(
                conn,
                block=record.block,
                validator_hotkey=self.hotkey,
                version_key=self.version_key,
                weights=sent,
                uids=uids,
                inputs=inputs.to_json(),
                evaluated_at=evaluated_at,
                weights_by_uid=breakdown.weights,
            )
        logger.info("set weights at block %d for %d uids (weight set %d)", record.block, len(uids), weight_set_id)
        return WeightSetResult(
            block=record.block, weights=sent, uids=uids, weight_set_id=weight_set_id, weights_by_uid=breakdown.weights
        )


def _hotkey_by_uid(neurons: Iterable[Neuron]) -> dict[int, str]:
    return {neuron.uid: neuron.hotkey for neuron in neurons}
