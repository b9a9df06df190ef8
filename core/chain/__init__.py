"""Chain access behind one interface: the local on-disk chain now, the bittensor SDK later (same `Chain`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.chain.base import Chain, ChainError, Neuron, RateLimited, WeightsRecord
from core.chain.local import LocalChain

if TYPE_CHECKING:
    from core.settings import NodeSettings


def open_chain(settings: NodeSettings) -> Chain:
    """The chain the settings name: the local network's chain file for network "local"."""
    if settings.network == "local":
        path = settings.chain_file
        if not path.exists():
            raise ChainError(
                f"local chain file {path} does not exist: run `god localnet up` first, "
                "or point the chain_path setting at the local network's chain.json"
            )
        return LocalChain(path, settings.netuid)
    # TODO(#5): a bittensor SDK backend for finney/test/ws:// endpoints; until then only the local chain works.
    raise ChainError(
        f"network {settings.network!r} is not supported yet (TODO(#5): real chain backend); use network=local"
    )


__all__ = ["Chain", "ChainError", "LocalChain", "Neuron", "RateLimited", "WeightsRecord", "open_chain"]
