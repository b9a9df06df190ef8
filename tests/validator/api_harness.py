"""A real validator API on a real port, for the schemathesis test, `benchmarks/schemathesis_run.py` and
`benchmarks/api_load.py`.

    app = local_validator_app(root, database_url)              # paid tasks, one published model
    async with serve_api(app) as base_url:                     # uvicorn on 127.0.0.1, a free port
        customer = await make_customer(base_url, "alice")      # account, session and API key over HTTP
        await fund(app.state.pool, customer.account_id, Decimal("1000"))
        report = await asyncio.to_thread(fuzz, base_url, customer, max_examples=10)

`fuzz` is blocking (schemathesis calls through `requests`), so it runs in a thread while uvicorn serves on the loop.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from fastapi import FastAPI

from core.chain import LocalChain
from core.db import apply_migrations, create_database, create_pool, embedded_server_url
from core.serving import bind_listener
from core.wallets import create_wallet
from tests.validator.billing_helpers import publish_model
from validator.db import MIGRATIONS_DIR, ledger as ledger_db
from validator.service import create_app
from validator.settings import ValidatorSettings

PUBLISHED_MODEL = "acme/small"  # 2M parameters: the cheapest text bucket
NETUID = 7
# Everything the issue asks of a response: no 5xx, a documented status code, the documented content type and body.
RESPONSE_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
# Operations that take only a session token; every other authenticated one is called with the API key.
SESSION_ONLY = {"POST /api-key-create"}


def local_validator_app(root: Path, database_url: str, **overrides: Any) -> FastAPI:
    """A paid-tasks validator app (API only, no workers) with its own wallet, local chain and model store."""
    root.mkdir(parents=True, exist_ok=True)
    wallet = create_wallet("validator", "default", root / "wallets")
    chain = LocalChain.create(root / "chain.json", netuid=NETUID, block_time_seconds=0.05)
    settings = ValidatorSettings(
        data_dir=root / "validator",
        netuid=NETUID,
        network="local",
        free_tasks=False,
        artifact_secret=secrets.token_hex(16),
        **overrides,
    )
    publish_model(
        settings.model_store_root,
        PUBLISHED_MODEL,
        shapes={"a": [1000, 1000], "b": [1000, 1000]},
        scratch=root / "models-src",
    )
    return create_app(settings, database_url=database_url, run_workers=False, wallet=wallet, chain=chain)


@asynccontextmanager
async def embedded_database(root: Path) -> AsyncIterator[str]:
    """A migrated validator database on an embedded PostgreSQL in `root` (stopped and deleted on exit)."""
    from core.db import _embedded_postgres

    pgdata = (root / "postgres").resolve()
    server_url = await asyncio.to_thread(embedded_server_url, pgdata, cleanup_mode="delete")
    try:
        url = await create_database(server_url, "api_harness")
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            await apply_migrations(pool, MIGRATIONS_DIR)
        finally:
            await pool.close()
        yield url
    finally:
        await asyncio.to_thread(_embedded_postgres().get_server(pgdata).cleanup)


@asynccontextmanager
async def serve_api(app: FastAPI, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve `app` with uvicorn (lifespan on, no access log) on a free port of this loop; yields its base URL."""
    sock = bind_listener(host, 0, env_prefix="VALIDATOR_")
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="api-harness-uvicorn")
    try:
        while not server.started:
            if serving.done():
                serving.result()  # raises what stopped the server
                raise RuntimeError("uvicorn stopped before it started serving")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


@dataclass
class Customer:
    account_id: uuid.UUID
    session_token: str
    api_key: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_customer(base_url: str, username: str) -> Customer:
    """A new account with a session and an API key, made over HTTP only."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        created = await client.post("/account-create", json={"username": username})
        created.raise_for_status()
        session = await client.post("/auth-with-fingerprint", json={"fingerprint": created.json()["fingerprint"]})
        session.raise_for_status()
        token = session.json()["session_token"]
        key = await client.post("/api-key-create", headers=bearer(token))
        key.raise_for_status()
    return Customer(
        account_id=uuid.UUID(created.json()["account_id"]), session_token=token, api_key=key.json()["api_key"]
    )


async def fund(pool: asyncpg.Pool, account_id: uuid.UUID, usd: Decimal) -> None:
    """Credit `usd` as if a TAO deposit had been seen (the deposit watcher's own ledger call)."""
    async with pool.acquire() as conn, conn.transaction():
        await ledger_db.credit_deposit(
            conn,
            account_id=account_id,
            transfer_id=f"harness-{uuid.uuid4().hex}",
            amount_tao=usd / 100,
            usd_per_tao=Decimal(100),
            amount_usd=usd,
        )


async def create_task(base_url: str, customer: Customer) -> uuid.UUID:
    body = {
        "ds_repo": "yahma/alpaca-cleaned",
        "model_repo": PUBLISHED_MODEL,
        "file_format": "hf",
        "hours_to_complete": 1,
        "field_instruction": "instruction",
        "field_output": "output",
    }
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/v1/tasks/create", json=body, headers=bearer(customer.api_key))
        response.raise_for_status()
    return uuid.UUID(response.json()["task_id"])


@dataclass
class FuzzReport:
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    # "operation -> status: what broke" -> how often; the first occurrence's full message per kind.
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.by_status.items()))
        return (
            f"{self.requests} requests over {len(self.by_operation)} operations; statuses {{{statuses}}}; "
            f"{sum(self.failures.values())} failures of {len(self.failures)} kinds"
        )


def fuzz(
    base_url: str,
    customer: Customer,
    *,
    max_examples: int,
    seed: int | None = 0,
    task_ids: Iterable[uuid.UUID] = (),
) -> FuzzReport:
    """Every operation of the served OpenAPI schema, `max_examples` positive and as many negative cases each.

    Each case goes with the right credential, none, or a wrong one; responses are checked with RESPONSE_CHECKS.
    A failure is counted by kind (operation, status, what broke) and the run goes on, so one run reports all.
    Blocking: call it in a thread when the API is served on the same event loop.
    """
    # Imported here: schemathesis is a dev dependency and this module is imported by benchmarks too.
    import hypothesis
    import requests
    import schemathesis
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.core.failures import Failure, FailureGroup

    checks = [getattr(schemathesis.checks, name) for name in RESPONSE_CHECKS]
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = FuzzReport()
    known_tasks = [str(task_id) for task_id in task_ids]
    session = requests.Session()

    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        good = customer.session_token if label in SESSION_ONLY else customer.api_key
        credentials = st.sampled_from([good, good, good, None, "Bearer god_not-a-key", customer.session_token])
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases = operation.as_strategy(generation_mode=mode)
            if known_tasks and "{task_id}" in operation.path:
                # Random ids only ever find nothing; the account's own tasks exercise the 200 answer too.
                cases = st.one_of(
                    cases,
                    st.sampled_from(known_tasks).flatmap(
                        lambda task_id, op=operation, m=mode: op.as_strategy(
                            generation_mode=m, path_parameters={"task_id": task_id}
                        )
                    ),
                )

            @hypothesis.settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=cases, credential=credentials)
            def run(case: Any, credential: str | None) -> None:
                headers = {"Authorization": credential} if credential is not None else None
                if credential is not None and not credential.startswith("Bearer "):
                    headers = bearer(credential)
                response = case.call(base_url=base_url, session=session, headers=headers)
                report.requests += 1
                report.by_status[response.status_code] += 1
                report.by_operation[case.operation.label] += 1
                try:
                    case.validate_response(response, checks=checks)
                except (Failure, FailureGroup) as error:
                    failures = error.exceptions if isinstance(error, FailureGroup) else [error]
                    for failure in failures:
                        kind = f"{case.operation.label} -> {response.status_code}: {getattr(failure, 'title', failure)}"
                        report.failures[kind] += 1
                        sent = response.request
                        report.examples.setdefault(
                            kind,
                            f"{str(failure).strip()[:600]}\nrequest: {sent.method} {sent.url} "
                            f"content-type={sent.headers.get('content-type')!r} body={(sent.body or b'')[:200]!r}\n"
                            f"response: {response.text[:300]}",
                        )

            if seed is not None:
                run = hypothesis.seed(seed)(run)
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # an operation without parameters or body has no negative case
    session.close()
    return report
