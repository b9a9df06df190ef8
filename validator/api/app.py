"""The FastAPI application of the validator's public API."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.types import Scope

from core.artifact_store import LocalArtifactStore, artifact_router
from validator.api.errors import ErrorResponse, install_error_handlers
from validator.api.middleware import DEFAULT_MAX_REQUEST_BYTES, BodySizeLimitMiddleware, UnexpectedErrorMiddleware
from validator.api.ratelimit import RateLimitMiddleware, TokenBucketLimiter
from validator.api.routes import accounts, auditing, health, monitoring, prices, tasks

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def _configured_body_limit(scope: Scope) -> int:
    """The settings' `max_request_bytes` of the running validator (the lifespan puts its context on app.state)."""
    context = getattr(scope["app"].state, "context", None)
    settings = getattr(context, "settings", None)
    return getattr(settings, "max_request_bytes", None) or DEFAULT_MAX_REQUEST_BYTES


def _configured_rate_limiter(scope: Scope) -> TokenBucketLimiter | None:
    """The limiter of the running validator, made from its settings on first use; None when the limit is off."""
    state = scope["app"].state
    limiter = getattr(state, "rate_limiter", False)
    if limiter is False:
        settings = getattr(getattr(state, "context", None), "settings", None)
        per_minute = getattr(settings, "rate_limit_per_minute", None)
        if settings is None:
            return None  # no running validator (yet): nothing to read the limit from
        limiter = TokenBucketLimiter(per_minute=per_minute, burst=settings.rate_limit_burst) if per_minute else None
        state.rate_limiter = limiter
    return limiter


def build_api(
    *, artifact_store: LocalArtifactStore, lifespan: Lifespan | None = None, max_request_bytes: int | None = None
) -> FastAPI:
    """The API with its routes, error handlers and request body limit.

    The lifespan must put an asyncpg pool on `app.state.pool`. `max_request_bytes` None takes the limit from the
    settings of the `WorkerContext` on `app.state.context` (1 MiB when there is none).
    """
    app = FastAPI(
        title="God validator",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        # Answers any route can give, whatever its own declarations: an unreadable body (not UTF-8), one over the
        # size limit, the rate limit, and the generic 500.
        responses={
            400: {"model": ErrorResponse, "description": "The request body cannot be read (not UTF-8, say)"},
            413: {"model": ErrorResponse, "description": "The request body is larger than the validator's limit"},
            429: {"model": ErrorResponse, "description": "Rate limited: retry after `Retry-After` seconds"},
            500: {"model": ErrorResponse, "description": "Internal error; the operator finds the cause in the logs"},
        },
    )
    install_error_handlers(app)
    # The last added is the outermost: an error anywhere inside, the body limit included, gets the clean 500.
    app.add_middleware(BodySizeLimitMiddleware, limit=max_request_bytes or _configured_body_limit)
    app.add_middleware(RateLimitMiddleware, limiter=_configured_rate_limiter)
    app.add_middleware(UnexpectedErrorMiddleware)

    # The same Swagger UI as /docs, at the path the reference names (it loads its scripts from a CDN).
    @app.get("/swagger", include_in_schema=False, response_class=HTMLResponse)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - Swagger UI")

    app.include_router(health.router)
    app.include_router(accounts.router)
    app.include_router(prices.router)
    # Before tasks.router: its /v1/tasks/{task_id} must not be tried first for the longer monitoring paths.
    app.include_router(monitoring.router)
    app.include_router(monitoring.network_router)
    app.include_router(tasks.router)
    app.include_router(auditing.router)
    app.include_router(
        artifact_router(artifact_store),
        responses={
            403: {"model": ErrorResponse, "description": "The link's signature is wrong or it has expired"},
            404: {"model": ErrorResponse, "description": "No such artifact"},
        },
    )
    return app
