"""The FastAPI application of the validator's public API."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI

from core.artifact_store import LocalArtifactStore, artifact_router
from validator.api.errors import install_error_handlers
from validator.api.routes import health, tasks

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def build_api(*, artifact_store: LocalArtifactStore, lifespan: Lifespan | None = None) -> FastAPI:
    """The API with its routes and error handlers. The lifespan must put an asyncpg pool on `app.state.pool`."""
    app = FastAPI(title="God validator", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.include_router(artifact_router(artifact_store))
    return app
