"""The public auditing pages, and `god audit`'s recomputation against them (in-process, over the ASGI app)."""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from rich.console import Console

from core.chain import LocalChain
from god.audit import print_report, quantized_like_chain, run_audit
from tests.validator.conftest import Keys, hotkey, insert_task
from tests.validator.test_weights import finish_task_with_scores, setter, uid_map
from validator.service import create_app
from validator.settings import ValidatorSettings
from validator.weights import WeightInputs, compute_weights

PRIVATE_FIELDS = {"account_id", "ds_repo", "dataset", "result_model_name", "trained_model_repository", "request"}


@pytest.fixture
async def client(
    settings: ValidatorSettings, validator_db: str, keys: Keys, chain: LocalChain
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database_url=validator_db, run_workers=False, wallet=keys.validator, chain=chain)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://validator.test") as client:
            yield client


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return body["error"]["message"]


def all_keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in all_keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in all_keys(item)}
    return set()


async def test_finished_tasks_are_public_without_customer_fields(
    client: httpx.AsyncClient, pool: asyncpg.Pool, keys: Keys, dataset_file
) -> None:
    miner_a, miner_b = hotkey(keys.miners[0]), hotkey(keys.miners[1])
    first = await finish_task_with_scores(pool, str(dataset_file), {miner_a: 1.0, miner_b: 0.5}, {miner_a: 2})
    second = await finish_task_with_scores(pool, str(dataset_file), {miner_b: 1.0})
    in_progress = await insert_task(pool, ds_repo=str(dataset_file))
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE contestants SET test_loss = 'NaN' WHERE task_id = $1 AND hotkey = $2", first, miner_b
        )

    listed = await client.get("/auditing/tasks")  # no API key

    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [task["task_id"] for task in body["tasks"]] == [str(second), str(first)]
    assert body["next_offset"] is None
    assert not all_keys(body) & PRIVATE_FIELDS
    task = body["tasks"][1]
    assert task["task_type"] == "InstructTextTask" and task["status"] == "success" and task["base_model"] == "base/tiny"
    assert task["submissions"] == [
        {"hotkey": miner_a, "uid": 2, "test_loss": 1.0, "score": 1.0},
        {"hotkey": miner_b, "uid": None, "test_loss": None, "score": 0.5},
    ]

    page = (await client.get("/auditing/tasks", params={"limit": 1})).json()
    assert [task["task_id"] for task in page["tasks"]] == [str(second)] and page["next_offset"] == 1
    page = (await client.get("/auditing/tasks", params={"limit": 1, "offset": 1})).json()
    assert [task["task_id"] for task in page["tasks"]] == [str(first)]
    of_a = (await client.get(f"/auditing/tasks/hotkey/{miner_a}")).json()
    assert [task["task_id"] for task in of_a["tasks"]] == [str(first)]
    one = await client.get(f"/auditing/tasks/{first}")
    assert one.status_code == 200 and one.json() == task

    assert "no finished task" in assert_error(
        await client.get(f"/auditing/tasks/{in_progress.task_id}"), 404, "not_found"
    )
    assert_error(await client.get(f"/auditing/tasks/{uuid.uuid4()}"), 404, "not_found")
    assert "limit" in assert_error(await client.get("/auditing/tasks", params={"limit": 0}), 422, "validation_error")


async def test_the_scores_url_leads_to_the_weight_set_and_all_its_inputs(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys, dataset_file
) -> None:
    assert_error(await client.get("/auditing/scores-url"), 404, "not_found")
    miner_a, miner_b = hotkey(keys.miners[0]), hotkey(keys.miners[1])
    uid = await uid_map(chain)
    scores = {miner_a: 1.0, miner_b: math.nan}
    await finish_task_with_scores(pool, str(dataset_file), scores, {miner_a: uid[miner_a], miner_b: uid[miner_b]})
    result = await setter(pool, chain, keys).set_weights_once()

    pointer = await client.get("/auditing/scores-url")
    assert pointer.status_code == 200, pointer.text
    assert pointer.json()["weight_set_id"] == result.weight_set_id
    published = await client.get(pointer.json()["url"])

    assert published.status_code == 200, published.text
    body = published.json()
    assert body["block"] == result.block and body["validator_hotkey"] == hotkey(keys.validator)
    assert body["weights"] == [{"uid": uid[miner_a], "hotkey": miner_a, "weight": 1.0}]
    assert body["inputs"]["organic"][0]["scores"] == {miner_a: 1.0, miner_b: "NaN"}
    assert compute_weights(WeightInputs.model_validate(body["inputs"])) == {uid[miner_a]: 1.0}
    assert (await client.get("/auditing/weights/latest")).json() == body
    assert_error(await client.get("/auditing/weights/999"), 404, "not_found")


async def test_audit_recomputes_the_weights_and_names_a_tampered_score(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys, dataset_file
) -> None:
    miners = [hotkey(wallet) for wallet in keys.miners]
    uid = await uid_map(chain)
    uids = {key: uid[key] for key in miners}
    await finish_task_with_scores(pool, str(dataset_file), {miners[0]: 1.0, miners[1]: 0.5}, uids)
    tampered_task = await finish_task_with_scores(pool, str(dataset_file), {miners[1]: 1.0, miners[2]: 0.5}, uids)
    await setter(pool, chain, keys, burn_uid=uid[hotkey(keys.validator)], max_weight=0.6).set_weights_once()

    report = await run_audit(client, chain)

    assert report.ok, report.differences
    assert report.tasks_used == 2
    assert {row.uid for row in report.rows} == {uid[key] for key in miners} | {uid[hotkey(keys.validator)]}
    assert all(row.matches and row.chain is not None for row in report.rows)
    printed = io.StringIO()
    print_report(report, Console(file=printed, width=200))
    assert "the weights match" in printed.getvalue() and miners[0] in printed.getvalue()

    # The validator's database says something other than what it published and set.
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE contestants SET score = 0.25 WHERE task_id = $1 AND hotkey = $2", tampered_task, miners[2]
        )
    report = await run_audit(client, chain)

    assert not report.ok
    assert any(f"hotkey {miners[2]}" in line and str(tampered_task) in line for line in report.differences)
    assert any(line.startswith(f"uid {uid[miners[2]]} (hotkey {miners[2]})") for line in report.differences)


def test_quantisation_matches_the_chains_u16_weights() -> None:
    # 0.25 / 0.5 * 65535 = 32767.5 rounds (half to even) to 32768, as the SDK's round() does.
    assert quantized_like_chain({1: 0.5, 2: 0.25, 3: 0.25}) == {1: 65535 / 131071, 2: 32768 / 131071, 3: 32768 / 131071}
    quantized = quantized_like_chain({1: 0.7, 2: 0.3, 3: 1e-9})
    assert set(quantized) == {1, 2} and quantized[1] == 65535 / (65535 + 28086)
