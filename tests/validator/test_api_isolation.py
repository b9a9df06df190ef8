"""Every route of the API, classified: account B can neither read nor change anything of account A's.

A new route fails `test_every_route_is_classified` until it is added to one of the tables below (and, when it
touches an account's data, to the checks of `test_account_b_cannot_read_or_change_account_a`).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import httpx
from fastapi.routing import iter_route_contexts

from core.artifact_store import LocalArtifactStore
from core.chain import LocalChain
from tests.validator.conftest import Keys
from tests.validator.test_monitoring_api import BODY, bearer, client, create_task, funded_account, ok, set_task
from validator.api import build_api
from validator.db import contestants as contestants_db, ledger as ledger_db, tasks as tasks_db
from validator.db.contestants import NewContestant

__all__ = ["client"]  # the fixture, shared with the monitoring tests

# No credential, or a credential that only proves who the caller is; nothing of any account in the answer.
PUBLIC = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/swagger"),
    ("GET", "/health"),
    ("POST", "/account-create"),
    ("POST", "/auth-with-fingerprint"),
    ("POST", "/v1/tasks/text/check_price"),
    ("POST", "/v1/tasks/image/check_price"),
    ("GET", "/v1/prices"),
    ("GET", "/v1/network/status"),
    # Finished tasks' hotkeys and scores only (validator/db/auditing.py selects no account or dataset column).
    ("GET", "/auditing/tasks"),
    ("GET", "/auditing/tasks/hotkey/{hotkey}"),
    ("GET", "/auditing/tasks/{task_id}"),
    ("GET", "/auditing/scores-url"),
    ("GET", "/auditing/weights/latest"),
    ("GET", "/auditing/weights/{weight_set_id}"),
    # Signed, expiring links handed to trainer hosts; no account credential is involved.
    ("GET", "/artifacts/{key:path}"),
}
# Act on the caller's own account only: the account comes from the credential, never from the request.
CALLER_ONLY = {
    ("POST", "/api-key-create"),
    ("POST", "/account-get-info"),
    ("POST", "/account-get-public-key"),
    ("POST", "/v1/tasks/create"),
}
# Name one task by id: another account's task must read as 404.
BY_TASK_ID = {
    ("GET", "/v1/tasks/{task_id}"),
    ("GET", "/v1/tasks/breakdown/{task_id}"),
    ("DELETE", "/v1/tasks/delete/{task_id}"),
}
# Name an account by id: another account's id must read as 404.
BY_ACCOUNT_ID = {("GET", "/v1/tasks/account/{account_id}")}
# List the caller's tasks: another account's tasks never appear.
LISTS = {("GET", "/v1/tasks"), ("GET", "/v1/tasks/organic/completed")}

CLASSIFIED = PUBLIC | CALLER_ONLY | BY_TASK_ID | BY_ACCOUNT_ID | LISTS


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    store = LocalArtifactStore(tmp_path / "artifacts", secret=b"0123456789abcdef", base_url="http://localhost")
    app = build_api(artifact_store=store)
    return {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        for method in (route.methods or ())
        if method != "HEAD"
    }


def test_every_route_is_classified(tmp_path: Path) -> None:
    routes = app_routes(tmp_path)

    assert routes - CLASSIFIED == set(), "classify the new route(s) in tests/validator/test_api_isolation.py"
    assert CLASSIFIED - routes == set(), "these classified routes no longer exist"
    tables = [PUBLIC, CALLER_ONLY, BY_TASK_ID, BY_ACCOUNT_ID, LISTS]
    assert sum(len(table) for table in tables) == len(CLASSIFIED), "a route is in two tables"
    # A route naming a task or an account that is not public must be checked as such.
    for method, path in routes - PUBLIC:
        if "{task_id}" in path:
            assert (method, path) in BY_TASK_ID, path
        if "{account_id}" in path:
            assert (method, path) in BY_ACCOUNT_ID, path


async def test_account_b_cannot_read_or_change_account_a(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys
) -> None:
    a_id, a_key = await funded_account(client, pool, chain, keys, "account-a")
    b_id, b_key = await funded_account(client, pool, chain, keys, "account-b", tao=0)
    a_done = await create_task(client, a_key, result_model_name="a-secret-model")
    a_pending = await create_task(client, a_key)
    async with pool.acquire() as conn:
        contestant = NewContestant("miner-hotkey", 1, "https://git.example/r", "abc", uuid.uuid4(), "out")
        await contestants_db.insert_contestants(conn, task_id=uuid.UUID(a_done), contestants=[contestant])
    await set_task(pool, a_done, "status = 'success', finished_at = now(), termination_at = now()")
    b = bearer(b_key)
    checked: set[tuple[str, str]] = set()

    for method, path in BY_TASK_ID:
        for task_id in (a_done, a_pending):
            response = await client.request(method, path.replace("{task_id}", task_id), headers=b)
            assert response.status_code == 404, (method, path, response.text)
            assert a_id not in response.text
        checked.add((method, path))
    for method, path in BY_ACCOUNT_ID:
        response = await client.request(method, path.replace("{account_id}", a_id), headers=b)
        assert response.status_code == 404, (method, path, response.text)
        checked.add((method, path))
    for method, path in LISTS:
        assert ok(await client.request(method, path, headers=b)) == [], (method, path)
        checked.add((method, path))
    for method, path in CALLER_ONLY - {("POST", "/v1/tasks/create"), ("POST", "/api-key-create")}:
        answer = ok(await client.request(method, path, headers=b))
        assert a_id not in str(answer), (method, path)
        checked.add((method, path))
    # B cannot create a task in A's account (the body has no account field) or spend A's money.
    create = await client.post("/v1/tasks/create", json={**BODY, "account_id": a_id}, headers=b)
    assert create.status_code == 422 and "account_id" in create.text
    checked.add(("POST", "/v1/tasks/create"))
    # Minting a key needs a session, which only the fingerprint gives: B's API key cannot mint one for anyone.
    assert (await client.post("/api-key-create", headers=b)).status_code == 401
    checked.add(("POST", "/api-key-create"))

    assert checked == CALLER_ONLY | BY_TASK_ID | BY_ACCOUNT_ID | LISTS
    # Nothing of A's changed, and A still sees all of it.
    async with pool.acquire() as conn:
        for task_id in (a_done, a_pending):
            task = await tasks_db.get_task(conn, task_id=uuid.UUID(task_id))
            assert task is not None and task.deleted_at is None
        assert await ledger_db.get_balance(conn, account_id=uuid.UUID(a_id)) == 80
        assert await ledger_db.get_balance(conn, account_id=uuid.UUID(b_id)) == 0
    a_tasks = ok(await client.get("/v1/tasks", headers=bearer(a_key)))
    assert {task["id"] for task in a_tasks} == {a_done, a_pending}
    assert ok(await client.get(f"/v1/tasks/breakdown/{a_done}", headers=bearer(a_key)))["submissions"]
    # The public audit of A's finished task carries no account data.
    audit = ok(await client.get(f"/auditing/tasks/{a_done}"))
    assert a_id not in str(audit) and "a-secret-model" not in str(audit)
