"""The FastAPI application of the validator's public API."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from starlette.types import Scope

from core.artifact_store import LocalArtifactStore, artifact_router
from validator.api.errors import install_error_handlers
from validator.api.middleware import DEFAULT_MAX_REQUEST_BYTES, BodySizeLimitMiddleware, UnexpectedErrorMiddleware
from validator.api.routes import accounts, auditing, health, prices, tasks

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def _configured_body_limit(scope: Scope) -> int:
    """The settings' `max_request_bytes` of the running validator (the lifespan puts its context on app.state)."""
    context = getattr(scope["app"].state, "context", None)
    settings = getattr(context, "settings", None)
    return getattr(settings, "max_request_bytes", None) or DEFAULT_MAX_REQUEST_BYTES


def build_api(
    *, artifact_store: LocalArtifactStore, lifespan: Lifespan | None = None, max_request_bytes: int | None = None
) -> FastAPI:
    """The API with its routes, error handlers and request body limit.

    The lifespan must put an asyncpg pool on `app.state.pool`. `max_request_bytes` None takes the limit from the
    settings of the `WorkerContext` on `app.state.context` (1 MiB when there is none).
    """
    app = FastAPI(title="God validator", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    # The last added is the outermost: an error anywhere inside, the body limit included, gets the clean 500.
    app.add_middleware(BodySizeLimitMiddleware, limit=max_request_bytes or _configured_body_limit)
    app.add_middleware(UnexpectedErrorMiddleware)
    app.include_router(health.router)
    app.include_router(accounts.router)
    app.include_router(prices.router)
    app.include_router(tasks.router)
    app.include_router(auditing.router)
    app.include_router(artifact_router(artifact_store))
    return app
