"""Rate limits: the token bucket, and 429 with Retry-After per credential and per client address over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from core.chain import LocalChain
from tests.validator.conftest import Keys
from validator.api.ratelimit import TokenBucketLimiter
from validator.db.accounts import mint_api_key
from validator.service import create_app
from validator.settings import ValidatorSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=60, burst=3, clock=clock)

    assert [limiter.acquire("k") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("k") == pytest.approx(1.0)
    assert limiter.acquire("other") is None  # buckets are per key
    clock.now += 0.5
    assert limiter.acquire("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("k") is None
    clock.now += 3600  # refills up to the burst, not beyond
    assert [limiter.acquire("k") for _ in range(4)][-1] is not None


def test_the_least_recently_used_buckets_are_forgotten() -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=1, max_buckets=2, clock=Clock())
    for key in ("a", "b", "c"):
        limiter.acquire(key)

    assert "a" not in limiter and "b" in limiter and "c" in limiter


@pytest.fixture
async def limited_client(
    settings: ValidatorSettings, validator_db: str, keys: Keys, chain: LocalChain
) -> AsyncIterator[httpx.AsyncClient]:
    limited = settings.model_copy(update={"rate_limit_per_minute": 6, "rate_limit_burst": 3})
    app = create_app(limited, database_url=validator_db, run_workers=False, wallet=keys.validator, chain=chain)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://validator.test") as client:
            yield client


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert "6 requests a minute" in response.json()["error"]["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 10


async def test_each_api_key_has_its_own_limit(limited_client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    first = {"Authorization": f"Bearer {await mint_api_key(pool, 'first')}"}
    second = {"Authorization": f"Bearer {await mint_api_key(pool, 'second')}"}

    answers = [await limited_client.get("/v1/tasks", headers=first) for _ in range(4)]

    assert [answer.status_code for answer in answers[:3]] == [200, 200, 200]
    assert_rate_limited(answers[3])
    # The first sight of the second key spent a token of the client address's bucket, which had all three left.
    assert (await limited_client.get("/v1/tasks", headers=second)).status_code == 200


async def test_unauthenticated_requests_are_limited_per_client_address(limited_client: httpx.AsyncClient) -> None:
    answers = [await limited_client.get("/v1/network/status") for _ in range(4)]

    assert [answer.status_code for answer in answers[:3]] == [200, 200, 200]
    assert_rate_limited(answers[3])
    assert_rate_limited(await limited_client.get("/v1/prices"))


async def test_made_up_credentials_do_not_escape_the_address_limit(limited_client: httpx.AsyncClient) -> None:
    answers = [
        await limited_client.get("/v1/network/status", headers={"Authorization": f"Bearer made-up-{index}"})
        for index in range(4)
    ]

    assert [answer.status_code for answer in answers[:3]] == [200, 200, 200]
    assert_rate_limited(answers[3])


def test_the_limit_is_off_on_the_local_network_by_default(settings: ValidatorSettings, tmp_path) -> None:
    assert settings.rate_limit_per_minute == 0
    real = ValidatorSettings(data_dir=tmp_path, netuid=56, network="finney")
    assert (real.rate_limit_per_minute, real.rate_limit_burst) == (600, 60)
