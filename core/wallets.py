"""Bittensor wallets (real sr25519 keys) for the nodes.

`create_wallet` makes unencrypted keys for the local network and test setups; production operators create and fund
their wallets with btcli and only `load_wallet` them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import bittensor as bt

logger = logging.getLogger(__name__)


class WalletError(Exception):
    """A wallet's key files are missing or unreadable; the message names the path."""


def _wallet(name: str, hotkey: str, path: Path) -> bt.Wallet:
    for label, value in (("wallet name", name), ("hotkey name", hotkey)):
        if not value or "/" in value or value in (".", ".."):
            raise WalletError(f"{label} {value!r} must be a plain name (no '/')")
    return bt.Wallet(name, hotkey, path=str(Path(path).expanduser()))


def create_wallet(name: str, hotkey: str, path: Path) -> bt.Wallet:
    """Create the coldkey and hotkey without a password unless they exist; returns the wallet with keys loaded."""
    wallet = _wallet(name, hotkey, path)
    if not wallet.coldkeypub_file.exists_on_device():
        wallet.create_new_coldkey(use_password=False, suppress=True)
        logger.info("created coldkey %s of wallet %s", wallet.coldkeypub.ss58_address, name)
    if not wallet.hotkey_file.exists_on_device():
        wallet.create_new_hotkey(use_password=False, suppress=True)
        logger.info("created hotkey %s (%s/%s)", wallet.hotkey.ss58_address, name, hotkey)
    return load_wallet(name, hotkey, path)


def load_wallet(name: str, hotkey: str, path: Path) -> bt.Wallet:
    """The wallet with its hotkey (and coldkey public key) loaded; WalletError naming the file when one is missing."""
    wallet = _wallet(name, hotkey, path)
    for keyfile, what in ((wallet.hotkey_file, "hotkey"), (wallet.coldkeypub_file, "coldkey public key")):
        if not keyfile.exists_on_device():
            raise WalletError(
                f"{what} file {keyfile.path} does not exist: create the wallet (btcli wallet create, or "
                f"`god localnet up` for the local network) or fix the wallet name/hotkey/path settings"
            )
    try:
        wallet.hotkey  # noqa: B018 - loads and decodes the key file now, so a broken file fails here
        wallet.coldkeypub  # noqa: B018
    except Exception as error:
        raise WalletError(f"cannot read the keys of wallet {name}/{hotkey} under {path}: {error}") from error
    return wallet
