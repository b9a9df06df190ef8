"""The public API: API-key auth, field-naming validation errors, create and read a task."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn

from core.artifact_store import LocalArtifactStore
from core.chain import LocalChain
from tests.validator.conftest import Keys, events
from validator.api import build_api
from validator.db.accounts import mint_api_key
from validator.service import create_app
from validator.settings import ValidatorSettings

MIB = 1024 * 1024

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
        ({"hours_to_complete": 0}, "hours_to_complete: Input should be greater than or equal to 0.01"),
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


@pytest.mark.parametrize("field", ["ds_repo", "field_instruction", "field_output", "format", "system_format"])
async def test_nul_characters_are_a_validation_error_naming_the_field(
    client: httpx.AsyncClient, pool: asyncpg.Pool, field: str
) -> None:
    api_key = await mint_api_key(pool, "acme")

    response = await client.post("/v1/tasks/create", json={**BODY, field: "bad\u0000value"}, headers=bearer(api_key))

    message = assert_error(response, 422, "validation_error")
    assert message == f"{field}: must not contain NUL characters"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tasks") == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"field_output": None}, "field_output: required for instruct tasks"),
        ({"model_repo": "gpt2"}, "model_repo: 'gpt2' must look like 'org/name'"),
        ({"hours_to_complete": True}, "hours_to_complete: must be a number of hours, not true or false"),
        ({"hours_to_complete": 0.005}, "hours_to_complete: Input should be greater than or equal to 0.01"),
        ({"ds_repo": "ftp://files.example/rows.json", "file_format": "json"}, "unsupported URL scheme 'ftp'"),
        ({"ds_repo": "file:///etc/passwd", "file_format": "json"}, "ds_repo: unsupported URL scheme 'file'; use http"),
        ({"ds_repo": "https://files.example/rows.jsonl", "file_format": None}, "set file_format to json or csv"),
    ],
)
async def test_requests_that_could_only_fail_later_are_refused_at_creation(
    client: httpx.AsyncClient, pool: asyncpg.Pool, change: dict, expected: str
) -> None:
    api_key = await mint_api_key(pool, "acme")
    body = {key: value for key, value in {**BODY, **change}.items() if value is not None}

    response = await client.post("/v1/tasks/create", json=body, headers=bearer(api_key))

    assert expected in assert_error(response, 422, "validation_error")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_a_non_finite_budget_is_refused(client: httpx.AsyncClient, pool: asyncpg.Pool, number: str) -> None:
    api_key = await mint_api_key(pool, "acme")
    # Python's JSON reader, which the API uses, accepts these non-standard literals.
    content = json.dumps(BODY).replace('"hours_to_complete": 1.5', f'"hours_to_complete": {number}').encode()
    headers = {**bearer(api_key), "Content-Type": "application/json"}

    response = await client.post("/v1/tasks/create", content=content, headers=headers)

    assert assert_error(response, 422, "validation_error") == "hours_to_complete: must be a finite number"


@pytest.mark.parametrize("header", ["Bearer ", "Bearer", "bearer   "])
async def test_an_empty_bearer_header_is_a_missing_key(client: httpx.AsyncClient, header: str) -> None:
    response = await client.post("/v1/tasks/create", json=BODY, headers={"Authorization": header})

    assert assert_error(response, 401, "unauthorized").startswith("missing API key")


async def test_a_body_over_the_declared_limit_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    # No API key: the limit protects the API from anyone, before authentication.
    headers = {"Content-Type": "application/json", "Content-Length": str(200 * MIB)}

    response = await client.post("/v1/tasks/create", content=b"{}", headers=headers)

    message = assert_error(response, 413, "payload_too_large")
    assert message == "the request body is larger than the 1 MiB limit"
    assert response.json()["error"]["details"] == []


async def test_a_streamed_body_over_the_limit_is_counted_and_refused(client: httpx.AsyncClient) -> None:
    chunks_sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(64):  # 4 MiB in all, without a Content-Length (chunked)
            chunks_sent += 1
            yield b" " * (64 * 1024)

    response = await client.post("/v1/tasks/create", content=chunks(), headers={"Content-Type": "application/json"})

    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert assert_error(response, 413, "payload_too_large") == "the request body is larger than the 1 MiB limit"
    assert chunks_sent < 64


async def test_the_body_limit_follows_the_setting(
    settings: ValidatorSettings, validator_db: str, keys: Keys, chain: LocalChain, pool: asyncpg.Pool
) -> None:
    small = settings.model_copy(update={"max_request_bytes": 2048})
    app = create_app(small, database_url=validator_db, run_workers=False, wallet=keys.validator, chain=chain)
    api_key = await mint_api_key(pool, "acme")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://validator.test") as client:
            fits = await client.post("/v1/tasks/create", json={**BODY, "format": "x" * 1000}, headers=bearer(api_key))
            too_large = await client.post(
                "/v1/tasks/create", json={**BODY, "format": "x" * 2048}, headers=bearer(api_key)
            )

    assert fits.status_code == 200, fits.text
    assert assert_error(too_large, 413, "payload_too_large") == "the request body is larger than the 2048 bytes limit"


def _read_http_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length from `sock`: (status, body); (0, b"") when the peer closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), body


async def test_an_unexpected_error_is_a_500_that_keeps_the_connection_open(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts", secret=b"0123456789abcdef", base_url="http://localhost")
    app = build_api(artifact_store=store)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]

        def two_requests_on_one_connection() -> list[tuple[int, bytes]]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                results = []
                for _ in range(2):
                    sock.sendall(b"GET /boom HTTP/1.1\r\nHost: validator.test\r\n\r\n")
                    results.append(_read_http_response(sock))
                return results

        first, second = await asyncio.to_thread(two_requests_on_one_connection)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)

    assert first[0] == 500
    assert json.loads(first[1])["error"]["code"] == "internal_error"
    assert "a bug" not in first[1].decode()
    assert second[0] == 500, "the server closed the connection after the first error"
