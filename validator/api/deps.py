"""Request dependencies: a database connection and the calling account.

Two credentials identify an account: API keys (long-lived, for the training endpoints) and session tokens (from
`POST /auth-with-fingerprint`, expiring). Training endpoints take only API keys; `POST /api-key-create` takes only a
session (a leaked API key cannot mint more keys); the other account endpoints take either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from validator.api.errors import ApiError
from validator.db import accounts as accounts_db

api_key_header = APIKeyHeader(
    name="Authorization",
    auto_error=False,
    description="`Bearer <api key or session token>` (a raw value is accepted too)",
)


async def get_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with request.app.state.pool.acquire() as conn:
        yield conn


DbConn = Annotated[asyncpg.Connection, Depends(get_connection)]


def api_key_from_header(authorization: str | None) -> str | None:
    """The key of `Bearer <key>` or of a raw `<key>`; None when the header is missing or blank."""
    if authorization is None:
        return None
    value = authorization.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        # "Bearer " with nothing after it (servers strip the trailing space) is a missing key, not a key "Bearer".
        value = rest.strip()
    return value or None


async def current_account(conn: DbConn, authorization: Annotated[str | None, Security(api_key_header)] = None) -> UUID:
    api_key = api_key_from_header(authorization)
    if api_key is None:
        raise ApiError(401, "missing API key: send the header 'Authorization: Bearer <api key>'")
    account_id = await accounts_db.get_account_for_key(conn, key_hash=accounts_db.hash_api_key(api_key))
    if account_id is None:
        raise ApiError(401, "invalid API key")
    return account_id


AccountId = Annotated[UUID, Depends(current_account)]


async def session_account(conn: DbConn, authorization: Annotated[str | None, Security(api_key_header)] = None) -> UUID:
    token = api_key_from_header(authorization)
    if token is None:
        raise ApiError(
            401, "missing session token: send 'Authorization: Bearer <session token>' from /auth-with-fingerprint"
        )
    account_id = await accounts_db.get_account_for_session(conn, token=token)
    if account_id is None:
        raise ApiError(401, "invalid or expired session token: get a new one from POST /auth-with-fingerprint")
    return account_id


async def session_or_key_account(
    conn: DbConn, authorization: Annotated[str | None, Security(api_key_header)] = None
) -> UUID:
    token = api_key_from_header(authorization)
    if token is None:
        raise ApiError(401, "missing credentials: send 'Authorization: Bearer <session token or API key>'")
    account_id = await accounts_db.get_account_for_session(conn, token=token)
    if account_id is None:
        account_id = await accounts_db.get_account_for_key(conn, key_hash=accounts_db.hash_api_key(token))
    if account_id is None:
        raise ApiError(401, "invalid or expired session token or API key")
    return account_id


SessionAccountId = Annotated[UUID, Depends(session_account)]
SessionOrKeyAccountId = Annotated[UUID, Depends(session_or_key_account)]
