"""The public API: API-key auth, field-naming validation errors, create and read a task."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from core.chain import LocalChain
from tests.validator.conftest import Keys, events
from validator.db.accounts import mint_api_key
from validator.service import create_app
from validator.settings import ValidatorSettings

BODY = {
    "ds_repo": "yahma/alpaca-cleaned",
    "model_repo": "Qwen/Qwen2.5-0.5B",
    "file_format": "hf",
    "hours_to_complete": 1.5,
    "field_instruction": "instruction",
    "field_input": "input",
    "field_output": "output",
}


@pytest.fixture
async def client(
    settings: ValidatorSettings, validator_db: str, keys: Keys, chain: LocalChain
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database_url=validator_db, run_workers=False, wallet=keys.validator, chain=chain)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://validator.test") as client:
            yield client


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    return body["error"]["message"]


async def test_requests_without_a_valid_key_are_refused(client: httpx.AsyncClient) -> None:
    message = assert_error(await client.post("/v1/tasks/create", json=BODY), 401, "unauthorized")
    assert "Authorization: Bearer" in message
    assert_error(await client.post("/v1/tasks/create", json=BODY, headers=bearer("god_wrong")), 401, "unauthorized")
    assert_error(await client.get("/v1/tasks/00000000-0000-0000-0000-000000000000"), 401, "unauthorized")


async def test_create_then_read_round_trip(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    api_key = await mint_api_key(pool, "acme")

    created = await client.post("/v1/tasks/create", json=BODY, headers=bearer(api_key))

    assert created.status_code == 200, created.text
    body = created.json()
    assert body["success"] is True
    read = await client.get(f"/v1/tasks/{body['task_id']}", headers=bearer(api_key))
    assert read.status_code == 200, read.text
    details = read.json()
    assert details["id"] == body["task_id"]
    assert details["account_id"] == body["account_id"]
    assert details["status"] == "pending"
    assert details["task_type"] == "InstructTextTask"
    assert details["hours_to_complete"] == 1.5
    assert details["base_model_repository"] == "Qwen/Qwen2.5-0.5B"
    assert details["ds_repo"] == "yahma/alpaca-cleaned"
    assert details["trained_model_repository"] is None and details["error"] is None
    assert await events(pool, uuid.UUID(body["task_id"])) == [("pending", "task created")]


async def test_a_raw_key_without_bearer_is_accepted(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    api_key = await mint_api_key(pool, "acme")

    response = await client.post("/v1/tasks/create", json=BODY, headers={"Authorization": api_key})

    assert response.status_code == 200, response.text


async def test_another_accounts_task_reads_as_not_found(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    owner_key = await mint_api_key(pool, "owner")
    other_key = await mint_api_key(pool, "other")
    task_id = (await client.post("/v1/tasks/create", json=BODY, headers=bearer(owner_key))).json()["task_id"]

    message = assert_error(await client.get(f"/v1/tasks/{task_id}", headers=bearer(other_key)), 404, "not_found")

    assert task_id in message
    assert (await client.get(f"/v1/tasks/{task_id}", headers=bearer(owner_key))).status_code == 200


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"field_instruction": None}, "field_instruction: Field required"),
        ({"hours_to_complete": 0}, "hours_to_complete: Input should be greater than 0"),
        ({"field_instruction": "   "}, "field_instruction: must not be blank"),
        ({"file_format": "parquet"}, "file_format: Input should be"),
        ({"account_id": "someone-else"}, "account_id: Extra inputs are not permitted"),
    ],
)
async def test_validation_errors_name_the_field(
    client: httpx.AsyncClient, pool: asyncpg.Pool, change: dict, expected: str
) -> None:
    api_key = await mint_api_key(pool, "acme")
    body = {**BODY, **change}
    body = {key: value for key, value in body.items() if value is not None}

    response = await client.post("/v1/tasks/create", json=body, headers=bearer(api_key))

    message = assert_error(response, 422, "validation_error")
    assert expected in message
    field = expected.split(":")[0]
    assert [detail["field"] for detail in response.json()["error"]["details"]] == [field]


async def test_malformed_json_and_bad_ids_get_the_same_error_shape(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    api_key = await mint_api_key(pool, "acme")
    headers = {**bearer(api_key), "Content-Type": "application/json"}

    malformed = await client.post("/v1/tasks/create", content=b"{not json", headers=headers)
    bad_id = await client.get("/v1/tasks/not-a-uuid", headers=bearer(api_key))
    unknown = await client.get("/v1/nothing-here")

    assert "body: the body is not valid JSON" in assert_error(malformed, 422, "validation_error")
    assert "task_id:" in assert_error(bad_id, 422, "validation_error")
    assert_error(unknown, 404, "not_found")


async def test_health_reports_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_artifact_links_need_a_valid_signature(client: httpx.AsyncClient) -> None:
    message = assert_error(await client.get("/artifacts/tasks/x/train.json?expires=1&signature=00"), 403, "forbidden")
    assert "expired" in message


async def test_api_keys_are_stored_only_as_digests(pool: asyncpg.Pool) -> None:
    api_key = await mint_api_key(pool, "acme")
    second = await mint_api_key(pool, "acme")

    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT key_hash, key_prefix, account_id FROM api_keys")
    assert api_key != second
    assert len({row["account_id"] for row in rows}) == 1
    assert all(api_key.encode() not in bytes(row["key_hash"]) for row in rows)
    assert {len(row["key_hash"]) for row in rows} == {32}
