"""`god trainer ...`: run the trainer host.

Settings come from `TRAINER_*` environment variables (see trainer/settings.py); the options of `run` override them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

import typer
from fastapi import FastAPI

from core.logging import setup_logging
from core.serving import ServingError, join_network, serve
from core.settings import NETWORK_HELP, load_settings
from trainer.settings import TrainerSettings

logger = logging.getLogger(__name__)

app = typer.Typer(help="The trainer host: runs miners' training repos for validators.", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


@app.callback()
def main() -> None:
    """Keeps `run` a named subcommand even while it is the only one."""


@app.command()
def run(
    network: str | None = typer.Option(None, help=f"{NETWORK_HELP} (TRAINER_NETWORK)"),
    # Read as text so that a bad value is reported like a bad TRAINER_NETUID, in one line naming the option.
    netuid: str | None = typer.Option(None, metavar="<int>", help="The subnet (TRAINER_NETUID)"),
    wallet_name: str | None = typer.Option(None, help="Wallet (coldkey) name (TRAINER_WALLET_NAME)"),
    wallet_hotkey: str | None = typer.Option(None, help="Hotkey name in the wallet (TRAINER_WALLET_HOTKEY)"),
    wallet_path: Path | None = typer.Option(None, help="Folder of the wallets (TRAINER_WALLET_PATH)"),
    host: str | None = typer.Option(None, help="Interface to listen on (TRAINER_HOST)"),
    port: int | None = typer.Option(None, help="Port to listen on (TRAINER_PORT)"),
) -> None:
    """Serve the trainer host API and announce its address on chain.

    Stops at start with one line saying what to do unless the hotkey is registered on the netuid.
    """
    from trainer.host.server import create_app

    settings = load_settings(
        TrainerSettings,
        network=network,
        netuid=netuid,
        wallet_name=wallet_name,
        wallet_hotkey=wallet_hotkey,
        wallet_path=wallet_path,
        host=host,
        port=port,
    )
    setup_logging(settings.log_level, role="trainer")

    def prepare() -> FastAPI:
        chain, hotkey_ss58 = join_network(settings, address=settings.address)
        logger.info("trainer host %s serving %s on %s", hotkey_ss58, settings.address, settings.subnet_label)
        return create_app(settings, chain=chain, hotkey_ss58=hotkey_ss58)

    try:
        serve(host=settings.host, port=settings.port, env_prefix="TRAINER_", prepare=prepare, access_log=False)
    except ServingError as error:
        _fail(str(error))
