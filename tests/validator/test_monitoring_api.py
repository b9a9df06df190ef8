"""Monitoring routes over HTTP against real PostgreSQL: own task lists, breakdown, deletion and its refunds, the
public network status, and the OpenAPI docs pages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from core.chain import LocalChain
from core.tasks import TaskStatus
from tests.validator.billing_helpers import publish_model
from tests.validator.conftest import Keys, coldkey, events
from validator.db import contestants as contestants_db, ledger as ledger_db, tasks as tasks_db
from validator.db.contestants import NewContestant
from validator.deposits import FixedRate, scan_once
from validator.service import create_app
from validator.settings import ValidatorSettings

SMALL_MODEL = "acme/small"  # the <= 1B bucket: $10 an hour
BODY = {
    "ds_repo": "yahma/alpaca-cleaned",
    "model_repo": SMALL_MODEL,
    "file_format": "hf",
    "hours_to_complete": 1,
    "field_instruction": "instruction",
    "field_output": "output",
}


@pytest.fixture
async def client(
    settings: ValidatorSettings, validator_db: str, keys: Keys, chain: LocalChain, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    paid = settings.model_copy(update={"free_tasks": False})
    publish_model(paid.model_store_root, SMALL_MODEL, shapes={"a": [1000, 1000]}, scratch=tmp_path / "src")
    app = create_app(paid, database_url=validator_db, run_workers=False, wallet=keys.validator, chain=chain)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://validator.test") as client:
            yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(response: httpx.Response) -> dict | list:
    assert response.status_code == 200, response.text
    return response.json()


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["code"]


async def funded_account(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys, username: str, tao: float = 1.0
) -> tuple[str, str]:
    """(account_id, API key) of a new account holding `tao` TAO ($100 a TAO), made over HTTP."""
    created = ok(await client.post("/account-create", json={"username": username}))
    session = ok(await client.post("/auth-with-fingerprint", json={"fingerprint": created["fingerprint"]}))
    token = session["session_token"]
    api_key = ok(await client.post("/api-key-create", headers=bearer(token)))["api_key"]
    if tao:
        address = ok(await client.post("/account-get-public-key", headers=bearer(token)))["public_key"]
        await chain.transfer(coldkey(keys.miners[0]), address, tao)
        await scan_once(pool, chain, FixedRate(Decimal("100")))
    return created["account_id"], api_key


async def create_task(client: httpx.AsyncClient, api_key: str, **change: object) -> str:
    return ok(await client.post("/v1/tasks/create", json={**BODY, **change}, headers=bearer(api_key)))["task_id"]


async def set_task(pool: asyncpg.Pool, task_id: str, sql_set: str, *args: object) -> None:
    """Move a task on as the workers would (the test owns the database here)."""
    async with pool.acquire() as conn:
        await conn.execute(f"UPDATE tasks SET {sql_set} WHERE task_id = $1", uuid.UUID(task_id), *args)


async def balance(pool: asyncpg.Pool, account_id: str) -> Decimal:
    async with pool.acquire() as conn:
        value = await ledger_db.get_balance(conn, account_id=uuid.UUID(account_id))
        assert await ledger_db.ledger_sum(conn, account_id=uuid.UUID(account_id)) == value
        return value


async def test_own_tasks_are_listed_newest_first_and_paged(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys
) -> None:
    account_id, api_key = await funded_account(client, pool, chain, keys, "lister")
    task_ids = [await create_task(client, api_key, result_model_name=f"run-{index}") for index in range(3)]

    everything = ok(await client.get("/v1/tasks", headers=bearer(api_key)))
    first = ok(await client.get("/v1/tasks?limit=2&page=1", headers=bearer(api_key)))
    second = ok(await client.get("/v1/tasks?limit=2&page=2", headers=bearer(api_key)))
    by_account = ok(await client.get(f"/v1/tasks/account/{account_id}?limit=2", headers=bearer(api_key)))

    assert [task["id"] for task in everything] == task_ids[::-1]
    assert [task["id"] for task in first + second] == task_ids[::-1]
    assert by_account == first
    assert all(task["account_id"] == account_id and task["status"] == "pending" for task in everything)
    assert error_code(await client.get("/v1/tasks?limit=0", headers=bearer(api_key)), 422) == "validation_error"
    assert error_code(await client.get("/v1/tasks?limit=101", headers=bearer(api_key)), 422) == "validation_error"
    assert error_code(await client.get("/v1/tasks?page=0", headers=bearer(api_key)), 422) == "validation_error"
    assert error_code(await client.get("/v1/tasks"), 401) == "unauthorized"
    other = uuid.uuid4()
    assert error_code(await client.get(f"/v1/tasks/account/{other}", headers=bearer(api_key)), 404) == "not_found"


async def test_completed_tasks_filter_by_age_type_and_model_name(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys
) -> None:
    _, api_key = await funded_account(client, pool, chain, keys, "finisher")
    fresh = await create_task(client, api_key, result_model_name="poetry_50")
    old = await create_task(client, api_key, result_model_name="other")
    running = await create_task(client, api_key)
    await set_task(pool, fresh, "status = 'success', finished_at = now() - interval '1 hour'")
    await set_task(pool, old, "status = 'success', finished_at = now() - interval '3 days'")

    async def completed(query: str = "") -> list[str]:
        return [task["id"] for task in ok(await client.get(f"/v1/tasks/organic/completed{query}", **auth))]

    auth = {"headers": bearer(api_key)}
    assert await completed() == [fresh, old]
    assert await completed("?hours=24") == [fresh]
    assert await completed("?task_type=InstructTextTask&limit=1&page=2") == [old]
    assert await completed("?task_type=ChatTask") == []
    assert await completed("?search_model_name=POETRY_50") == [fresh]  # any case
    assert await completed("?search_model_name=_50") == [fresh]
    assert await completed("?search_model_name=y%2550") == []  # % and _ are taken literally, not as wildcards
    assert await completed("?search_model_name=t_y") == []  # as a wildcard, _ would match "try"
    assert await completed("?search_model_name=acme/SMALL") == [fresh, old]
    assert running not in await completed()
    bad = await client.get("/v1/tasks/organic/completed?task_type=Nope", **auth)
    assert error_code(bad, 422) == "validation_error"
    assert error_code(await client.get("/v1/tasks/organic/completed?hours=0", **auth), 422) == "validation_error"


async def test_breakdown_shows_each_submission_of_own_task(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys
) -> None:
    _, api_key = await funded_account(client, pool, chain, keys, "analyst")
    task_id = await create_task(client, api_key)
    contestants = [
        NewContestant(f"hotkey-{index}", index, "https://git.example/r", "abc", uuid.uuid4(), f"out-{index}")
        for index in range(3)
    ]
    async with pool.acquire() as conn:
        await contestants_db.insert_contestants(conn, task_id=uuid.UUID(task_id), contestants=contestants)
        await conn.execute(
            "UPDATE contestants SET status = 'trained', output_repository = 'm/out-0', test_loss = 0.5, score = 1 "
            "WHERE hotkey = 'hotkey-0'"
        )
        await conn.execute(
            "UPDATE contestants SET status = 'failed', error = 'no output', score = 0, test_loss = 'NaN' "
            "WHERE hotkey = 'hotkey-1'"
        )
    await set_task(pool, task_id, "status = 'success', trained_model_repository = 'm/out-0', base_test_loss = 2")

    breakdown = ok(await client.get(f"/v1/tasks/breakdown/{task_id}", headers=bearer(api_key)))

    assert breakdown["task_id"] == task_id and breakdown["status"] == "success"
    assert breakdown["base_test_loss"] == 2 and breakdown["trained_model_repository"] == "m/out-0"
    by_hotkey = {item["hotkey"]: item for item in breakdown["submissions"]}
    assert by_hotkey["hotkey-0"] | {"uid": 0} == {
        "hotkey": "hotkey-0",
        "uid": 0,
        "repo": "https://git.example/r",
        "commit_hash": "abc",
        "status": "trained",
        "error": None,
        "is_valid": None,
        "test_loss": 0.5,
        "score": 1.0,
        "trained_model_repository": "m/out-0",
    }
    assert by_hotkey["hotkey-1"]["error"] == "no output" and by_hotkey["hotkey-1"]["test_loss"] is None
    assert by_hotkey["hotkey-2"]["status"] == "pending" and by_hotkey["hotkey-2"]["score"] is None
    missing = await client.get(f"/v1/tasks/breakdown/{uuid.uuid4()}", headers=bearer(api_key))
    assert error_code(missing, 404) == "not_found"


async def test_deleting_a_task_before_training_ends_and_refunds_it(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys
) -> None:
    account_id, api_key = await funded_account(client, pool, chain, keys, "quitter")
    task_id = await create_task(client, api_key)
    # A worker holds the task: the deletion must fence it out.
    await set_task(pool, task_id, "status = 'ready', lease_owner = 'worker-1', lease_until = now() + interval '1h'")
    assert await balance(pool, account_id) == Decimal("90")

    deleted = ok(await client.delete(f"/v1/tasks/delete/{task_id}", headers=bearer(api_key)))

    assert deleted["status"] == "failure" and deleted["refunded"] == 10.0 and deleted["success"] is True
    assert await balance(pool, account_id) == Decimal("100")
    async with pool.acquire() as conn:
        task = await tasks_db.get_task(conn, task_id=uuid.UUID(task_id))
        assert task is not None and task.deleted_at is not None and task.lease_owner is None
        assert task.error == tasks_db.DELETED_BEFORE_TRAINING
        with pytest.raises(tasks_db.LeaseLost):
            await tasks_db.set_status(
                conn, task_id=task.task_id, lease_owner="worker-1", status=TaskStatus.TRAINING, message="x"
            )
    assert ("failure", "refunded $10.00: deleted") in await events(pool, uuid.UUID(task_id))
    # Hidden from every route of the account, and deleting again refunds nothing more.
    assert error_code(await client.get(f"/v1/tasks/{task_id}", headers=bearer(api_key)), 404) == "not_found"
    assert error_code(await client.get(f"/v1/tasks/breakdown/{task_id}", headers=bearer(api_key)), 404)
    assert ok(await client.get("/v1/tasks", headers=bearer(api_key))) == []
    assert error_code(await client.delete(f"/v1/tasks/delete/{task_id}", headers=bearer(api_key)), 404)
    assert await balance(pool, account_id) == Decimal("100")


async def test_a_task_deleted_after_training_started_is_ended_but_not_refunded(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys
) -> None:
    account_id, api_key = await funded_account(client, pool, chain, keys, "latecomer")
    training = await create_task(client, api_key)
    finished = await create_task(client, api_key)
    await set_task(pool, training, "status = 'training', started_at = now(), termination_at = now() + interval '1h'")
    await set_task(pool, finished, "status = 'success', termination_at = now(), finished_at = now()")

    ended = ok(await client.delete(f"/v1/tasks/delete/{training}", headers=bearer(api_key)))
    hidden = ok(await client.delete(f"/v1/tasks/delete/{finished}", headers=bearer(api_key)))

    assert (ended["status"], ended["refunded"]) == ("failure", 0.0)
    assert (hidden["status"], hidden["refunded"]) == ("success", 0.0)
    assert await balance(pool, account_id) == Decimal("80")
    async with pool.acquire() as conn:
        assert (await tasks_db.get_task(conn, task_id=uuid.UUID(training))).error == (
            tasks_db.DELETED_AFTER_TRAINING_STARTED
        )
        # A finished task keeps its status: its scores still count for the miners and the public audit.
        assert (await tasks_db.get_task(conn, task_id=uuid.UUID(finished))).status is TaskStatus.SUCCESS


async def test_a_task_already_refunded_when_it_failed_is_not_refunded_again(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys
) -> None:
    account_id, api_key = await funded_account(client, pool, chain, keys, "unlucky")
    task_id = await create_task(client, api_key)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE tasks SET status = 'failure' WHERE task_id = $1", uuid.UUID(task_id))
        assert await ledger_db.refund_task(conn, task_id=uuid.UUID(task_id)) == Decimal("10")

    deleted = ok(await client.delete(f"/v1/tasks/delete/{task_id}", headers=bearer(api_key)))

    assert deleted["refunded"] == 0.0
    assert await balance(pool, account_id) == Decimal("100")


async def test_workers_skip_a_deleted_task(pool: asyncpg.Pool, client: httpx.AsyncClient, chain, keys) -> None:
    _, api_key = await funded_account(client, pool, chain, keys, "skipper")
    task_id = await create_task(client, api_key)
    # Even a deleted task left in a claimable status (say, by an operator's hand) is never claimed.
    await set_task(pool, task_id, "deleted_at = now()")

    async with pool.acquire() as conn:
        claimed = await tasks_db.claim_task(conn, statuses=[TaskStatus.PENDING], lease_owner="worker", lease_seconds=10)
    assert claimed is None


async def test_network_status_is_public_and_counts_tasks(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys, settings: ValidatorSettings
) -> None:
    _, api_key = await funded_account(client, pool, chain, keys, "busy")
    for _ in range(2):
        await create_task(client, api_key)
    done = await create_task(client, api_key)
    await set_task(pool, done, "status = 'success'")

    status = ok(await client.get("/v1/network/status"))

    assert status["tasks_by_status"]["pending"] == 2 and status["tasks_by_status"]["success"] == 1
    assert set(status["tasks_by_status"]) == {item.value for item in TaskStatus}
    assert status["active_tasks"] == 2
    assert status["trainers"] == len(settings.trainers) and status["jobs_training"] == 0
    assert status["max_contestants_per_task"] == settings.max_contestants
    assert status["miners"] >= 0
    assert "account" not in str(status)


async def test_openapi_docs_are_served_at_docs_and_swagger(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/swagger"):
        page = await client.get(path)
        assert page.status_code == 200 and "swagger" in page.text.lower() and "/openapi.json" in page.text
    spec = ok(await client.get("/openapi.json"))
    for path in (
        "/v1/tasks",
        "/v1/tasks/account/{account_id}",
        "/v1/tasks/breakdown/{task_id}",
        "/v1/tasks/delete/{task_id}",
        "/v1/tasks/organic/completed",
        "/v1/network/status",
    ):
        operation = next(iter(spec["paths"][path].values()))
        assert "application/json" in operation["responses"]["200"]["content"], path
        assert "429" in operation["responses"], path
