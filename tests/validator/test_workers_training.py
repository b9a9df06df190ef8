"""Training: jobs committed before they are posted, re-posted idempotently after a crash, polled to the end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from core.signed_http import SignedClient
from core.tasks import TaskStatus
from core.trainer_api import JOBS_PATH, TrainingJobRequest
from tests.validator.conftest import (
    TRAINER_URL,
    Keys,
    Network,
    contestants_of,
    get_task,
    hotkey,
    ready_task,
    run_until,
)
from tests.validator.fakes import FAIL, HANG
from validator.db import contestants as contestants_db, tasks as tasks_db
from validator.workers import WorkerContext, run_stage_once
from validator.workers.training import STAGE, build_job_request


async def test_jobs_are_committed_as_dispatching_before_they_are_posted(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    task_id = await ready_task(ctx, dataset_file)
    seen_at_post: list[tuple[str, str | None]] = []

    async def look_at_database(job: TrainingJobRequest) -> None:
        async with ctx.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT status, trainer_url FROM contestants WHERE job_id = $1", job.job_id)
        seen_at_post.append((row["status"], row["trainer_url"]))

    network.trainer.on_post = look_at_database

    assert await run_stage_once(ctx, STAGE, lease_owner="training-worker")

    assert seen_at_post == [("dispatching", TRAINER_URL)] * 3
    task = await get_task(ctx.pool, task_id)
    assert task.status is TaskStatus.TRAINING
    assert abs(task.termination_at - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)
    contestants = await contestants_of(ctx.pool, task_id)
    assert {item.status for item in contestants.values()} == {"training"}
    assert sorted(network.trainer.created) == sorted(item.job_id for item in contestants.values())
    job = network.trainer.requests[network.trainer.created[0]]
    assert job.time_limit_seconds == 3600
    assert job.expected_repo_name == contestants[job.hotkey].expected_repo_name
    url = urlsplit(job.dataset_url)
    query = parse_qs(url.query)
    assert url.path == f"/artifacts/tasks/{task_id}/train.json"
    assert ctx.artifact_store.verify(f"tasks/{task_id}/train.json", query["expires"][0], query["signature"][0])


async def test_a_dispatching_job_is_posted_again_with_the_same_job_id_after_a_crash(
    ctx: WorkerContext, network: Network, keys: Keys, dataset_file
) -> None:
    task_id = await ready_task(ctx, dataset_file)
    first, second, third = (await contestants_of(ctx.pool, task_id)).values()
    # A worker claims the task, commits two contestants as dispatching, posts only the first job, and dies.
    async with ctx.pool.acquire() as conn:
        await tasks_db.claim_task(conn, statuses=[TaskStatus.READY], lease_owner="crashed", lease_seconds=0.2)
        await tasks_db.set_status(
            conn, task_id=task_id, lease_owner="crashed", status=TaskStatus.TRAINING, message="x", release=False
        )
        await tasks_db.set_termination(conn, task_id=task_id, lease_owner="crashed")
        for contestant in (first, second):
            await contestants_db.mark_dispatching(
                conn,
                job_id=contestant.job_id,
                lease_owner="crashed",
                trainer_url=TRAINER_URL,
                trainer_hotkey=hotkey(keys.trainer),
            )
        task = await tasks_db.get_task(conn, task_id=task_id)
    async with SignedClient(keys.validator, transport=network.router) as client:
        posted = await client.post(
            TRAINER_URL + JOBS_PATH,
            receiver_hotkey=hotkey(keys.trainer),
            json=build_job_request(ctx, task, first),
        )
    assert posted.status_code == 200
    await asyncio.sleep(0.3)  # the lease expires

    assert await run_stage_once(ctx, STAGE, lease_owner="restarted")

    assert network.trainer.posts.count(first.job_id) == 2  # posted again, same id ...
    assert network.trainer.created.count(first.job_id) == 1  # ... and the trainer did not start it twice
    assert network.trainer.posts.count(second.job_id) == 1
    assert sorted(network.trainer.created) == sorted([first.job_id, second.job_id, third.job_id])
    statuses = {item.job_id: item.status for item in (await contestants_of(ctx.pool, task_id)).values()}
    assert set(statuses.values()) == {"training"}


async def test_a_failed_job_leaves_the_task_to_the_other_contestants(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    task_id = await ready_task(ctx, dataset_file)
    failing = network.miners[0].hotkey
    network.trainer.outcomes[failing] = FAIL

    task = await run_until(ctx, STAGE, task_id, {TaskStatus.PREEVALUATION, TaskStatus.FAILURE})

    assert task.status is TaskStatus.PREEVALUATION
    contestants = await contestants_of(ctx.pool, task_id)
    assert contestants[failing].status == "failed"
    assert contestants[failing].error == "training job failure: CUDA out of memory"
    assert contestants[failing].score == 0 and contestants[failing].is_valid is False
    for miner in network.miners[1:]:
        trained = contestants[miner.hotkey]
        assert trained.status == "trained"
        assert trained.output_repository == f"trainer/{trained.expected_repo_name}"
        assert ctx.model_store.exists(trained.output_repository)


async def test_all_jobs_failing_fails_the_task_with_their_reasons(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    task_id = await ready_task(ctx, dataset_file)
    for miner in network.miners:
        network.trainer.outcomes[miner.hotkey] = FAIL

    task = await run_until(ctx, STAGE, task_id, {TaskStatus.PREEVALUATION, TaskStatus.FAILURE})

    assert task.status is TaskStatus.FAILURE
    assert task.error.startswith("all 3 training jobs failed: ")
    assert task.error.count("CUDA out of memory") == 3


async def test_a_job_past_the_deadline_is_cancelled_and_failed(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    task_id = await ready_task(ctx, dataset_file)
    hanging = network.miners[0].hotkey
    network.trainer.outcomes[hanging] = HANG
    assert await run_stage_once(ctx, STAGE, lease_owner="training-worker")  # dispatch
    async with ctx.pool.acquire() as conn:
        await conn.execute("UPDATE tasks SET termination_at = now() - interval '2 minutes' WHERE task_id = $1", task_id)

    task = await run_until(ctx, STAGE, task_id, {TaskStatus.PREEVALUATION, TaskStatus.FAILURE})

    assert task.status is TaskStatus.PREEVALUATION
    contestants = await contestants_of(ctx.pool, task_id)
    assert network.trainer.deleted == [contestants[hanging].job_id]
    assert contestants[hanging].status == "failed"
    assert "did not finish within hours_to_complete (1 h) plus 60 s grace" in contestants[hanging].error


async def test_a_refusal_fails_the_contestant_but_a_full_trainer_is_retried(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    task_id = await ready_task(ctx, dataset_file)
    network.trainer.refuse_with = 429

    assert await run_stage_once(ctx, STAGE, lease_owner="training-worker")
    assert {item.status for item in (await contestants_of(ctx.pool, task_id)).values()} == {"pending"}

    network.trainer.refuse_with = 422
    task = await run_until(ctx, STAGE, task_id, {TaskStatus.PREEVALUATION, TaskStatus.FAILURE})

    assert task.status is TaskStatus.FAILURE
    assert "trainer http://trainer.test refused the job: HTTP 422: refused by the test" in task.error
    assert network.trainer.created == []


async def test_without_trainers_the_task_fails_at_once(ctx: WorkerContext, dataset_file) -> None:
    task_id = await ready_task(ctx, dataset_file)
    ctx.settings.trainers = []

    task = await run_until(ctx, STAGE, task_id, {TaskStatus.PREEVALUATION, TaskStatus.FAILURE}, tries=3)

    assert task.status is TaskStatus.FAILURE
    assert "no trainer hosts are configured on this validator (VALIDATOR_TRAINERS)" in task.error


async def test_a_trainer_error_keeps_the_job_dispatching_until_it_is_accepted(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    task_id = await ready_task(ctx, dataset_file)
    network.trainer.refuse_with = 500

    assert await run_stage_once(ctx, STAGE, lease_owner="training-worker")
    dispatching = await contestants_of(ctx.pool, task_id)
    network.trainer.refuse_with = None
    await run_until(ctx, STAGE, task_id, {TaskStatus.PREEVALUATION})

    assert {item.status for item in dispatching.values()} == {"dispatching"}
    for item in dispatching.values():
        assert network.trainer.posts.count(item.job_id) == 2
        assert network.trainer.created.count(item.job_id) == 1
