"""The `Chain` interface every chain backend satisfies.

Methods are async because the production backend talks to a subtensor node; the local backend is fast file I/O
run in a worker thread. Stake is in TAO, weights are floats that the backend normalises and quantises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class ChainError(Exception):
    """A chain call failed (connection, bad state, unregistered key)."""


class RateLimited(ChainError):
    """`set_weights` was called inside the subnet's weights rate-limit window; retry at `retry_at_block`."""

    def __init__(self, message: str, *, retry_at_block: int) -> None:
        super().__init__(message)
        self.retry_at_block = retry_at_block


@dataclass(frozen=True)
class Neuron:
    uid: int
    hotkey: str
    coldkey: str
    stake: float
    validator_permit: bool
    address: str | None = None  # "http://host:port" served by the neuron, if any


@dataclass(frozen=True)
class WeightsRecord:
    block: int
    validator_hotkey: str
    uids: list[int]
    weights: list[float]
    version_key: int
    hotkeys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Transfer:
    """A TAO transfer between two accounts. `id` is unique on its chain (on subtensor: block and extrinsic index)."""

    id: str
    block: int
    from_ss58: str
    to_ss58: str
    amount_tao: float


@runtime_checkable
class Chain(Protocol):
    netuid: int

    async def current_block(self) -> int: ...

    async def metagraph(self) -> list[Neuron]:
        """Every registered neuron of the subnet, ordered by uid."""
        ...

    async def serve(self, hotkey_ss58: str, address: str) -> None:
        """Announce the HTTP address that `hotkey_ss58` answers on (the hotkey must be registered)."""
        ...

    async def weights_rate_limit(self) -> int:
        """Blocks that must pass between two weight sets of one validator."""
        ...

    async def last_weights_block(self, hotkey_ss58: str) -> int | None: ...

    async def set_weights(
        self, *, wallet: object, uids: list[int], weights: list[float], version_key: int
    ) -> WeightsRecord:
        """Set the validator's weights. Raises `RateLimited` inside the rate-limit window, `ChainError` otherwise."""
        ...

    async def latest_weights(self, validator_hotkey: str) -> WeightsRecord | None: ...

    async def transfers_to(self, addresses: list[str], since_block: int) -> list[Transfer]:
        """TAO transfers to any of `addresses` in blocks >= `since_block`, oldest first (deposits to the validator)."""
        ...


def check_weights(uids: list[int], weights: list[float], version_key: int) -> tuple[list[int], list[float], int]:
    """The weights as plain ints/floats, or ChainError naming the bad entry. Every backend runs it before sending."""
    try:
        uids = [int(uid) for uid in uids]
        weights = [float(weight) for weight in weights]
        version_key = int(version_key)
    except (TypeError, ValueError) as error:
        raise ChainError(
            f"set_weights needs integer uids, numeric weights and an integer version_key: {error}"
        ) from None
    if not uids:
        raise ChainError("set_weights needs at least one uid")
    if len(uids) != len(weights):
        raise ChainError(f"set_weights got {len(uids)} uids but {len(weights)} weights")
    if len(set(uids)) != len(uids):
        raise ChainError(f"set_weights got duplicate uids: {uids}")
    for uid, weight in zip(uids, weights, strict=True):
        if not 0 <= uid <= 65535:
            raise ChainError(f"uid {uid} is out of range (0..65535)")
        if not math.isfinite(weight) or weight < 0:
            raise ChainError(f"weight for uid {uid} must be finite and non-negative, got {weight}")
    if math.fsum(weights) <= 0:
        raise ChainError("set_weights got only zero weights; at least one must be positive")
    if not 0 <= version_key < 2**64:
        raise ChainError(f"version_key must fit in an unsigned 64-bit integer, got {version_key}")
    return uids, weights, version_key
