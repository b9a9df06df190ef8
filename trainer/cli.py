"""`god trainer ...`: run the trainer host."""

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
from trainer.settings import TrainerSettings

logger = logging.getLogger(__name__)

app = typer.Typer(help="The trainer host: runs miners' training repos for validators.", no_args_is_help=True)


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
    host: str | None = typer.Option(None, help="Interface to listen on (env TRAINER_HOST)"),
    port: int | None = typer.Option(None, help="Port to listen on (env TRAINER_PORT)"),
) -> None:
    """Serve the trainer host API (settings from TRAINER_* environment variables)."""
    from trainer.host.server import create_app

    settings = load_settings(TrainerSettings, host=host, port=port)
    setup_logging(settings.log_level, role="trainer")

    def prepare() -> FastAPI:
        # Runs once the port is bound: announcing an address this process cannot serve would hide the host that
        # does serve it.
        try:
            wallet = load_wallet(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
            hotkey_ss58 = wallet.hotkey.ss58_address
            chain = open_chain(settings)
            asyncio.run(_announce(chain, hotkey_ss58, settings.address))
        except (WalletError, ChainError) as error:
            _fail(str(error))
        logger.info("trainer host %s serving %s on netuid %d", hotkey_ss58, settings.address, settings.netuid)
        return create_app(settings, chain=chain, hotkey_ss58=hotkey_ss58)

    try:
        serve(host=settings.host, port=settings.port, env_prefix="TRAINER_", prepare=prepare, access_log=False)
    except ServingError as error:
        _fail(str(error))
