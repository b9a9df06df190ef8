"""Rate limits of the public API: a token bucket in memory per credential, and per client address without one.

A request with an `Authorization` header spends a token of that credential's bucket (keyed by the token's digest, so
no secret is kept); one without spends a token of its client address's bucket. A credential not seen before also
spends a token of its address's bucket, so sending a fresh made-up token with every request does not escape the
limit. The buckets live in one process's memory (several API processes each allow the rate), and the least recently
used are forgotten beyond `max_buckets`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from validator.api.errors import error_response

logger = logging.getLogger(__name__)

DEFAULT_MAX_BUCKETS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """`per_minute` requests a minute per key, with bursts of up to `burst`."""

    def __init__(
        self,
        *,
        per_minute: int,
        burst: int,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst <= 0:
            raise ValueError("per_minute and burst must be positive")
        self.per_minute = per_minute
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._buckets

    def acquire(self, key: str) -> float | None:
        """Spend a token of `key`'s bucket: None when there was one, else the seconds until there is one."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), updated=now)
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate


LimiterSource = Callable[[Scope], TokenBucketLimiter | None]


def client_address(scope: Scope) -> str:
    """The address of the direct peer (behind a proxy, run uvicorn with --proxy-headers so this is the client)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def credential_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value.strip():
            return hashlib.sha256(value.strip()).hexdigest()[:32]
    return None


class RateLimitMiddleware:
    """Answers 429 (the standard error body, with `Retry-After` in whole seconds) to requests over the limit.

    Args:
        limiter: the limiter, or a function of the request scope returning it (None: no limit for this request).
    """

    def __init__(self, app: ASGIApp, *, limiter: TokenBucketLimiter | LimiterSource | None) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limiter = self.limiter(scope) if callable(self.limiter) else self.limiter
        if limiter is not None:
            wait = self._spend(limiter, scope)
            if wait is not None:
                retry_after = max(1, math.ceil(wait))
                logger.debug("rate limited %s %s for %ds", scope.get("method"), scope.get("path"), retry_after)
                message = (
                    f"rate limit of {limiter.per_minute} requests a minute (bursts of {limiter.burst}) exceeded; "
                    f"retry in {retry_after} s"
                )
                response = error_response(429, "rate_limited", message, headers={"Retry-After": str(retry_after)})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _spend(limiter: TokenBucketLimiter, scope: Scope) -> float | None:
        address_key = "address:" + client_address(scope)
        credential = credential_of(scope)
        if credential is None:
            return limiter.acquire(address_key)
        credential_key = "credential:" + credential
        if credential_key not in limiter:
            wait = limiter.acquire(address_key)
            if wait is not None:
                return wait
        return limiter.acquire(credential_key)
