"""`god miner ...`: run the miner server.

Settings come from `MINER_*` environment variables (see miner/settings.py); the options of `run` override them.
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
from miner.settings import TRAINING_REPO_OPTION, MinerSettings, parse_training_repos

logger = logging.getLogger(__name__)

app = typer.Typer(help="The miner: announces its training repos to validators.", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


@app.callback()
def main() -> None:
    """Keeps `run` a named subcommand even while it is the only one."""


@app.command()
def run(
    network: str | None = typer.Option(None, help=f"{NETWORK_HELP} (MINER_NETWORK)"),
    # Read as text so that a bad value is reported like a bad MINER_NETUID, in one line naming the option.
    netuid: str | None = typer.Option(None, metavar="<int>", help="The subnet (MINER_NETUID)"),
    wallet_name: str | None = typer.Option(None, help="Wallet (coldkey) name (MINER_WALLET_NAME)"),
    wallet_hotkey: str | None = typer.Option(None, help="Hotkey name in the wallet (MINER_WALLET_HOTKEY)"),
    wallet_path: Path | None = typer.Option(None, help="Folder of the wallets (MINER_WALLET_PATH)"),
    training_repo: list[str] | None = typer.Option(
        None,
        TRAINING_REPO_OPTION,
        metavar="TASK_TYPE=URL@COMMIT",
        help="The repo and commit announced for a task type or tournament kind, e.g. "
        "InstructTextTask=https://github.com/me/trainer@3f2a9c1; repeat it for each one. It wins over "
        "MINER_TRAINING_REPOS for its task type; the variable's other entries stay.",
    ),
    host: str | None = typer.Option(None, help="Interface to listen on (MINER_HOST)"),
    port: int | None = typer.Option(None, help="Port to listen on (MINER_PORT)"),
) -> None:
    """Serve the miner API and announce its address on chain.

    Stops at start with one line saying what to do unless the hotkey is registered on the netuid.
    """
    from miner.server import create_app

    training_repos = None
    if training_repo:
        try:
            training_repos = parse_training_repos(training_repo)
        except ValueError as error:
            # Reported like every other bad setting (core.settings.load_settings), with its status.
            typer.echo(f"invalid setting {TRAINING_REPO_OPTION}: {error}", err=True)
            raise typer.Exit(code=2) from None
    settings = load_settings(
        MinerSettings,
        network=network,
        netuid=netuid,
        wallet_name=wallet_name,
        wallet_hotkey=wallet_hotkey,
        wallet_path=wallet_path,
        training_repos=training_repos,
        host=host,
        port=port,
    )
    setup_logging(settings.log_level, role="miner")

    def prepare() -> FastAPI:
        chain, hotkey_ss58 = join_network(settings, address=settings.address)
        if not settings.training_repos:
            logger.warning(
                "no training repos configured: set MINER_TRAINING_REPOS or --training-repo, or validators get 404 "
                "for every task"
            )
        for task_type, repo in sorted(settings.training_repos.items()):
            logger.info("training repo for %s: %s at %s", task_type, repo.github_repo, repo.commit_hash)
        logger.info("miner %s serving %s on %s", hotkey_ss58, settings.address, settings.subnet_label)
        return create_app(settings, chain=chain, hotkey_ss58=hotkey_ss58)

    try:
        serve(host=settings.host, port=settings.port, env_prefix="MINER_", prepare=prepare, access_log=False)
    except ServingError as error:
        _fail(str(error))
