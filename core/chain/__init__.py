"""Chain access behind one interface: the local on-disk chain, or a subtensor network through the bittensor SDK."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core.chain.base import Chain, ChainError, Neuron, RateLimited, Transfer, WeightsRecord
from core.chain.bittensor_chain import BittensorChain, RetryPolicy
from core.chain.local import LocalChain
from core.wallets import WalletError, load_wallet

if TYPE_CHECKING:
    from core.settings import NodeSettings

logger = logging.getLogger(__name__)


def open_chain(settings: NodeSettings) -> Chain:
    """The chain the settings name.

    Network "local" is the local network's on-disk chain file; "finney", "test" and ws(s):// endpoints are subtensor
    networks (a subtensor node on this machine is ws://127.0.0.1:9944). The settings' wallet is loaded when its key
    files exist, because announcing an address (`serve`) is signed by that hotkey; reading needs no wallet.
    """
    if settings.network == "local":
        path = settings.chain_file
        if not path.exists():
            raise ChainError(
                f"local chain file {path} does not exist: run `god localnet up` first, "
                "or point the chain_path setting at the local network's chain.json"
            )
        return LocalChain(path, settings.netuid)
    try:
        wallet = load_wallet(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
    except WalletError as error:
        # Read-only callers need no keys; `serve` says what is missing if it is ever called.
        logger.debug("no wallet for the chain connection: %s", error)
        wallet = None
    return BittensorChain(settings.network, settings.netuid, wallet=wallet)


__all__ = [
    "BittensorChain",
    "Chain",
    "ChainError",
    "LocalChain",
    "Neuron",
    "RateLimited",
    "RetryPolicy",
    "Transfer",
    "WeightsRecord",
    "open_chain",
]
