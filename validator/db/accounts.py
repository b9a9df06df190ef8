"""Accounts, their API keys, fingerprints and sessions. Only sha256 digests of these secrets are stored; each is
shown once, when it is made. Operators mint keys for named accounts (`mint_api_key`); customers make their own
accounts (`create_account`) and log in with the fingerprint it returns."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
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


# -- accounts customers make themselves (POST /account-create) and their sessions --

FINGERPRINT_PREFIX = "godf_"
SESSION_PREFIX = "gods_"


def new_secret_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class AccountRow:
    account_id: UUID
    name: str
    created_at: datetime
    balance_usd: Decimal
    deposit_ss58: str | None
    keypair_created_at: datetime | None


_ACCOUNT_COLUMNS = "account_id, name, created_at, balance_usd, deposit_ss58, keypair_created_at"


def _account(record: asyncpg.Record) -> AccountRow:
    return AccountRow(**{name: record[name] for name in AccountRow.__dataclass_fields__})


async def create_account(conn: asyncpg.Connection, *, name: str, fingerprint: str) -> AccountRow | None:
    """A new account with this fingerprint; None when the name is taken."""
    record = await conn.fetchrow(
        f"""
        INSERT INTO accounts (account_id, name, fingerprint_hash) VALUES ($1, $2, $3)
        ON CONFLICT (name) DO NOTHING
        RETURNING {_ACCOUNT_COLUMNS}
        """,
        uuid.uuid4(),
        name,
        hash_api_key(fingerprint),
    )
    return _account(record) if record is not None else None


async def get_account(conn: asyncpg.Connection, *, account_id: UUID) -> AccountRow | None:
    record = await conn.fetchrow(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1", account_id)
    return _account(record) if record is not None else None


async def get_account_for_fingerprint(conn: asyncpg.Connection, *, fingerprint: str) -> UUID | None:
    return await conn.fetchval("SELECT account_id FROM accounts WHERE fingerprint_hash = $1", hash_api_key(fingerprint))


async def insert_session(conn: asyncpg.Connection, *, account_id: UUID, token: str, ttl_seconds: float) -> datetime:
    """Store the session token's digest; returns when it expires."""
    return await conn.fetchval(
        """
        INSERT INTO sessions (token_hash, account_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
        RETURNING expires_at
        """,
        hash_api_key(token),
        account_id,
        ttl_seconds,
    )


async def get_account_for_session(conn: asyncpg.Connection, *, token: str) -> UUID | None:
    """The account of an unexpired session token."""
    return await conn.fetchval(
        "SELECT account_id FROM sessions WHERE token_hash = $1 AND expires_at > now()", hash_api_key(token)
    )


async def delete_expired_sessions(conn: asyncpg.Connection) -> int:
    result = await conn.execute("DELETE FROM sessions WHERE expires_at <= now()")
    return int(result.split()[-1])


async def create_api_key(conn: asyncpg.Connection, *, account_id: UUID) -> tuple[str, datetime]:
    """A new API key of the account: (the key, shown once; its creation time)."""
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    created_at = await conn.fetchval(
        "INSERT INTO api_keys (key_hash, account_id, key_prefix) VALUES ($1, $2, $3) RETURNING created_at",
        hash_api_key(api_key),
        account_id,
        api_key[:8],
    )
    return api_key, created_at


async def set_deposit_keypair(
    conn: asyncpg.Connection, *, account_id: UUID, ss58: str, encrypted_secret: bytes
) -> AccountRow | None:
    """Store the account's deposit keypair unless it has one already (then the existing one wins: concurrent
    requests all answer with the same address). Returns the account, None when it does not exist."""
    await conn.execute(
        """
        UPDATE accounts SET deposit_ss58 = $2, deposit_secret = $3, keypair_created_at = now()
        WHERE account_id = $1 AND deposit_ss58 IS NULL
        """,
        account_id,
        ss58,
        encrypted_secret,
    )
    return await get_account(conn, account_id=account_id)


async def get_deposit_secret(conn: asyncpg.Connection, *, account_id: UUID) -> bytes | None:
    """The encrypted secret of the account's deposit keypair (sweeping deposits needs it; TODO(#4))."""
    return await conn.fetchval("SELECT deposit_secret FROM accounts WHERE account_id = $1", account_id)


async def deposit_addresses(conn: asyncpg.Connection) -> dict[str, UUID]:
    """Every deposit address and the account it belongs to."""
    records = await conn.fetch("SELECT deposit_ss58, account_id FROM accounts WHERE deposit_ss58 IS NOT NULL")
    return {record["deposit_ss58"]: record["account_id"] for record in records}
