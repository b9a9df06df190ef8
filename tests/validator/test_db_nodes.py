"""The `nodes` table (the metagraph keyed by hotkey) and migration 0002 going down and up again."""

from __future__ import annotations

import asyncpg

from core.chain.base import Neuron
from core.db import apply_migrations, rollback_migrations
from validator.db import MIGRATIONS_DIR, nodes as nodes_db


def neuron(uid: int, hotkey: str, *, validator_permit: bool = False, address: str | None = None) -> Neuron:
    return Neuron(uid, hotkey, "5Cold", 1.0, validator_permit, address)


async def sync(pool: asyncpg.Pool, neurons: list[Neuron]) -> list[nodes_db.UidChange]:
    async with pool.acquire() as conn, conn.transaction():
        return await nodes_db.sync_nodes(conn, neurons)


async def test_every_sync_replaces_the_registered_set_and_names_recycled_uids(pool: asyncpg.Pool) -> None:
    assert await sync(pool, [neuron(0, "validator", validator_permit=True), neuron(1, "alice"), neuron(2, "bob")]) == []

    # bob is deregistered and carol takes uid 2; alice now serves an address.
    changes = await sync(
        pool,
        [neuron(0, "validator", validator_permit=True), neuron(1, "alice", address="http://a:1"), neuron(2, "carol")],
    )

    assert changes == [nodes_db.UidChange(uid=2, old_hotkey="bob", new_hotkey="carol")]
    async with pool.acquire() as conn:
        registered = await nodes_db.list_nodes(conn)
        every = {node.hotkey: node for node in await nodes_db.list_nodes(conn, registered_only=False)}
    assert [(node.uid, node.hotkey) for node in registered] == [(0, "validator"), (1, "alice"), (2, "carol")]
    assert not every["bob"].registered and every["bob"].uid == 2
    assert every["alice"].address == "http://a:1" and every["alice"].last_seen >= every["alice"].first_seen
    assert every["validator"].validator_permit

    # bob comes back at another uid: the same row, registered again.
    assert await sync(pool, [neuron(0, "validator"), neuron(1, "alice"), neuron(2, "carol"), neuron(3, "bob")]) == []
    async with pool.acquire() as conn:
        every = {node.hotkey: node for node in await nodes_db.list_nodes(conn, registered_only=False)}
    assert every["bob"].registered and every["bob"].uid == 3


async def test_migration_0002_goes_down_and_up_again(pool: asyncpg.Pool) -> None:
    await sync(pool, [neuron(0, "validator")])

    # Roll back everything after 0001, whatever later migrations exist, and check that 0002's down step ran.
    async with pool.acquire() as conn:
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    rolled_back = await rollback_migrations(pool, MIGRATIONS_DIR, steps=applied - 1)
    assert rolled_back[-1] == "0002_nodes_and_audit"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('nodes')") is None
        columns = {r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'weight_sets'"
        )}  # fmt: skip
    assert "evaluated_at" not in columns and "weights_by_uid" not in columns

    assert (await apply_migrations(pool, MIGRATIONS_DIR))[0] == "0002_nodes_and_audit"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM nodes") == 0
