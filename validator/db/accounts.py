"""Accounts and their API keys. Only the sha256 digest of a key is stored; the key is shown once when minted."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from uuid import UUID

import asyncpg

API_KEY_PREFIX = "god_"


def hash_api_key(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode("utf-8")).digest()


async def get_or_create_account(conn: asyncpg.Connection, *, name: str) -> UUID:
    # The no-op update makes RETURNING yield the existing row too, in one statement.
    return await conn.fetchval(
        """
        INSERT INTO accounts (account_id, name) VALUES ($1, $2)
        ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
        RETURNING account_id
        """,
        uuid.uuid4(),
        name,
    )


async def insert_api_key(conn: asyncpg.Connection, *, account_id: UUID, key_hash: bytes, key_prefix: str) -> None:
    await conn.execute(
        "INSERT INTO api_keys (key_hash, account_id, key_prefix) VALUES ($1, $2, $3)", key_hash, account_id, key_prefix
    )


async def get_account_for_key(conn: asyncpg.Connection, *, key_hash: bytes) -> UUID | None:
    """The account owning an unrevoked key with this digest.

    Looking up by digest keeps the comparison constant-time with respect to the key: an attacker learns at most
    which digest prefixes exist, which says nothing about any key.
    """
    return await conn.fetchval(
        "SELECT account_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        key_hash,
    )


async def mint_api_key(pool: asyncpg.Pool, account_name: str) -> str:
    """Create a key for the account (creating the account when missing); returns the key, which is not stored."""
    name = account_name.strip()
    if not name:
        raise ValueError("account name must not be blank")
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        account_id = await get_or_create_account(conn, name=name)
        await insert_api_key(conn, account_id=account_id, key_hash=hash_api_key(api_key), key_prefix=api_key[:8])
    return api_key
