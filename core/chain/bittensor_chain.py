"""`BittensorChain`: the `Chain` of a real subtensor network (finney, test, a local node or any ws(s):// endpoint).

Built on the async client of the bittensor 11 SDK (`bittensor.Client`); nothing here blocks the event loop. Weights go
through the SDK's own `SetWeights` intent, which conforms them to the subnet's hyperparameters (max-weight clip, u16
quantisation) and picks the plaintext or the timelocked commit-reveal extrinsic, so no extrinsic is written by hand.

Connection failures (the SDK's `RpcConnectionError`, OSError, TimeoutError) are retried with exponential backoff within
a time budget (`RetryPolicy`) and then raised as one-line `ChainError`s naming the endpoint. Chain-side rejections are
not retried: they would fail the same way again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import bittensor as bt
from bittensor import (
    BittensorError,
    ChainError as SdkChainError,
    ConnectionNotReady,
    ErrorCode,
    RpcConnectionError,
    RpcPolicyError,
)
from bittensor.intents.serving import ServeAxon
from bittensor.intents.weights import SetWeights
from bittensor.settings import resolve_endpoint
from websockets.exceptions import WebSocketException

from core.chain.base import ChainError, Neuron, RateLimited, Transfer, WeightsRecord, check_weights

logger = logging.getLogger(__name__)

# Weights and the max weight limit are u16 fractions on chain.
U16_MAX = 65535

T = TypeVar("T")

# The generated storage descriptors of the subtensor pallet: (pallet, item) pairs for the SDK's query methods.
storage = bt.storage.SubtensorModule

# Failures of the connection rather than of the call: worth another attempt on a fresh connection. A policy refusal
# (HTTP 403/429 from a public endpoint) is left out on purpose: retrying at once is what the endpoint asked us not to.
_CONNECTION_ERRORS = (RpcConnectionError, ConnectionNotReady, OSError, TimeoutError, WebSocketException)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one `BittensorChain` call tries to reach the chain.

    A call makes at most `attempts` tries, sleeping `base_delay_s * 2**n` (capped at `max_delay_s`) between them, and
    gives up when `call_timeout_s` has passed in total, so an unreachable endpoint fails a read in well under 30 s.
    `submit_timeout_s` is the budget of the part of `set_weights` / `serve` that submits and waits for inclusion.
    """

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 4.0
    call_timeout_s: float = 25.0
    submit_timeout_s: float = 90.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        for name in ("base_delay_s", "max_delay_s", "call_timeout_s", "submit_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after `failed_attempts` (1-based) failed tries."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempts - 1))


@dataclass(frozen=True)
class _WeightsState:
    block: int
    uid: int | None
    rate_limit: int
    last_update: int | None
    hotkeys: list[str | None]


def _wallet_hotkey(wallet: object) -> str:
    try:
        return str(wallet.hotkey.ss58_address)  # type: ignore[attr-defined]
    except Exception as error:
        raise ChainError(f"cannot read the wallet's hotkey: {error}") from error


def _axon_of(address: str) -> tuple[str, int]:
    """The (ip, port) the chain stores for an "http://ip:port" address; the chain keeps neither scheme nor host name."""
    parts = urlsplit(address)
    if parts.scheme != "http":
        raise ChainError(
            f"address {address!r} must be http://<ip>:<port>: the chain stores only an IP and a port, and neurons are "
            "reached over plain http"
        )
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ChainError(
            f"address {address!r} names the host {host!r}: the chain stores IP addresses only, so announce the "
            "public IP (http://<ip>:<port>)"
        ) from None
    if port is None or not 0 < port < 65536:
        raise ChainError(f"address {address!r} needs an explicit port between 1 and 65535")
    if ip.is_unspecified:
        raise ChainError(f"address {address!r} is unspecified ({ip}); announce the IP other neurons can reach")
    return str(ip), port


def _served_address(axon: str | None) -> str | None:
    """The "http://ip:port" of the SDK's "ip:port" axon string; None when nothing (or port 0) is served."""
    if not axon or axon.endswith(":0"):
        return None
    return f"http://{axon}"


def _included_block(result: Any) -> int | None:
    """The block number from an ExtrinsicResult's "block-index" extrinsic id."""
    extrinsic_id = getattr(result, "extrinsic_id", None)
    if not extrinsic_id:
        return None
    try:
        return int(str(extrinsic_id).split("-", 1)[0])
    except ValueError:
        return None


class BittensorChain:
    """The `Chain` of a subtensor network, read and written through the bittensor SDK.

    `network` is "finney", "test", "local" (a subtensor node at ws://127.0.0.1:9944) or a ws:// / wss:// URL.
    `wallet` is needed only by `serve` (its hotkey signs the axon announcement). `substrate` replaces the SDK's
    websocket backend with any object satisfying `bittensor.Substrate` (tests inject a fake).
    """

    def __init__(
        self,
        network: str,
        netuid: int,
        *,
        wallet: object | None = None,
        substrate: object | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        try:
            self.network, self.endpoint = resolve_endpoint(network)
        except ValueError as error:
            raise ChainError(str(error)) from None
        if not 0 <= int(netuid) <= 65535:
            raise ChainError(f"netuid must be between 0 and 65535, got {netuid}")
        self.netuid = int(netuid)
        self.wallet = wallet
        self.retry = retry if retry is not None else RetryPolicy()
        self._substrate = substrate
        self._client: bt.Client | None = None
        # A connection belongs to the event loop that opened it; processes that call asyncio.run more than once (the
        # CLIs announce in one loop, then serve in uvicorn's) get a fresh connection per loop.
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._connect_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"BittensorChain(network={self.network!r}, endpoint={self.endpoint!r}, netuid={self.netuid})"

    # -- the Chain protocol --

    async def current_block(self) -> int:
        return await self._call("read the current block", lambda client: client.block())

    async def metagraph(self) -> list[Neuron]:
        async def read(client: bt.Client) -> list[Neuron]:
            graph = await client.subnets.metagraph(self.netuid, commitments=False)
            if graph is None:
                raise ChainError(f"netuid {self.netuid} does not exist on {self.endpoint}")
            return [
                Neuron(
                    uid=neuron.uid,
                    hotkey=neuron.hotkey,
                    coldkey=neuron.coldkey,
                    # The SDK keeps total stake in the subnet's own units (stake weight); `.rao` reads it without the
                    # TAO/alpha unit check, and 1e9 rao make one unit.
                    stake=neuron.total_stake.rao / 1e9,
                    validator_permit=neuron.validator_permit,
                    address=_served_address(neuron.axon),
                )
                for neuron in sorted(graph.neurons, key=lambda neuron: neuron.uid)
            ]

        return await self._call("read the metagraph", read)

    async def serve(self, hotkey_ss58: str, address: str) -> None:
        ip, port = _axon_of(address)
        wallet = self.wallet
        if wallet is None:
            raise ChainError(
                f"serving {address} for hotkey {hotkey_ss58} needs that hotkey's wallet, and this chain connection "
                "was opened without one (check the wallet_name, wallet_hotkey and wallet_path settings)"
            )
        wallet_hotkey = _wallet_hotkey(wallet)
        if wallet_hotkey != hotkey_ss58:
            raise ChainError(f"cannot serve for hotkey {hotkey_ss58}: the wallet's hotkey is {wallet_hotkey}")

        async def served(client: bt.Client) -> dict | None:
            axon = await client.query(storage.Axons, [self.netuid, hotkey_ss58])
            return axon if isinstance(axon, dict) else None

        current = await self._call("read the served axon", served)
        if current and int(current.get("ip") or 0) == int(ipaddress.ip_address(ip)) and current.get("port") == port:
            # Re-serving the same address would only cost a fee and count against the serving rate limit.
            logger.debug("hotkey %s already serves %s on netuid %d", hotkey_ss58, address, self.netuid)
            return

        async def submit(client: bt.Client) -> Any:
            intent = ServeAxon(netuid=self.netuid, ip=ip, port=port)
            return await client.execute(intent, wallet, wait_for_inclusion=True, wait_for_finalization=False)

        result = await self._call("serve the axon", submit, timeout_s=self.retry.submit_timeout_s)
        if not result.success:
            raise ChainError(
                f"serving {address} for hotkey {hotkey_ss58} was rejected by {self.endpoint}: {result.message}"
            )
        logger.info("hotkey %s serves %s on netuid %d", hotkey_ss58, address, self.netuid)

    async def weights_rate_limit(self) -> int:
        return await self._call(
            "read the weights rate limit", lambda client: client.hyperparameters.weights_rate_limit(self.netuid)
        )

    async def max_weight_limit(self) -> float:
        """The largest share one uid may get: the subnet's MaxWeightsLimit hyperparameter over u16's maximum."""

        async def read(client: bt.Client) -> float:
            snapshot = await client.at()
            raw = await snapshot.query(storage.MaxWeightsLimit, [self.netuid])
            return float(raw) / U16_MAX if raw else 1.0

        return await self._call("read the max weight limit", read)

    async def last_weights_block(self, hotkey_ss58: str) -> int | None:
        async def read(client: bt.Client) -> int | None:
            snapshot = await client.at()
            uid = await snapshot.query(storage.Uids, [self.netuid, hotkey_ss58])
            if uid is None:
                return None
            return self._last_update_of(await snapshot.query(storage.LastUpdate, [self.netuid]), int(uid))

        return await self._call("read the last weights block", read)

    async def set_weights(
        self, *, wallet: object, uids: list[int], weights: list[float], version_key: int
    ) -> WeightsRecord:
        uids, weights, version_key = check_weights(uids, weights, version_key)
        hotkey = _wallet_hotkey(wallet)

        state = await self._call("read the weights state", lambda client: self._weights_state(client, hotkey, uids))
        if state.uid is None:
            raise ChainError(f"hotkey {hotkey} is not registered on netuid {self.netuid}")
        unregistered = [uid for uid, key in zip(uids, state.hotkeys, strict=True) if key is None]
        if unregistered:
            raise ChainError(f"uids {unregistered} are not registered on netuid {self.netuid}")
        self._raise_if_rate_limited(hotkey, state.block, state.last_update, state.rate_limit)

        async def submit(client: bt.Client) -> Any:
            intent = SetWeights(netuid=self.netuid, uids=uids, weights=weights, version_key=version_key)
            try:
                return await client.execute(intent, wallet, wait_for_inclusion=True, wait_for_finalization=False)
            except SdkChainError as error:
                if error.code is not ErrorCode.RATE_LIMITED:
                    raise
                # Another writer set weights between our check and the SDK's own preflight.
                again = await self._weights_state(client, hotkey, [])
                retry_at = (again.last_update or again.block) + again.rate_limit
                raise RateLimited(f"hotkey {hotkey}: {error.message}", retry_at_block=retry_at) from None

        result = await self._call("set weights", submit, timeout_s=self.retry.submit_timeout_s)
        if not result.success:
            if result.error is not None and result.error.code is ErrorCode.RATE_LIMITED:
                raise RateLimited(
                    f"hotkey {hotkey} is rate limited on netuid {self.netuid}: {result.message}",
                    retry_at_block=(state.last_update or state.block) + state.rate_limit,
                )
            raise ChainError(f"set_weights by hotkey {hotkey} was rejected by {self.endpoint}: {result.message}")
        block = _included_block(result)
        if block is None:
            block = await self.current_block()
        total = math.fsum(weights)
        record = WeightsRecord(
            block=block,
            validator_hotkey=hotkey,
            uids=uids,
            weights=[weight / total for weight in weights],
            version_key=version_key,
            hotkeys=[str(key) for key in state.hotkeys],
        )
        logger.info("hotkey %s set weights on %d uids of netuid %d at block %d", hotkey, len(uids), self.netuid, block)
        return record

    async def latest_weights(self, validator_hotkey: str) -> WeightsRecord | None:
        """The validator's weights row as the chain holds it (on commit-reveal subnets: as of the last reveal)."""

        async def read(client: bt.Client) -> WeightsRecord | None:
            snapshot = await client.at()
            uid = await snapshot.query(storage.Uids, [self.netuid, validator_hotkey])
            if uid is None:
                return None
            # Weights rows and LastUpdate are keyed by the mechanism storage index, which is the netuid for mechanism 0.
            row, last_update, required_key = await asyncio.gather(
                snapshot.query(storage.Weights, [self.netuid, int(uid)]),
                snapshot.query(storage.LastUpdate, [self.netuid]),
                snapshot.query(storage.WeightsVersionKey, [self.netuid]),
            )
            pairs = [(int(target), int(value)) for target, value in row or []]
            total = sum(value for _, value in pairs)
            if not pairs or total <= 0:
                return None
            targets = [target for target, _ in pairs]
            keys = await snapshot.query_batch(storage.Keys, [[self.netuid, target] for target in targets])
            return WeightsRecord(
                block=self._last_update_of(last_update, int(uid)) or snapshot.block,
                validator_hotkey=validator_hotkey,
                uids=targets,
                weights=[value / total for _, value in pairs],
                # TODO(#5): the chain keeps no per-validator version key; this is the subnet's required
                # WeightsVersionKey, which every accepted weight set met. Can go if the runtime starts storing it.
                version_key=int(required_key or 0),
                hotkeys=[str(key) if key is not None else "" for key in keys],
            )

        return await self._call("read the latest weights", read)

    async def transfers_to(self, addresses: list[str], since_block: int) -> list[Transfer]:
        # TODO(#4)/(#5): read Balances.Transfer events block by block (or from an indexer) once a subtensor node is
        # available to test against; until then deposits are credited only on the local network.
        raise ChainError(
            f"reading TAO transfers is not implemented for network {self.network!r} yet; deposits cannot be credited"
        )

    # -- internals --

    async def _weights_state(self, client: bt.Client, hotkey: str, uids: list[int]) -> _WeightsState:
        snapshot = await client.at()
        uid, rate_limit, last_update = await asyncio.gather(
            snapshot.query(storage.Uids, [self.netuid, hotkey]),
            snapshot.query(storage.WeightsSetRateLimit, [self.netuid]),
            snapshot.query(storage.LastUpdate, [self.netuid]),
        )
        hotkeys = await snapshot.query_batch(storage.Keys, [[self.netuid, target] for target in uids]) if uids else []
        return _WeightsState(
            block=snapshot.block,
            uid=int(uid) if uid is not None else None,
            rate_limit=int(rate_limit or 0),
            last_update=self._last_update_of(last_update, int(uid)) if uid is not None else None,
            hotkeys=[str(key) if key is not None else None for key in hotkeys],
        )

    @staticmethod
    def _last_update_of(last_update: Any, uid: int) -> int | None:
        # The chain writes 0 for a uid that never set weights; the SDK's own preflight reads it the same way.
        if isinstance(last_update, list | tuple) and uid < len(last_update) and int(last_update[uid]) > 0:
            return int(last_update[uid])
        return None

    def _raise_if_rate_limited(self, hotkey: str, block: int, last: int | None, limit: int) -> None:
        # Same rule as the chain: allowed once `block - last >= limit`.
        if last is not None and limit and block - last < limit:
            raise RateLimited(
                f"hotkey {hotkey} set weights at block {last}; the rate limit of netuid {self.netuid} is {limit} "
                f"blocks (now {block})",
                retry_at_block=last + limit,
            )

    async def _connected_client(self) -> bt.Client:
        loop = asyncio.get_running_loop()
        if self._client_loop is not loop:
            # A connection opened on another (usually finished) loop can neither be used nor closed from this one.
            self._client, self._client_loop, self._connect_lock = None, loop, asyncio.Lock()
        assert self._connect_lock is not None
        async with self._connect_lock:
            if self._client is None:
                client = bt.Client(self.network, substrate=self._substrate)  # type: ignore[arg-type]
                await client.connect()
                self._client = client
                logger.debug("connected to %s (%s)", self.endpoint, self.network)
            return self._client

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=5.0)

    async def _call(
        self, what: str, operation: Callable[[bt.Client], Awaitable[T]], *, timeout_s: float | None = None
    ) -> T:
        """Run `operation` on a connected client, retrying connection failures within the policy's time budget."""
        policy = self.retry
        budget = policy.call_timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        last_error: BaseException | None = None
        attempts = 0
        while attempts < policy.attempts:
            remaining = budget - (time.monotonic() - started)
            if remaining <= 0:
                break
            attempts += 1
            try:
                async with asyncio.timeout(remaining):
                    return await operation(await self._connected_client())
            except RpcPolicyError as error:
                raise ChainError(f"{self.endpoint} refused to {what}: {error}") from None
            except _CONNECTION_ERRORS as error:
                last_error = error
                await self._drop_client()
                if attempts >= policy.attempts:
                    break
                delay = min(policy.delay(attempts), max(0.0, budget - (time.monotonic() - started)))
                logger.warning(
                    "cannot %s on %s (attempt %d of %d): %s; retrying in %.1fs",
                    what,
                    self.endpoint,
                    attempts,
                    policy.attempts,
                    _one_line(error),
                    delay,
                )
                await asyncio.sleep(delay)
            except SdkChainError as error:
                raise ChainError(f"{self.endpoint} rejected the request to {what}: {error.message}") from None
            except BittensorError as error:
                raise ChainError(f"cannot {what} on {self.endpoint}: {_one_line(error)}") from None
        elapsed = time.monotonic() - started
        reason = _one_line(last_error) if last_error is not None else "time budget spent"
        raise ChainError(
            f"cannot reach the {self.network} chain at {self.endpoint} to {what}: {attempts} attempt(s) in "
            f"{elapsed:.1f}s failed; last error: {reason}"
        )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
