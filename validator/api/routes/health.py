"""Liveness and database reachability."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import APIRouter
from pydantic import BaseModel

from validator.api.deps import DbConn
from validator.api.errors import ApiError, ErrorResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class HealthResponse(BaseModel):
    status: str
    database: str


@router.get("/health", response_model=HealthResponse, responses={503: {"model": ErrorResponse}})
async def read_health(conn: DbConn) -> HealthResponse:
    """Whether the API runs and reaches its database."""
    try:
        await conn.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError) as error:
        logger.warning("health check: database unreachable: %s", type(error).__name__)
        raise ApiError(503, "the database is unreachable") from error
    return HealthResponse(status="ok", database="ok")
