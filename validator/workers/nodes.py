"""looking_for_nodes / delayed → ready: ask the subnet's miners for their training repos and pick contestants.

Miners are the neurons that serve an address, hold no validator permit and are not one of our trainer hosts. Each is
asked concurrently (signed `GET /training_repo/{task_type}`, with a timeout); every usable answer becomes a
contestant with a fresh job id and an unguessable output name chosen now. No answer delays the task; after
`max_delays` delays it fails.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import uuid
from dataclasses import dataclass

import asyncpg
import httpx
from pydantic import ValidationError

from core.chain.base import ChainError, Neuron
from core.logging import log_context
from core.miner_api import TRAINING_REPO_PATH, TrainingRepoResponse
from core.tasks import TaskStatus
from validator.db import contestants as contestants_db, tasks as tasks_db
from validator.db.contestants import NewContestant
from validator.db.tasks import TaskRow
from validator.workers.context import WorkerContext
from validator.workers.runner import Stage, fail_task, transition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepoOffer:
    neuron: Neuron
    repo_url: str
    commit_hash: str


def is_acceptable_repo_url(url: str, *, allow_file_urls: bool) -> bool:
    """https:// git URLs anywhere; file:// only on the local network. A leading '-' could inject a git option."""
    if not url or url.startswith("-") or any(character.isspace() for character in url):
        return False
    if url.startswith("https://"):
        return True
    return allow_file_urls and url.startswith("file://")


def expected_repo_name(task_id: uuid.UUID) -> str:
    """The output name a contestant must publish under; random so nobody can publish before training."""
    return f"god-{task_id.hex[:8]}-{secrets.token_hex(8)}"


def candidate_miners(ctx: WorkerContext, neurons: list[Neuron]) -> list[Neuron]:
    trainer_hotkeys = {trainer.hotkey for trainer in ctx.settings.trainers}
    return [
        neuron
        for neuron in neurons
        if neuron.address
        and not neuron.validator_permit
        and neuron.hotkey not in trainer_hotkeys
        and neuron.hotkey != ctx.hotkey
    ]


async def fetch_repo_offer(ctx: WorkerContext, neuron: Neuron, task_type: str) -> RepoOffer | None:
    """The miner's training repo for the task type, or None when it does not answer usefully (logged at debug)."""
    url = neuron.address.rstrip("/") + TRAINING_REPO_PATH.format(task_type=task_type)
    with log_context(hotkey=neuron.hotkey):
        try:
            async with asyncio.timeout(ctx.settings.miner_timeout_seconds):
                response = await ctx.http.get(url, receiver_hotkey=neuron.hotkey)
        except (httpx.HTTPError, TimeoutError) as error:
            logger.debug("miner uid %d did not answer: %s", neuron.uid, type(error).__name__)
            return None
        if response.status_code != 200:
            logger.debug("miner uid %d answered HTTP %d", neuron.uid, response.status_code)
            return None
        try:
            offer = TrainingRepoResponse.model_validate_json(response.content)
        except ValidationError as error:
            logger.debug("miner uid %d sent an invalid training repo: %s", neuron.uid, error.errors()[:1])
            return None
        if not is_acceptable_repo_url(offer.github_repo, allow_file_urls=ctx.settings.network == "local"):
            logger.debug("miner uid %d sent an unacceptable repo URL", neuron.uid)
            return None
    return RepoOffer(neuron=neuron, repo_url=offer.github_repo, commit_hash=offer.commit_hash)


async def _delay_or_fail(ctx: WorkerContext, task: TaskRow, lease_owner: str, reason: str) -> None:
    if task.times_delayed >= ctx.settings.max_delays:
        await fail_task(
            ctx,
            task.task_id,
            lease_owner,
            f"no contestants found after {task.times_delayed + 1} attempts: {reason}",
        )
        return
    async with ctx.pool.acquire() as conn, conn.transaction():
        await tasks_db.delay_task(
            conn,
            task_id=task.task_id,
            lease_owner=lease_owner,
            delay_seconds=ctx.settings.delay_seconds,
            message=f"{reason}; trying again in {ctx.settings.delay_seconds:g} s",
        )
    logger.info(
        "task %s is now delayed (%d of %d): %s", task.task_id, task.times_delayed + 1, ctx.settings.max_delays, reason
    )


async def find_contestants(ctx: WorkerContext, task: TaskRow, lease_owner: str) -> None:
    if task.status is not TaskStatus.LOOKING_FOR_NODES:
        await transition(
            ctx, task.task_id, lease_owner, TaskStatus.LOOKING_FOR_NODES, "looking for miners again", release=False
        )

    try:
        neurons = await ctx.chain.metagraph()
    except ChainError as error:
        await _delay_or_fail(ctx, task, lease_owner, f"the chain could not be read ({error})")
        return
    miners = candidate_miners(ctx, neurons)
    if not miners:
        await _delay_or_fail(ctx, task, lease_owner, "no miner serves an address on the subnet")
        return

    answers = await asyncio.gather(*(fetch_repo_offer(ctx, miner, task.task_type) for miner in miners))
    offers = [offer for offer in answers if offer is not None]
    if not offers:
        await _delay_or_fail(ctx, task, lease_owner, f"none of {len(miners)} miners offered a training repo")
        return
    if len(offers) > ctx.settings.max_contestants:
        offers = random.SystemRandom().sample(offers, ctx.settings.max_contestants)

    contestants = [
        NewContestant(
            hotkey=offer.neuron.hotkey,
            uid=offer.neuron.uid,
            repo_url=offer.repo_url,
            commit_hash=offer.commit_hash,
            job_id=uuid.uuid4(),
            expected_repo_name=expected_repo_name(task.task_id),
        )
        for offer in offers
    ]

    async def save(conn: asyncpg.Connection) -> None:
        await contestants_db.insert_contestants(conn, task_id=task.task_id, contestants=contestants)

    hotkeys = ", ".join(f"uid {item.uid} ({item.hotkey})" for item in contestants)
    await transition(
        ctx,
        task.task_id,
        lease_owner,
        TaskStatus.READY,
        f"{len(contestants)} contestants of {len(miners)} miners asked: {hotkeys}",
        writes=save,
    )


STAGE = Stage(
    name="looking for nodes",
    statuses=(TaskStatus.LOOKING_FOR_NODES, TaskStatus.DELAYED),
    handler=find_contestants,
)
