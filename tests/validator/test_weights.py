"""The weight formula on hand-checked cases, and the weight setter against the local chain and a real database."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from bittensor.sp_core import Keypair

from core.chain import ChainError, LocalChain
from tests.validator.conftest import NETUID, Keys, coldkey, get_task, hotkey, insert_task
from validator.db import nodes as nodes_db, weights as weights_db
from validator.weights import (
    NodeEntry,
    ScoreWindow,
    TaskScores,
    TournamentResult,
    WeightInputs,
    WeightParams,
    WeightSetter,
    compute_weights,
    explain_weights,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
INSTRUCT = "InstructTextTask"
ONE_WINDOW = (ScoreWindow(seconds=86400, weight=1.0),)
# Only the organic pool, no burn: the weights are the organic shares.
ORGANIC_ONLY = {"organic_share": 1.0, "tournament_share": 0.0}


def task(scores: dict[str, float], *, hours_ago: float = 1.0, task_type: str = INSTRUCT, uids=None) -> TaskScores:
    return TaskScores(
        task_id=str(uuid.uuid4()),
        task_type=task_type,
        finished_at=NOW - timedelta(hours=hours_ago),
        scores=scores,
        uids=uids or {},
    )


def inputs(tasks: list[TaskScores], nodes: dict[str, int] | None = None, tournaments=(), **params) -> WeightInputs:
    if nodes is None:
        hotkeys = sorted({hotkey for item in tasks for hotkey in item.scores})
        nodes = {hotkey: uid for uid, hotkey in enumerate(hotkeys, start=1)}
    return WeightInputs(
        evaluated_at=NOW,
        params=WeightParams(**params),
        organic=tuple(tasks),
        tournaments=tuple(tournaments),
        nodes=tuple(NodeEntry(uid=uid, hotkey=hotkey) for hotkey, uid in nodes.items()),
    )


def approx(weights: dict[int, float]):
    return pytest.approx(weights, abs=1e-12)


def test_one_window_one_type_gives_the_scores_normalised() -> None:
    weights = compute_weights(inputs([task({"a": 1.0, "b": 0.5}), task({"a": 0.5, "b": 1.0, "c": 0.0})]))

    assert weights == approx({1: 0.5, 2: 0.5})
    assert math.fsum(weights.values()) == pytest.approx(1.0, abs=1e-12)


def test_windows_weigh_recent_tasks_more_and_forget_old_ones() -> None:
    recent = task({"a": 1.0}, hours_ago=1)  # in the 1-, 3- and 7-day windows
    older = task({"b": 1.0}, hours_ago=48)  # in the 3- and 7-day windows
    forgotten = task({"c": 1.0}, hours_ago=8 * 24)  # in none

    weights = compute_weights(inputs([recent, older, forgotten]))

    # 1 day: a 1; 3 days: a 0.5, b 0.5; 7 days: a 0.5, b 0.5 → a = 0.3 + 0.15 + 0.2, b = 0.15 + 0.2.
    assert weights == approx({1: 0.65, 2: 0.35})


def test_task_types_are_weighed_and_unlisted_types_are_not_paid() -> None:
    tasks = [
        task({"a": 1.0}, task_type=INSTRUCT),
        task({"b": 1.0}, task_type="DpoTask"),
        task({"c": 1.0}, task_type="SomeFutureTask"),
    ]

    weights = compute_weights(inputs(tasks, windows=ONE_WINDOW))

    assert weights == approx({1: 0.35 / 0.55, 2: 0.2 / 0.55})


def test_bad_scores_count_as_zero_and_nothing_to_pay_gives_no_weights() -> None:
    bad = task({"a": math.nan, "b": math.inf, "c": -math.inf, "d": -2.0, "e": 0.0})

    assert compute_weights(inputs([bad])) == {}
    assert compute_weights(inputs([])) == {}
    assert compute_weights(inputs([task({"a": math.nan, "b": 1.0})])) == approx({2: 1.0})


def test_the_burn_uid_takes_the_remainder() -> None:
    tasks = [task({"a": 1.0, "b": 0.5})]

    weights = compute_weights(inputs(tasks, burn_uid=0))

    # Organic pool 0.15 of which a earns 2/3; no tournaments, so the tournament pool (0.525) and 0.325 burn.
    assert weights == approx({0: 0.85, 1: 0.1, 2: 0.05})
    assert compute_weights(inputs([task({"a": 0.0})], burn_uid=0)) == {0: 1.0}
    assert compute_weights(inputs([], burn_uid=4)) == {4: 1.0}


def test_a_capped_miners_excess_goes_to_the_burn_uid() -> None:
    tasks = [task({"a": 0.8, "b": 0.2})]

    weights = compute_weights(inputs(tasks, burn_uid=0, max_weight=0.5, **ORGANIC_ONLY))

    assert weights == approx({0: 0.3, 1: 0.5, 2: 0.2})


def test_without_burn_the_excess_is_water_filled_over_the_other_uids() -> None:
    tasks = [task({"a": 0.8, "b": 0.15, "c": 0.05})]

    weights = compute_weights(inputs(tasks, max_weight=0.5))

    assert weights == approx({1: 0.5, 2: 0.375, 3: 0.125})


def test_a_burn_uid_above_the_cap_keeps_the_cap_and_the_miners_share_the_rest() -> None:
    tasks = [task({"a": 1.0, "b": 0.5, "c": 0.5})]

    weights = compute_weights(inputs(tasks, burn_uid=0, max_weight=0.4))

    # Burn would be 0.85; it keeps 0.4 and the miners share 0.6 in proportion (0.3, 0.15, 0.15), none above 0.4.
    assert weights == approx({0: 0.4, 1: 0.3, 2: 0.15, 3: 0.15})


def test_an_infeasible_cap_gives_equal_weights() -> None:
    breakdown = explain_weights(inputs([task({"a": 0.9, "b": 0.1})], max_weight=0.3))

    assert breakdown.infeasible_cap
    assert breakdown.weights == {1: 0.5, 2: 0.5}


def test_scores_belong_to_the_hotkey_at_the_uid_it_had_when_it_earned_them() -> None:
    tasks = [task({"old": 1.0, "b": 1.0, "moved": 1.0}, uids={"old": 3, "b": 4, "moved": 5})]
    # uid 3 now belongs to "new"; "old" left the subnet; "moved" re-registered at uid 7.
    nodes = {"new": 3, "b": 4, "moved": 7}

    breakdown = explain_weights(inputs(tasks, nodes=nodes, burn_uid=0, **ORGANIC_ONLY))

    assert breakdown.weights == approx({0: 2 / 3, 4: 1 / 3})
    assert {(item.hotkey, item.reason) for item in breakdown.unpaid} == {
        ("old", "not registered"),
        ("moved", "earned at uid 5, registered at uid 7 now"),
    }
    # Without a burn uid the unpaid shares go to the paid hotkeys.
    assert compute_weights(inputs(tasks, nodes=nodes)) == {4: 1.0}


def test_tournament_results_fill_the_tournament_pool() -> None:
    def tournament(tournament_id: str, days_ago: float, shares: dict[str, float]) -> TournamentResult:
        completed_at = NOW - timedelta(days=days_ago)
        return TournamentResult(tournament_id=tournament_id, tournament_type="text", completed_at=completed_at,
                                shares=shares)  # fmt: skip

    results = [
        tournament("t1", 9, {"x": 1.0}),
        tournament("t2", 1, {"x": 3.0, "y": 1.0}),
        tournament("t3", -1, {"z": 1}),
    ]
    nodes = {"x": 1, "y": 2, "z": 3, "a": 4}

    weights = compute_weights(inputs([task({"a": 1.0})], nodes=nodes, tournaments=results, burn_uid=0))

    # The latest completed text tournament (t2) fills the text share of the tournament pool; the future one is ignored.
    assert weights == approx({0: 0.325, 1: 0.525 * 0.75, 2: 0.525 * 0.25, 4: 0.15})


def test_stored_json_gives_the_same_weights_even_with_non_finite_scores() -> None:
    original = inputs([task({"a": 1.0, "b": math.nan, "c": math.inf, "d": 0.25})], max_weight=0.7)

    restored = WeightInputs.model_validate(original.to_json())

    assert original.to_json()["organic"][0]["scores"]["b"] == "NaN"
    assert compute_weights(restored) == compute_weights(original)


def test_bad_parameters_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        WeightParams(organic_share=0.6, tournament_share=0.6)
    with pytest.raises(ValueError, match="positive weight"):
        WeightParams(windows=(ScoreWindow(seconds=60, weight=0.0),))
    with pytest.raises(ValueError, match="unknown weights formula"):
        WeightInputs(formula="other/2", evaluated_at=NOW, params=WeightParams())
    with pytest.raises(ValueError, match="only once"):
        WeightInputs(evaluated_at=NOW, params=WeightParams(), nodes=(NodeEntry(uid=1, hotkey="a"),) * 2)


# --- the weight setter --------------------------------------------------------------------------------------------


async def finish_task_with_scores(
    pool: asyncpg.Pool, dataset: str, scores: dict[str, float], uids: dict[str, int] | None = None
) -> uuid.UUID:
    """A task that reached success with the given contestant scores (uids: each contestant's uid at the time)."""
    task_row = await insert_task(pool, ds_repo=dataset)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE tasks SET status = 'success', finished_at = now() WHERE task_id = $1", task_row.task_id
        )
        for index, (key, score) in enumerate(scores.items()):
            await conn.execute(
                """
                INSERT INTO contestants (task_id, hotkey, uid, repo_url, commit_hash, job_id, expected_repo_name,
                                         status, test_loss, score)
                VALUES ($1, $2, $3, 'https://example.com/r.git', 'abcdef1', $4, $5, 'trained', $6, $7)
                """,
                task_row.task_id,
                key,
                (uids or {}).get(key),
                uuid.uuid4(),
                f"out-{index}",
                1.0 + index,
                score,
            )
    assert (await get_task(pool, task_row.task_id)).status == "success"
    return task_row.task_id


async def uid_map(chain: LocalChain) -> dict[str, int]:
    return {neuron.hotkey: neuron.uid for neuron in await chain.metagraph()}


def setter(pool: asyncpg.Pool, chain: LocalChain, keys: Keys, **params) -> WeightSetter:
    return WeightSetter(
        pool=pool,
        chain=chain,
        wallet=keys.validator,
        version_key=42,
        params=WeightParams(**params),
        interval_seconds=60,
        block_poll_seconds=0.02,
    )


async def test_weight_set_goes_on_chain_and_is_stored_with_its_inputs(
    pool: asyncpg.Pool, chain: LocalChain, keys: Keys, dataset_file
) -> None:
    miner_a, miner_b = hotkey(keys.miners[0]), hotkey(keys.miners[1])
    uid = await uid_map(chain)
    scores = {miner_a: 1.0, miner_b: 0.5, "5Gone": 0.25}
    task_id = await finish_task_with_scores(
        pool, str(dataset_file), scores, {miner_a: uid[miner_a], miner_b: uid[miner_b]}
    )

    result = await setter(pool, chain, keys).set_weights_once()

    assert result is not None
    assert result.uids == sorted([uid[miner_a], uid[miner_b]])
    on_chain = await chain.latest_weights(hotkey(keys.validator))
    assert on_chain.block == result.block
    assert on_chain.version_key == 42
    # "5Gone" is not registered: without a burn uid its share goes to the others in proportion.
    assert dict(zip(on_chain.hotkeys, on_chain.weights, strict=True)) == {
        miner_a: pytest.approx(1.0 / 1.5),
        miner_b: pytest.approx(0.5 / 1.5),
    }
    async with pool.acquire() as conn:
        [stored] = await weights_db.list_weight_sets(conn)
    assert stored.block == result.block
    assert stored.uids == result.uids
    assert set(stored.weights) == {miner_a, miner_b}
    assert stored.weights_by_uid == result.weights_by_uid
    published = WeightInputs.model_validate(stored.inputs)
    assert published.evaluated_at == stored.evaluated_at
    assert published.uid_by_hotkey == uid
    [organic] = published.organic
    assert organic.task_id == str(task_id) and organic.task_type == INSTRUCT
    assert organic.scores == scores
    # The stored inputs alone give the stored weights.
    assert compute_weights(published) == stored.weights_by_uid


async def test_rate_limited_weight_set_waits_for_the_allowed_block(
    pool: asyncpg.Pool, chain: LocalChain, keys: Keys, dataset_file
) -> None:
    await finish_task_with_scores(pool, str(dataset_file), {hotkey(keys.miners[0]): 1.0})
    weight_setter = setter(pool, chain, keys)
    first = await weight_setter.set_weights_once()

    # The chain allows the next set only `weights_rate_limit` blocks later; the setter waits instead of failing.
    second = await weight_setter.set_weights_once()

    assert second.block >= first.block + await chain.weights_rate_limit()
    async with pool.acquire() as conn:
        assert [row.block for row in await weights_db.list_weight_sets(conn)] == [second.block, first.block]


async def test_nothing_is_set_without_recent_scores(pool: asyncpg.Pool, chain: LocalChain, keys: Keys) -> None:
    assert await setter(pool, chain, keys).set_weights_once() is None
    assert await chain.latest_weights(hotkey(keys.validator)) is None


async def test_a_recycled_uid_is_not_paid_for_its_previous_hotkeys_scores(
    pool: asyncpg.Pool, chain: LocalChain, keys: Keys, dataset_file
) -> None:
    old, other = hotkey(keys.miners[0]), hotkey(keys.miners[1])
    uid = await uid_map(chain)
    await finish_task_with_scores(pool, str(dataset_file), {old: 1.0, other: 0.5}, {old: uid[old], other: uid[other]})
    validator_uid = uid[hotkey(keys.validator)]
    weight_setter = setter(pool, chain, keys, burn_uid=validator_uid, **ORGANIC_ONLY)
    before = await weight_setter.set_weights_once()
    assert before.weights_by_uid == approx({uid[old]: 2 / 3, uid[other]: 1 / 3})

    # The chain deregisters `old` and registers a new hotkey at its uid.
    newcomer = Keypair.create_from_uri("//Newcomer").ss58_address
    await chain.replace_neuron(uid[old], newcomer, coldkey(keys.miners[0]))
    after = await weight_setter.set_weights_once()

    # The newcomer inherits nothing: `old`'s share goes to the burn uid, the other miner keeps exactly its own.
    assert after.weights_by_uid == approx({validator_uid: 2 / 3, uid[other]: 1 / 3})
    on_chain = await chain.latest_weights(hotkey(keys.validator))
    assert uid[old] not in on_chain.uids and newcomer not in on_chain.hotkeys
    async with pool.acquire() as conn:
        nodes = {node.hotkey: node for node in await nodes_db.list_nodes(conn, registered_only=False)}
    assert nodes[newcomer].uid == uid[old] and nodes[newcomer].registered
    assert nodes[old].uid == uid[old] and not nodes[old].registered

    # The old hotkey registers again, at a new uid: its old scores were earned at the old uid and stay unpaid.
    again = await chain.register(old, coldkey(keys.miners[0]))
    third = await weight_setter.set_weights_once()
    assert again.uid not in third.weights_by_uid
    assert third.weights_by_uid == approx({validator_uid: 2 / 3, uid[other]: 1 / 3})

    # Scores the newcomer earns at the uid are its own.
    await finish_task_with_scores(pool, str(dataset_file), {newcomer: 1.0}, {newcomer: uid[old]})
    fourth = await weight_setter.set_weights_once()
    assert fourth.weights_by_uid[uid[old]] > 0


async def test_an_unregistered_burn_uid_stops_the_round_with_the_setting_to_fix(
    pool: asyncpg.Pool, chain: LocalChain, keys: Keys, dataset_file
) -> None:
    await finish_task_with_scores(pool, str(dataset_file), {hotkey(keys.miners[0]): 1.0})

    with pytest.raises(ChainError, match="VALIDATOR_BURN_UID"):
        await setter(pool, chain, keys, burn_uid=999).set_weights_once()
    assert await chain.latest_weights(hotkey(keys.validator)) is None


async def test_the_chains_max_weight_limit_caps_the_weights(
    pool: asyncpg.Pool, tmp_path: Path, keys: Keys, dataset_file
) -> None:
    capped = LocalChain.create(tmp_path / "capped.json", netuid=NETUID, block_time_seconds=0.05, max_weight_limit=0.5)
    await capped.register(hotkey(keys.validator), coldkey(keys.validator), stake=1000.0, validator_permit=True)
    miners = [hotkey(wallet) for wallet in keys.miners]
    for wallet in keys.miners:
        await capped.register(hotkey(wallet), coldkey(wallet))
    await finish_task_with_scores(pool, str(dataset_file), {miners[0]: 1.0, miners[1]: 0.25, miners[2]: 0.25})

    result = await setter(pool, capped, keys).set_weights_once()

    assert result.weights_by_uid == approx({1: 0.5, 2: 0.25, 3: 0.25})
    async with pool.acquire() as conn:
        [stored] = await weights_db.list_weight_sets(conn)
    assert stored.inputs["params"]["max_weight"] == 0.5
