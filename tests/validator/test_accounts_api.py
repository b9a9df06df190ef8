"""Accounts, sessions, API keys, deposits, prices and paid task creation, over HTTP against real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest
from bittensor.sp_core import Keypair

from core.chain import LocalChain
from tests.validator.billing_helpers import publish_model
from tests.validator.conftest import Keys, coldkey
from validator.db import ledger as ledger_db
from validator.deposit_keys import SealedSecretError, open_sealed
from validator.deposits import FixedRate, scan_once
from validator.service import create_app
from validator.settings import ValidatorSettings, resolve_deposit_key

SMALL_MODEL = "acme/small"  # 2 x 1000 x 1000 parameters: the <= 1B bucket, $10 an hour
BODY = {
    "ds_repo": "yahma/alpaca-cleaned",
    "model_repo": SMALL_MODEL,
    "file_format": "hf",
    "hours_to_complete": 1,
    "field_instruction": "instruction",
    "field_output": "output",
}
RATE = FixedRate(Decimal("100"))


@pytest.fixture
def paid_settings(settings: ValidatorSettings, tmp_path: Path) -> ValidatorSettings:
    paid = settings.model_copy(update={"free_tasks": False})
    publish_model(
        paid.model_store_root, SMALL_MODEL, shapes={"a": [1000, 1000], "b": [1000, 1000]}, scratch=tmp_path / "src"
    )
    return paid


@pytest.fixture
async def client(
    paid_settings: ValidatorSettings, validator_db: str, keys: Keys, chain: LocalChain
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(paid_settings, database_url=validator_db, run_workers=False, wallet=keys.validator, chain=chain)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://validator.test") as client:
            yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    return response.json()["error"]


async def bootstrap(client: httpx.AsyncClient, username: str) -> tuple[str, str, str]:
    """(account_id, session token, API key) of a new account, made over HTTP only."""
    created = ok(await client.post("/account-create", json={"username": username}))
    session = ok(await client.post("/auth-with-fingerprint", json={"fingerprint": created["fingerprint"]}))
    key = ok(await client.post("/api-key-create", headers=bearer(session["session_token"])))
    assert created["account_id"] == session["account_id"] == key["account_id"]
    return created["account_id"], session["session_token"], key["api_key"]


async def fund(client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys, token: str, tao: float):
    address = ok(await client.post("/account-get-public-key", headers=bearer(token)))["public_key"]
    await chain.transfer(coldkey(keys.miners[0]), address, tao)
    await scan_once(pool, chain, RATE)
    return address


async def test_from_nothing_to_a_paid_task(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys, paid_settings: ValidatorSettings
) -> None:
    account_id, session, api_key = await bootstrap(client, "alice")
    info = ok(await client.post("/account-get-info", headers=bearer(session)))
    assert info == {
        "account_id": account_id,
        "username": "alice",
        "balance": 0.0,
        "bittensor_public_key": None,
        "created_at": info["created_at"],
    }

    first = ok(await client.post("/account-get-public-key", headers=bearer(session)))
    again = ok(await client.post("/account-get-public-key", headers=bearer(api_key)))
    assert first == again and first["network"] == "local"
    assert Keypair(ss58_address=first["public_key"]).ss58_address == first["public_key"]
    # The deposit secret is stored encrypted and opens, with the validator's key, to the address's mnemonic.
    async with pool.acquire() as conn:
        sealed = bytes(await conn.fetchval("SELECT deposit_secret FROM accounts WHERE account_id = $1", account_id))
    mnemonic = open_sealed(resolve_deposit_key(paid_settings), uuid.UUID(account_id), sealed)
    assert Keypair.create_from_mnemonic(mnemonic).ss58_address == first["public_key"]
    assert mnemonic.split()[0].encode() not in sealed
    with pytest.raises(SealedSecretError):
        open_sealed(resolve_deposit_key(paid_settings), uuid.uuid4(), sealed)

    price = ok(
        await client.post("/v1/tasks/text/check_price", json={"model_repo": SMALL_MODEL, "hours_to_complete": 1})
    )
    assert price["price"] == 10.0 and price["model_parameters"] == 2_000_000

    refused = error_of(await client.post("/v1/tasks/create", json=BODY, headers=bearer(api_key)), 402)
    assert refused["code"] == "insufficient_balance"
    assert "/account-get-public-key" in refused["message"] and "TAO" in refused["message"]

    await fund(client, pool, chain, keys, session, 0.25)  # 0.25 TAO at $100 = $25
    assert ok(await client.post("/account-get-info", headers=bearer(api_key)))["balance"] == 25.0
    created = ok(await client.post("/v1/tasks/create", json=BODY, headers=bearer(api_key)))
    assert created["account_id"] == account_id
    assert ok(await client.post("/account-get-info", headers=bearer(session)))["balance"] == 15.0
    async with pool.acquire() as conn:
        entries = await ledger_db.list_entries(conn, account_id=uuid.UUID(account_id))
        assert [(entry.kind, entry.amount_usd) for entry in entries] == [
            ("deposit", Decimal("25")),
            ("charge", Decimal("-10")),
        ]
        assert entries[1].task_id == uuid.UUID(created["task_id"])
        assert await ledger_db.ledger_sum(conn, account_id=uuid.UUID(account_id)) == Decimal("15")


async def test_sessions_and_api_keys_are_not_interchangeable(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    _, session, api_key = await bootstrap(client, "bob")

    assert error_of(await client.post("/api-key-create", headers=bearer(api_key)), 401)["code"] == "unauthorized"
    assert error_of(await client.post("/v1/tasks/create", json=BODY, headers=bearer(session)), 401)
    assert error_of(await client.post("/auth-with-fingerprint", json={"fingerprint": "godf_nope"}), 401)
    # A raw session token (no "Bearer") works too, until it expires.
    assert ok(await client.post("/account-get-info", headers={"Authorization": session}))["username"] == "bob"
    async with pool.acquire() as conn:
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
    assert "expired" in error_of(await client.post("/api-key-create", headers=bearer(session)), 401)["message"]
    async with pool.acquire() as conn:
        stored = await conn.fetch("SELECT token_hash FROM sessions")
    assert all(len(row["token_hash"]) == 32 and session.encode() not in bytes(row["token_hash"]) for row in stored)


async def test_usernames_are_unique_and_validated(client: httpx.AsyncClient) -> None:
    ok(await client.post("/account-create", json={"username": "carol"}))

    assert error_of(await client.post("/account-create", json={"username": "carol"}), 409)["code"] == "conflict"
    bad = error_of(await client.post("/account-create", json={"username": "has space"}), 422)
    assert bad["details"][0]["field"] == "username"


async def test_account_b_sees_nothing_of_account_a(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys
) -> None:
    a_id, a_session, a_key = await bootstrap(client, "account-a")
    b_id, b_session, b_key = await bootstrap(client, "account-b")
    await fund(client, pool, chain, keys, a_session, 1.0)
    task_id = ok(await client.post("/v1/tasks/create", json=BODY, headers=bearer(a_key)))["task_id"]

    for credential in (b_session, b_key):
        info = ok(await client.post("/account-get-info", headers=bearer(credential)))
        assert info["account_id"] == b_id and info["balance"] == 0.0 and info["bittensor_public_key"] is None
    assert error_of(await client.get(f"/v1/tasks/{task_id}", headers=bearer(b_key)), 404)["code"] == "not_found"
    b_address = ok(await client.post("/account-get-public-key", headers=bearer(b_session)))["public_key"]
    a_address = ok(await client.post("/account-get-public-key", headers=bearer(a_session)))["public_key"]
    assert a_address != b_address
    assert ok(await client.get(f"/v1/tasks/{task_id}", headers=bearer(a_key)))["account_id"] == a_id


async def test_fifty_concurrent_creations_against_a_balance_for_ten(
    client: httpx.AsyncClient, pool: asyncpg.Pool, chain: LocalChain, keys: Keys
) -> None:
    account_id, session, api_key = await bootstrap(client, "rush")
    await fund(client, pool, chain, keys, session, 1.0)  # $100: ten tasks of $10

    responses = await asyncio.gather(
        *(client.post("/v1/tasks/create", json=BODY, headers=bearer(api_key)) for _ in range(50))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) == 10 and statuses.count(402) == 40, statuses
    async with pool.acquire() as conn:
        balance = await ledger_db.get_balance(conn, account_id=uuid.UUID(account_id))
        assert balance == Decimal("0")
        assert await ledger_db.ledger_sum(conn, account_id=uuid.UUID(account_id)) == balance
        assert await conn.fetchval("SELECT count(*) FROM tasks WHERE account_id = $1", uuid.UUID(account_id)) == 10


async def test_prices_follow_the_size_buckets(
    client: httpx.AsyncClient, paid_settings: ValidatorSettings, tmp_path: Path
) -> None:
    llama_7b = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 32000, "intermediate_size": 11008}
    publish_model(paid_settings.model_store_root, "acme/seven", config=llama_7b, scratch=tmp_path / "m")
    publish_model(paid_settings.model_store_root, "acme/big", shapes={"w": [45_000, 1_000_000]}, scratch=tmp_path / "m")

    async def price(repo: str, hours: float) -> dict:
        return ok(
            await client.post("/v1/tasks/text/check_price", json={"model_repo": repo, "hours_to_complete": hours})
        )

    assert (await price(SMALL_MODEL, 2.5))["price"] == 25.0
    seven = await price("acme/seven", 2)
    assert 6e9 < seven["model_parameters"] <= 7e9 and seven["usd_per_hour"] == 15.0 and seven["price"] == 30.0
    assert (await price("acme/big", 1))["usd_per_hour"] == 50.0
    image = ok(await client.post("/v1/tasks/image/check_price", json={"hours_to_complete": 3}))
    assert image["price"] == 15.0
    rates = ok(await client.get("/v1/prices"))
    assert [bucket["usd_per_hour"] for bucket in rates["text"]] == [10, 15, 25, 50]
    assert rates["image_usd_per_hour"] == 5 and rates["free_tasks"] is False
    missing = error_of(
        await client.post("/v1/tasks/text/check_price", json={"model_repo": "no/such", "hours_to_complete": 1}), 404
    )
    assert missing["message"].startswith("model_repo:")
