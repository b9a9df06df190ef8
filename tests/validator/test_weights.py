"""Weights from recent scores, and the weight setter against the local chain."""

from __future__ import annotations

import math
import uuid

import asyncpg
import pytest

from core.chain import LocalChain
from tests.validator.conftest import Keys, get_task, hotkey, insert_task
from validator.db import weights as weights_db
from validator.weights import WeightSetter, compute_weights


def test_weights_are_summed_scores_normalised_to_one() -> None:
    weights = compute_weights({"a": [1.0, 0.5], "b": [0.5], "c": [0.0], "d": []})

    assert weights == {"a": pytest.approx(0.75), "b": pytest.approx(0.25)}
    assert math.fsum(weights.values()) == pytest.approx(1.0)


def test_no_positive_score_gives_no_weights() -> None:
    assert compute_weights({}) == {}
    assert compute_weights({"a": [0.0], "b": [-1.0, math.nan]}) == {}
    assert compute_weights({"a": [math.inf, 1.0], "b": [1.0]}) == {"a": 0.5, "b": 0.5}


async def finish_task_with_scores(pool: asyncpg.Pool, dataset: str, scores: dict[str, float]) -> uuid.UUID:
    """A task that reached success with the given contestant scores."""
    task = await insert_task(pool, ds_repo=dataset)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE tasks SET status = 'success', finished_at = now() WHERE task_id = $1", task.task_id)
        for index, (key, score) in enumerate(scores.items()):
            await conn.execute(
                """
                INSERT INTO contestants (task_id, hotkey, uid, repo_url, commit_hash, job_id, expected_repo_name,
                                         status, score)
                VALUES ($1, $2, $3, 'https://example.com/r.git', 'abcdef1', $4, $5, 'trained', $6)
                """,
                task.task_id,
                key,
                index,
                uuid.uuid4(),
                f"out-{index}",
                score,
            )
    assert (await get_task(pool, task.task_id)).status == "success"
    return task.task_id


def setter(pool: asyncpg.Pool, chain: LocalChain, keys: Keys) -> WeightSetter:
    return WeightSetter(
        pool=pool,
        chain=chain,
        wallet=keys.validator,
        version_key=42,
        window_seconds=3600,
        interval_seconds=60,
        block_poll_seconds=0.02,
    )


async def test_weight_set_goes_on_chain_and_is_stored_with_its_inputs(
    pool: asyncpg.Pool, chain: LocalChain, keys: Keys, dataset_file
) -> None:
    miner_a, miner_b = hotkey(keys.miners[0]), hotkey(keys.miners[1])
    task_id = await finish_task_with_scores(pool, str(dataset_file), {miner_a: 1.0, miner_b: 0.5, "5Gone": 0.25})

    result = await setter(pool, chain, keys).set_weights_once()

    uid = {neuron.hotkey: neuron.uid for neuron in await chain.metagraph()}
    assert result is not None
    assert result.uids == sorted([uid[miner_a], uid[miner_b]])
    on_chain = await chain.latest_weights(hotkey(keys.validator))
    assert on_chain.block == result.block
    assert on_chain.version_key == 42
    assert dict(zip(on_chain.hotkeys, on_chain.weights, strict=True)) == {
        miner_a: pytest.approx(1.0 / 1.5),
        miner_b: pytest.approx(0.5 / 1.5),
    }
    async with pool.acquire() as conn:
        [stored] = await weights_db.list_weight_sets(conn)
    assert stored.block == result.block
    assert stored.uids == result.uids
    assert set(stored.weights) == {miner_a, miner_b}
    assert stored.inputs["unregistered_hotkeys"] == ["5Gone"]
    assert {(item["task_id"], item["hotkey"], item["score"]) for item in stored.inputs["scores"]} == {
        (str(task_id), miner_a, 1.0),
        (str(task_id), miner_b, 0.5),
        (str(task_id), "5Gone", 0.25),
    }


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
