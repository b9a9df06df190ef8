"""`god miner ...`: run the miner server."""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

import typer
from fastapi import FastAPI

from core.chain import Chain, ChainError, open_chain
from core.logging import setup_logging
from core.serving import ServingError, serve
from core.settings import load_settings
from core.wallets import WalletError, load_wallet
from miner.settings import MinerSettings

logger = logging.getLogger(__name__)

app = typer.Typer(help="The miner: announces its training repos to validators.", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


async def _announce(chain: Chain, hotkey_ss58: str, address: str) -> None:
    """Check that the hotkey is registered on the subnet, then serve the address on chain."""
    neurons = await chain.metagraph()
    if hotkey_ss58 not in {neuron.hotkey for neuron in neurons}:
        raise ChainError(
            f"hotkey {hotkey_ss58} is not registered on netuid {chain.netuid}: register it first "
            "(`god localnet up` registers the local network's nodes)"
        )
    await chain.serve(hotkey_ss58, address)


@app.callback()
def main() -> None:
    """Keeps `run` a named subcommand even while it is the only one."""


@app.command()
def run(
    host: str | None = typer.Option(None, help="Interface to listen on (env MINER_HOST)"),
    port: int | None = typer.Option(None, help="Port to listen on (env MINER_PORT)"),
) -> None:
    """Serve the miner API (settings from MINER_* environment variables)."""
    from miner.server import create_app

    settings = load_settings(MinerSettings, host=host, port=port)
    setup_logging(settings.log_level, role="miner")

    def prepare() -> FastAPI:
        # Runs once the port is bound: announcing an address this process cannot serve would hide the miner that
        # does serve it.
        try:
            wallet = load_wallet(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
            hotkey_ss58 = wallet.hotkey.ss58_address
            chain = open_chain(settings)
            asyncio.run(_announce(chain, hotkey_ss58, settings.address))
        except (WalletError, ChainError) as error:
            _fail(str(error))
        if not settings.training_repos:
            logger.warning(
                "no training repos configured: set MINER_TRAINING_REPOS, or validators get 404 for every task"
            )
        logger.info("miner %s serving %s on netuid %d", hotkey_ss58, settings.address, settings.netuid)
        return create_app(settings, chain=chain, hotkey_ss58=hotkey_ss58)

    try:
        serve(host=settings.host, port=settings.port, env_prefix="MINER_", prepare=prepare, access_log=False)
    except ServingError as error:
        _fail(str(error))
