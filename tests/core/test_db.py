import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from core.db import (
    MigrationError,
    apply_migrations,
    create_pool,
    database_url_from,
    load_migrations,
    rollback_migrations,
    stop_embedded_database,
    stop_embedded_postgres,
)


def write_migrations(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0001_tasks.up.sql").write_text(
        "CREATE TABLE tasks (id serial PRIMARY KEY, payload jsonb NOT NULL);\n"
        "CREATE INDEX tasks_payload ON tasks USING gin (payload);\n"
    )
    (folder / "0001_tasks.down.sql").write_text("DROP TABLE tasks;\n")
    if count >= 2:
        (folder / "0002_notes.up.sql").write_text("CREATE TABLE notes (id serial PRIMARY KEY, body json);\n")
        (folder / "0002_notes.down.sql").write_text("DROP TABLE notes;\n")
    return folder


async def tables(pool) -> set[str]:
    rows = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def test_up_idempotent_down(make_database, tmp_path):
    migrations = write_migrations(tmp_path / "m")
    pool = await create_pool(await make_database())
    try:
        assert await apply_migrations(pool, migrations) == ["0001_tasks", "0002_notes"]
        assert await tables(pool) == {"schema_migrations", "tasks", "notes"}
        assert await apply_migrations(pool, migrations) == []

        # the json/jsonb codecs take and return Python objects
        await pool.execute("INSERT INTO tasks (payload) VALUES ($1)", {"a": [1, 2], "b": None})
        assert await pool.fetchval("SELECT payload FROM tasks") == {"a": [1, 2], "b": None}
        assert await pool.fetchval("SELECT payload->'a' FROM tasks") == [1, 2]

        assert await rollback_migrations(pool, migrations) == ["0002_notes"]
        assert await tables(pool) == {"schema_migrations", "tasks"}
        assert await apply_migrations(pool, migrations) == ["0002_notes"]
        assert await rollback_migrations(pool, migrations, steps=5) == ["0002_notes", "0001_tasks"]
        assert await tables(pool) == {"schema_migrations"}
        assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await pool.close()


async def test_concurrent_apply_applies_once(make_database, tmp_path):
    migrations = write_migrations(tmp_path / "m")
    # A migration that is not idempotent: a second application would fail or duplicate rows.
    (migrations / "0003_seed.up.sql").write_text("INSERT INTO notes (body) VALUES ('{\"seed\": true}');\n")
    (migrations / "0003_seed.down.sql").write_text("DELETE FROM notes;\n")
    url = await make_database()
    pools = [await create_pool(url, max_size=2), await create_pool(url, max_size=2)]
    try:
        results = await asyncio.gather(*(apply_migrations(pool, migrations) for pool in pools))
        assert sorted(results, key=len) == [[], ["0001_tasks", "0002_notes", "0003_seed"]]
        assert await pools[0].fetchval("SELECT count(*) FROM notes") == 1
    finally:
        for pool in pools:
            await pool.close()


async def test_failed_migration_rolls_back_alone(make_database, tmp_path):
    migrations = write_migrations(tmp_path / "m")
    (migrations / "0003_broken.up.sql").write_text("CREATE TABLE half (id int);\nSELECT no_such_function();\n")
    (migrations / "0003_broken.down.sql").write_text("DROP TABLE half;\n")
    pool = await create_pool(await make_database())
    try:
        with pytest.raises(MigrationError, match="0003_broken.up.sql"):
            await apply_migrations(pool, migrations)
        assert await tables(pool) == {"schema_migrations", "tasks", "notes"}
        versions = [row["version"] for row in await pool.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == ["0001", "0002"]
    finally:
        await pool.close()


def test_bad_migration_folders_name_the_file(tmp_path):
    missing_down = write_migrations(tmp_path / "a")
    (missing_down / "0002_notes.down.sql").unlink()
    with pytest.raises(MigrationError, match="0002_notes.down.sql is missing"):
        load_migrations(missing_down)

    gap = write_migrations(tmp_path / "b", count=1)
    (gap / "0003_late.up.sql").write_text("SELECT 1;")
    (gap / "0003_late.down.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="0003_late.up.sql: expected version 0002"):
        load_migrations(gap)

    badly_named = write_migrations(tmp_path / "c")
    (badly_named / "3_oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="3_oops.sql"):
        load_migrations(badly_named)

    with pytest.raises(MigrationError, match="does not exist"):
        load_migrations(tmp_path / "nowhere")


def test_database_url_from_starts_a_shared_embedded_server(tmp_path):
    # A long data dir: the socket path inside it would pass the ~107 byte limit of unix sockets.
    data_dir = tmp_path / ("d" * 60) / ("e" * 60)
    assert database_url_from("postgresql://u@h/db", data_dir=data_dir) == "postgresql://u@h/db"
    assert not data_dir.exists()
    try:
        url = database_url_from(None, data_dir=data_dir)
        assert "/god?" in url

        async def server_pid(dsn):
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS t (x int)")
                return await conn.fetchval("SELECT current_database()"), await conn.fetchval(
                    "SELECT setting FROM pg_settings WHERE name = 'data_directory'"
                )
            finally:
                await conn.close()

        assert asyncio.run(server_pid(url)) == ("god", str((data_dir / "postgres").resolve()))
        # Another process of the local network gets the same server and database, and it outlives that process.
        code = "import sys; from core.db import database_url_from; print(database_url_from(None, data_dir=sys.argv[1]))"
        other = subprocess.run(
            [sys.executable, "-c", code, str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parents[2],
        )
        assert other.stdout.strip() == url
        assert asyncio.run(server_pid(url))[0] == "god"
    finally:
        assert stop_embedded_database(data_dir=data_dir)
    assert not stop_embedded_postgres(data_dir / "postgres")


async def test_fresh_database_fixture_is_empty_and_per_module(fresh_database, make_database):
    assert fresh_database != await make_database()
    pool = await create_pool(fresh_database)
    try:
        assert await tables(pool) == set()
        assert (await pool.fetchval("SELECT current_database()")).startswith("test_")
    finally:
        await pool.close()


async def test_database_url_from_inside_an_event_loop(pg_server_url):
    # The session server lives in {tmp}/postgres, so that tmp folder is a data_dir whose server already runs.
    host_dir = pg_server_url.split("host=")[1]
    conn = await asyncpg.connect(pg_server_url)
    try:
        pgdata = Path(await conn.fetchval("SELECT setting FROM pg_settings WHERE name = 'data_directory'"))
    finally:
        await conn.close()
    assert pgdata.name == "postgres"
    url = database_url_from(None, data_dir=pgdata.parent, dbname="from_loop")
    assert url.endswith(f"/from_loop?host={host_dir}")
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "from_loop"
    finally:
        await conn.close()
