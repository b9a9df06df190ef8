"""The validator's public API (FastAPI): tasks, health and signed artifact downloads."""

from validator.api.app import build_api

__all__ = ["build_api"]
