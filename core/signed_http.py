"""btauth/1-signed HTTP between nodes: a signing client and a FastAPI dependency that admits registered validators.

The client signs the method, the request target (path plus query string, as sent), the sha256 of the exact body
bytes, a nanosecond nonce and the receiver's hotkey with the wallet's hotkey (`bittensor.http_auth`). The server
recomputes all of it from the received request, so a changed body, path, receiver or a replayed nonce is refused.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import bittensor as bt
import httpx
from fastapi import HTTPException, Request
from pydantic import BaseModel

from core.chain.base import Chain, ChainError, Neuron

logger = logging.getLogger(__name__)


def request_target(path: str, query: str | bytes) -> str:
    """What both sides sign: the decoded path plus `?query` exactly as sent (when there is one)."""
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    return f"{path}?{query}" if query else path


def encode_body(json: Any) -> bytes:
    if json is None:
        return b""
    if isinstance(json, BaseModel):
        return json.model_dump_json().encode()
    return jsonlib.dumps(json, separators=(",", ":"), default=str).encode()


class SignedClient:
    """An httpx.AsyncClient whose every request carries the wallet hotkey's btauth/1 signature for a receiver."""

    def __init__(self, wallet: Any, *, timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None):
        self.wallet = wallet
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    @property
    def hotkey(self) -> str:
        return self.wallet.hotkey.ss58_address

    async def request(self, method: str, url: str, *, receiver_hotkey: str, json: Any = None) -> httpx.Response:
        """Send `json` (a JSON-able value or a pydantic model) signed for `receiver_hotkey`."""
        body = encode_body(json)
        parsed = httpx.URL(url)
        headers = bt.http_auth.sign(
            self.wallet,
            method=method.upper(),
            path=request_target(parsed.path, parsed.query),
            body=body,
            receiver_ss58=receiver_hotkey,
        )
        if json is not None:
            headers["Content-Type"] = "application/json"
        logger.debug("%s %s -> %s", method.upper(), parsed.path, receiver_hotkey)
        return await self._client.request(method.upper(), parsed, content=body, headers=headers)

    async def get(self, url: str, *, receiver_hotkey: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, receiver_hotkey=receiver_hotkey, **kwargs)

    async def post(self, url: str, *, receiver_hotkey: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, receiver_hotkey=receiver_hotkey, json=json, **kwargs)

    async def delete(self, url: str, *, receiver_hotkey: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, receiver_hotkey=receiver_hotkey, **kwargs)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> SignedClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def verify_request(request: Request, *, self_hotkey: str, nonce_store: bt.http_auth.NonceStore) -> str:
    """Check the request's btauth/1 signature; returns the caller's hotkey or raises HTTPException(401)."""
    body = await request.body()
    try:
        caller = bt.http_auth.verify(
            request.headers,
            body,
            method=request.method,
            path=request_target(request.url.path, request.scope.get("query_string", b"")),
            self_hotkey_ss58=self_hotkey,
            nonce_store=nonce_store,
        )
    except bt.http_auth.AuthError as error:
        # AuthError messages never echo the signature or payload, so they are safe to return.
        logger.info("refused %s %s: %s", request.method, request.url.path, error)
        raise HTTPException(status_code=401, detail=f"signature check failed: {error}") from error
    return caller.hotkey_ss58


def require_registered_validator(
    chain: Chain, self_hotkey: str, *, cache_seconds: float = 12.0
) -> Callable[[Request], Awaitable[str]]:
    """A FastAPI dependency admitting only signed requests from validators with a permit on `chain.netuid`.

    Use as `caller: str = Depends(require_registered_validator(chain, my_hotkey))`; it returns the caller's hotkey.
    401 for a missing/bad/replayed signature, 403 for a hotkey that is not a permitted validator, 503 when the
    chain cannot be read. The metagraph is cached for `cache_seconds` (about one block).
    """
    nonce_store = bt.http_auth.InMemoryNonceStore()
    cache: dict[str, Any] = {"at": float("-inf"), "neurons": {}}
    lock = asyncio.Lock()

    async def neurons_by_hotkey() -> dict[str, Neuron]:
        async with lock:
            if time.monotonic() - cache["at"] >= cache_seconds:
                try:
                    neurons = await chain.metagraph()
                except ChainError as error:
                    logger.warning("cannot read the metagraph to check a caller: %s", error)
                    raise HTTPException(status_code=503, detail="the chain cannot be read right now") from error
                cache["neurons"] = {neuron.hotkey: neuron for neuron in neurons}
                cache["at"] = time.monotonic()
            return cache["neurons"]

    async def registered_validator(request: Request) -> str:
        hotkey = await verify_request(request, self_hotkey=self_hotkey, nonce_store=nonce_store)
        neuron = (await neurons_by_hotkey()).get(hotkey)
        if neuron is None or not neuron.validator_permit:
            logger.info("refused %s %s from %s: not a registered validator", request.method, request.url.path, hotkey)
            raise HTTPException(
                status_code=403, detail=f"hotkey {hotkey} is not a registered validator on netuid {chain.netuid}"
            )
        return hotkey

    return registered_validator
