"""The metagraph as last read, one row per hotkey.

A uid is recycled when the chain deregisters its hotkey and registers another in its place; rows are keyed by hotkey
so the new hotkey never inherits the old one's row. A hotkey missing from the latest read stays, unregistered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core.chain.base import Neuron


@dataclass(frozen=True)
class NodeRow:
    hotkey: str
    uid: int
    coldkey: str
    stake: float
    validator_permit: bool
    address: str | None
    registered: bool
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class UidChange:
    """A uid whose hotkey differs from the previous read (a deregistration and a new registration)."""

    uid: int
    old_hotkey: str
    new_hotkey: str


_UPSERT = """
INSERT INTO nodes (hotkey, uid, coldkey, stake, validator_permit, address, registered)
VALUES ($1, $2, $3, $4, $5, $6, true)
ON CONFLICT (hotkey) DO UPDATE
SET uid = EXCLUDED.uid, coldkey = EXCLUDED.coldkey, stake = EXCLUDED.stake,
    validator_permit = EXCLUDED.validator_permit, address = EXCLUDED.address, registered = true, last_seen = now()
"""


async def sync_nodes(conn: asyncpg.Connection, neurons: Iterable[Neuron]) -> list[UidChange]:
    """Replace the registered set with `neurons`; run it in the caller's transaction. Returns the recycled uids."""
    neurons = list(neurons)
    previous = {record["uid"]: record["hotkey"] for record in await conn.fetch(
        "SELECT uid, hotkey FROM nodes WHERE registered"
    )}  # fmt: skip
    # Everything is unregistered first so that a uid can move to its new hotkey without a unique-index clash.
    await conn.execute("UPDATE nodes SET registered = false WHERE registered")
    await conn.executemany(
        _UPSERT,
        [
            (
                neuron.hotkey,
                neuron.uid,
                neuron.coldkey,
                float(neuron.stake),
                neuron.validator_permit,
                neuron.address,
            )
            for neuron in neurons
        ],
    )
    return [
        UidChange(uid=neuron.uid, old_hotkey=previous[neuron.uid], new_hotkey=neuron.hotkey)
        for neuron in sorted(neurons, key=lambda item: item.uid)
        if neuron.uid in previous and previous[neuron.uid] != neuron.hotkey
    ]


async def list_nodes(conn: asyncpg.Connection, *, registered_only: bool = True) -> list[NodeRow]:
    """Nodes ordered by uid (registered ones first when all are listed)."""
    records = await conn.fetch(
        "SELECT * FROM nodes WHERE registered OR NOT $1 ORDER BY registered DESC, uid, hotkey", registered_only
    )
    return [
        NodeRow(
            hotkey=r["hotkey"],
            uid=r["uid"],
            coldkey=r["coldkey"],
            stake=r["stake"],
            validator_permit=r["validator_permit"],
            address=r["address"],
            registered=r["registered"],
            first_seen=r["first_seen"],
            last_seen=r["last_seen"],
        )
        for r in records
    ]
