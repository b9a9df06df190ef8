"""ASGI middleware of the public API: a request body size limit, and a 500 that keeps the connection usable.

Both are plain ASGI (no BaseHTTPMiddleware) so that a request body is never buffered by the middleware itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from validator.api.errors import INTERNAL_ERROR_MESSAGE, error_response

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = MIB

BodyLimit = int | Callable[[Scope], int]


def too_large_message(limit: int) -> str:
    shown = f"{limit // MIB} MiB" if limit >= MIB and limit % MIB == 0 else f"{limit} bytes"
    return f"the request body is larger than the {shown} limit"


class BodySizeLimitMiddleware:
    """Answers 413 (the standard error body) to requests whose body exceeds `limit` bytes.

    A declared Content-Length over the limit is refused before any of the body is read. Bodies without one
    (chunked) are counted while the app reads them; the read that crosses the limit raises an HTTPException(413),
    which FastAPI passes to the API's error handlers (and which this middleware answers itself otherwise).

    Args:
        limit: bytes, or a function of the request scope that returns them (read per request).
    """

    def __init__(self, app: ASGIApp, *, limit: BodyLimit) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope) if callable(self.limit) else self.limit
        message = too_large_message(limit)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.strip().isdigit() and int(value) > limit:
                logger.debug("refused a %s-byte body of %s %s", value[:20], scope.get("method"), scope.get("path"))
                await error_response(413, "payload_too_large", message)(scope, receive, send)
                return

        received = 0
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    logger.debug("refused a streamed body over %d bytes of %s", limit, scope.get("path"))
                    raise HTTPException(413, detail=message)
            return event

        async def watched_send(event: Message) -> None:
            nonlocal response_started
            if event["type"] == "http.response.start":
                response_started = True
            await send(event)

        try:
            await self.app(scope, counted_receive, watched_send)
        except HTTPException as error:
            # Apps that do not turn an HTTPException into a response (a raw ASGI route) leave it to us.
            if error.status_code != 413 or response_started:
                raise
            await error_response(413, "payload_too_large", message)(scope, receive, send)


class UnexpectedErrorMiddleware:
    """Answers an exception that escaped the app with the API's 500 body, and does not re-raise it.

    Starlette's outermost error middleware sends the same 500 but then re-raises, and the server closes a connection
    whose app raised: every keep-alive client would lose its connection to one bad request. Only when the response
    has already started (so no clean answer is possible) is the exception passed on.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def watched_send(event: Message) -> None:
            nonlocal response_started
            if event["type"] == "http.response.start":
                response_started = True
            await send(event)

        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            if response_started:
                raise
            logger.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            await error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)(scope, receive, send)
