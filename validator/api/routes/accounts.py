"""Accounts customers make themselves: create, log in with the fingerprint, mint API keys, read the balance and
the deposit address (paths as in the public description of the product)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from validator.api.deps import DbConn, SessionAccountId, SessionOrKeyAccountId
from validator.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from validator.db import accounts as accounts_db
from validator.deposit_keys import new_deposit_keypair, seal

logger = logging.getLogger(__name__)

router = APIRouter(tags=["accounts"], responses=ERROR_RESPONSES)


class AccountCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")

    @field_validator("username", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class AccountCreateResponse(BaseModel):
    success: bool = True
    account_id: UUID
    username: str
    fingerprint: str = Field(description="The account's login secret: shown once, keep it safe")
    created_at: datetime


class AuthWithFingerprintRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fingerprint: str = Field(min_length=1, max_length=256)


class SessionResponse(BaseModel):
    success: bool = True
    account_id: UUID
    session_token: str = Field(description="Send as 'Authorization: Bearer <session token>' until expires_at")
    expires_at: datetime


class ApiKeyResponse(BaseModel):
    success: bool = True
    account_id: UUID
    api_key: str = Field(description="Shown once; only its digest is stored")
    key_prefix: str
    created_at: datetime


class AccountInfo(BaseModel):
    account_id: UUID
    username: str
    balance: float = Field(description="USD")
    bittensor_public_key: str | None = Field(
        description="The ss58 deposit address; null until POST /account-get-public-key makes it"
    )
    created_at: datetime


class PublicKeyResponse(BaseModel):
    public_key: str = Field(description="The ss58 address to send TAO to")
    keypair_created_at: datetime
    network: str


def _context(request: Request):
    return request.app.state.context


@router.post("/account-create", response_model=AccountCreateResponse, responses={409: {"model": ErrorResponse}})
async def account_create(body: AccountCreateRequest, conn: DbConn) -> AccountCreateResponse:
    """Make an account; the answer's fingerprint logs in (`POST /auth-with-fingerprint`) and is shown only once."""
    fingerprint = accounts_db.new_secret_token(accounts_db.FINGERPRINT_PREFIX)
    account = await accounts_db.create_account(conn, name=body.username, fingerprint=fingerprint)
    if account is None:
        raise ApiError(409, f"username {body.username!r} is taken; choose another")
    logger.info("account %s created", account.account_id)
    return AccountCreateResponse(
        account_id=account.account_id, username=account.name, fingerprint=fingerprint, created_at=account.created_at
    )


@router.post("/auth-with-fingerprint", response_model=SessionResponse)
async def auth_with_fingerprint(body: AuthWithFingerprintRequest, request: Request, conn: DbConn) -> SessionResponse:
    """A session token for the account of this fingerprint, valid for `VALIDATOR_SESSION_TTL_SECONDS`."""
    account_id = await accounts_db.get_account_for_fingerprint(conn, fingerprint=body.fingerprint)
    if account_id is None:
        raise ApiError(401, "unknown fingerprint")
    await accounts_db.delete_expired_sessions(conn)  # keeps the table to the live sessions
    token = accounts_db.new_secret_token(accounts_db.SESSION_PREFIX)
    expires_at = await accounts_db.insert_session(
        conn, account_id=account_id, token=token, ttl_seconds=_context(request).settings.session_ttl_seconds
    )
    logger.info("session started for account %s", account_id)
    return SessionResponse(account_id=account_id, session_token=token, expires_at=expires_at)


@router.post("/api-key-create", response_model=ApiKeyResponse)
async def api_key_create(account_id: SessionAccountId, conn: DbConn) -> ApiKeyResponse:
    """A long-lived API key for the training endpoints (needs a session token, not an API key)."""
    api_key, created_at = await accounts_db.create_api_key(conn, account_id=account_id)
    logger.info("API key minted for account %s", account_id)
    return ApiKeyResponse(account_id=account_id, api_key=api_key, key_prefix=api_key[:8], created_at=created_at)


async def _account(conn, account_id: UUID) -> accounts_db.AccountRow:
    account = await accounts_db.get_account(conn, account_id=account_id)
    if account is None:  # deleted while its credential was in flight
        raise ApiError(401, "the account of these credentials no longer exists")
    return account


@router.post("/account-get-info", response_model=AccountInfo)
async def account_get_info(account_id: SessionOrKeyAccountId, conn: DbConn) -> AccountInfo:
    """The calling account: balance in USD and deposit address."""
    account = await _account(conn, account_id)
    return AccountInfo(
        account_id=account.account_id,
        username=account.name,
        balance=float(account.balance_usd),
        bittensor_public_key=account.deposit_ss58,
        created_at=account.created_at,
    )


@router.post("/account-get-public-key", response_model=PublicKeyResponse)
async def account_get_public_key(
    account_id: SessionOrKeyAccountId, request: Request, conn: DbConn
) -> PublicKeyResponse:
    """The account's deposit address, made on the first call: send TAO to it to add to the balance."""
    account = await _account(conn, account_id)
    settings = _context(request).settings
    if account.deposit_ss58 is None:
        keypair = await asyncio.to_thread(new_deposit_keypair)
        sealed = seal(request.app.state.deposit_key, account_id, keypair.mnemonic)
        account = await accounts_db.set_deposit_keypair(
            conn, account_id=account_id, ss58=keypair.ss58, encrypted_secret=sealed
        )
        if account is None:
            raise ApiError(401, "the account of these credentials no longer exists")
        if account.deposit_ss58 == keypair.ss58:
            logger.info("deposit address %s made for account %s", keypair.ss58, account_id)
    if account.deposit_ss58 is None or account.keypair_created_at is None:  # the UPDATE above guarantees both
        raise ApiError(503, "the deposit address could not be made; try again")
    return PublicKeyResponse(
        public_key=account.deposit_ss58, keypair_created_at=account.keypair_created_at, network=settings.network
    )
