"""The whole validator in one process: API, workers and weight setter, from a customer's request to weights.

Miners and the trainer host are in-test apps; the database, chain, stores, evaluation child process and the tiny
models are real.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from core.chain import LocalChain
from core.model_store import LocalModelStore
from tests.validator.conftest import Keys, Network, contestants_of, events, hotkey
from tests.validator.fakes import FAIL, build_tiny_model, perturbed_model_writer
from validator.db import weights as weights_db
from validator.db.accounts import mint_api_key
from validator.service import create_app
from validator.settings import ValidatorSettings

TINY_MODEL = "base/tiny-qwen2"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


async def wait_for(check, *, seconds: float, interval: float = 0.2):
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(interval)


async def test_a_task_goes_from_request_to_winner_and_weights(
    settings: ValidatorSettings,
    validator_db: str,
    pool: asyncpg.Pool,
    keys: Keys,
    chain: LocalChain,
    network: Network,
    model_store: LocalModelStore,
    tiny_model_dir: Path,
    dataset_file: Path,
) -> None:
    model_store.upload(tiny_model_dir, TINY_MODEL)
    failing, small_change, large_change = (miner.hotkey for miner in network.miners)
    network.trainer.outcomes[failing] = FAIL
    network.trainer.write_output = perturbed_model_writer(tiny_model_dir, {small_change: 0.002, large_change: 0.2})
    settings.model_store_dir = model_store.root
    app = create_app(
        settings, database_url=validator_db, wallet=keys.validator, chain=chain, http_transport=network.router
    )
    api_key = await mint_api_key(pool, "acme")
    headers = {"Authorization": f"Bearer {api_key}"}

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://validator.test") as client,
    ):
        created = await client.post(
            "/v1/tasks/create",
            headers=headers,
            json={
                "ds_repo": str(dataset_file),
                "file_format": "json",
                "model_repo": TINY_MODEL,
                "hours_to_complete": 0.5,
                "field_instruction": "question",
                "field_output": "answer",
            },
        )
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]

        async def finished() -> dict | None:
            details = (await client.get(f"/v1/tasks/{task_id}", headers=headers)).json()
            return details if details["status"] in ("success", "failure") else None

        details = await wait_for(finished, seconds=240)
        assert details["status"] == "success", (details["error"], await events(pool, uuid.UUID(task_id)))

        async def weights_on_chain():
            return await chain.latest_weights(hotkey(keys.validator))

        on_chain = await wait_for(weights_on_chain, seconds=30)

        # The trainer got the training rows through the validator's signed artifact link.
        job = next(iter(network.trainer.requests.values()))
        link = httpx.URL(job.dataset_url)
        downloaded = await client.get(link.raw_path.decode())
        assert downloaded.status_code == 200
        assert len(downloaded.json()) == 36

    log = await events(pool, uuid.UUID(task_id))
    assert details["status"] == "success", (details["error"], log)
    assert details["started_at"] is not None and details["finished_at"] is not None
    assert [status for status, _ in log if status != "preparing_data"] == [
        "pending",
        "looking_for_nodes",
        "ready",
        "training",
        "preevaluation",
        "evaluating",
        "success",
    ]

    contestants = await contestants_of(pool, uuid.UUID(task_id))
    assert contestants[failing].score == 0 and contestants[failing].invalid_reason.endswith("CUDA out of memory")
    ranked = sorted((item for item in contestants.values() if item.score), key=lambda item: item.test_loss)
    assert [item.score for item in ranked] == [1.0, 0.5]
    assert ranked[0].test_loss < ranked[1].test_loss
    assert details["trained_model_repository"] == ranked[0].output_repository
    async with pool.acquire() as conn:
        base_loss = await conn.fetchval("SELECT base_test_loss FROM tasks WHERE task_id = $1", uuid.UUID(task_id))
        weight_sets = await weights_db.list_weight_sets(conn)
    assert base_loss is not None and base_loss > 0

    weights = dict(zip(on_chain.hotkeys, on_chain.weights, strict=True))
    assert weights == {ranked[0].hotkey: pytest.approx(2 / 3), ranked[1].hotkey: pytest.approx(1 / 3)}
    assert weight_sets[0].block == on_chain.block
    assert weight_sets[0].version_key == settings.weights_version_key
