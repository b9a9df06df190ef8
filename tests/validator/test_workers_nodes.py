"""Looking for nodes: miners are asked for their repos (signed), answers become contestants, silence delays."""

from __future__ import annotations

import asyncio
import re
import uuid

import asyncpg
import pytest

from core.tasks import TaskStatus
from tests.validator.conftest import Keys, Network, events, get_task, hotkey, insert_task
from validator.db import contestants as contestants_db
from validator.workers import WorkerContext, run_stage_once
from validator.workers.nodes import STAGE, is_acceptable_repo_url


async def task_looking_for_nodes(pool: asyncpg.Pool, dataset_file) -> uuid.UUID:
    task = await insert_task(pool, ds_repo=str(dataset_file))
    async with pool.acquire() as conn:
        await conn.execute("UPDATE tasks SET status = 'looking_for_nodes' WHERE task_id = $1", task.task_id)
    return task.task_id


async def test_every_miner_is_asked_and_each_answer_becomes_a_contestant(
    ctx: WorkerContext, network: Network, keys: Keys, dataset_file
) -> None:
    task_id = await task_looking_for_nodes(ctx.pool, dataset_file)

    assert await run_stage_once(ctx, STAGE, lease_owner="nodes-worker")

    task = await get_task(ctx.pool, task_id)
    assert task.status is TaskStatus.READY
    # Only miners are asked: not the other validator nor the trainer host, though both serve an address.
    for miner in network.miners:
        assert miner.calls == [("InstructTextTask", hotkey(keys.validator))]
    async with ctx.pool.acquire() as conn:
        contestants = await contestants_db.list_contestants(conn, task_id=task_id)
    assert {item.hotkey for item in contestants} == {miner.hotkey for miner in network.miners}
    assert len({item.job_id for item in contestants}) == 3
    assert len({item.expected_repo_name for item in contestants}) == 3
    for item in contestants:
        assert re.fullmatch(rf"god-{task_id.hex[:8]}-[0-9a-f]{{16}}", item.expected_repo_name)
        assert item.status == "pending" and item.trainer_url is None
        assert item.repo_url == "https://github.com/example/trainer.git"
        assert item.uid is not None
    assert (await events(ctx.pool, task_id))[-1][1].startswith("3 contestants of 3 miners asked")


async def test_miners_that_fail_or_offer_unsafe_repos_are_left_out(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    network.miners[0].status = 500
    network.miners[1].repo_url = "--upload-pack=touch /tmp/pwned"
    task_id = await task_looking_for_nodes(ctx.pool, dataset_file)

    assert await run_stage_once(ctx, STAGE, lease_owner="nodes-worker")

    async with ctx.pool.acquire() as conn:
        contestants = await contestants_db.list_contestants(conn, task_id=task_id)
    assert [item.hotkey for item in contestants] == [network.miners[2].hotkey]


async def test_no_answer_delays_the_task_then_fails_it(ctx: WorkerContext, network: Network, dataset_file) -> None:
    for miner in network.miners:
        miner.status = 503
    task_id = await task_looking_for_nodes(ctx.pool, dataset_file)

    assert await run_stage_once(ctx, STAGE, lease_owner="nodes-worker")
    delayed = await get_task(ctx.pool, task_id)
    assert delayed.status is TaskStatus.DELAYED
    assert delayed.times_delayed == 1 and delayed.next_attempt_at > delayed.updated_at
    assert await run_stage_once(ctx, STAGE, lease_owner="nodes-worker") is False  # not due yet

    for _ in range(100):
        await asyncio.sleep(0.05)
        await run_stage_once(ctx, STAGE, lease_owner="nodes-worker")
        if (await get_task(ctx.pool, task_id)).status.is_terminal:
            break

    task = await get_task(ctx.pool, task_id)
    assert task.status is TaskStatus.FAILURE
    assert task.times_delayed == ctx.settings.max_delays
    assert task.error == "no contestants found after 3 attempts: none of 3 miners offered a training repo"
    statuses = [status for status, _ in await events(ctx.pool, task_id)]
    assert statuses[1:] == ["delayed", "looking_for_nodes", "delayed", "looking_for_nodes", "failure"]


@pytest.mark.parametrize(
    ("url", "local", "accepted"),
    [
        ("https://github.com/a/b.git", False, True),
        ("file:///srv/repos/trainer", True, True),
        ("file:///srv/repos/trainer", False, False),
        ("http://github.com/a/b.git", True, False),
        ("ssh://git@github.com/a/b.git", True, False),
        ("-oProxyCommand=evil", True, False),
        ("https://github.com/a/b.git --depth 1", True, False),
        ("", True, False),
    ],
)
def test_repo_urls_are_limited_to_safe_schemes(url: str, local: bool, accepted: bool) -> None:
    assert is_acceptable_repo_url(url, allow_file_urls=local) is accepted
