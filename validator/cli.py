"""`god validator ...`: run the validator, mint API keys, migrate its database.

Settings come from `VALIDATOR_*` environment variables (and `DATABASE_URL`); see validator/settings.py. The chain and
wallet options of `run` override the environment.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import NoReturn

import typer
from fastapi import FastAPI

from core.chain import ChainError, open_chain
from core.db import DatabaseError, apply_migrations, create_pool, database_url_from, rollback_migrations
from core.logging import setup_logging
from core.serving import ServingError, serve
from core.settings import NETWORK_HELP, StartCheckError, check_registration, load_settings
from core.wallets import WalletError, load_wallet
from validator.db import MIGRATIONS_DIR
from validator.db.accounts import mint_api_key
from validator.settings import ValidatorSettings

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="The validator: public API, task workers and weight setter.", no_args_is_help=True, add_completion=False
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _database_url(settings: ValidatorSettings) -> str:
    try:
        return database_url_from(settings.database_url_value, data_dir=settings.data_dir)
    except DatabaseError as error:
        _fail(str(error))


async def _migrate(database_url: str, *, down_steps: int = 0) -> list[str]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        if down_steps:
            return await rollback_migrations(pool, MIGRATIONS_DIR, steps=down_steps)
        return await apply_migrations(pool, MIGRATIONS_DIR)
    finally:
        await pool.close()


@app.command()
def run(
    network: str | None = typer.Option(None, help=f"{NETWORK_HELP} (VALIDATOR_NETWORK)"),
    # Read as text so that a bad value is reported like a bad VALIDATOR_NETUID, in one line naming the option.
    netuid: str | None = typer.Option(None, metavar="<int>", help="The subnet (VALIDATOR_NETUID)"),
    wallet_name: str | None = typer.Option(None, help="Wallet (coldkey) name (VALIDATOR_WALLET_NAME)"),
    wallet_hotkey: str | None = typer.Option(None, help="Hotkey name in the wallet (VALIDATOR_WALLET_HOTKEY)"),
    wallet_path: Path | None = typer.Option(None, help="Folder of the wallets (VALIDATOR_WALLET_PATH)"),
    host: str | None = typer.Option(None, help="Bind address (VALIDATOR_HOST)"),
    port: int | None = typer.Option(None, help="Port (VALIDATOR_PORT)"),
) -> None:
    """Serve the API and run the task workers and the weight setter until interrupted.

    Stops at start with one line saying what to do unless the hotkey is registered with a validator permit.
    """
    settings = load_settings(
        ValidatorSettings,
        network=network,
        netuid=netuid,
        wallet_name=wallet_name,
        wallet_hotkey=wallet_hotkey,
        wallet_path=wallet_path,
        host=host,
        port=port,
    )
    setup_logging(settings.log_level, role="validator")

    def prepare() -> FastAPI:
        # Runs once the port is bound: the workers start with the app and claim tasks from a database other
        # validators may share, so a validator that cannot serve must stop before that.
        try:
            wallet = load_wallet(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
            chain = open_chain(settings)
            uid = asyncio.run(check_registration(chain, settings, wallet.hotkey.ss58_address, need_permit=True))
            database_url = _database_url(settings)
            applied = asyncio.run(_migrate(database_url))
        except (DatabaseError, WalletError, ChainError, StartCheckError) as error:
            _fail(str(error))
        if applied:
            logger.info("applied migrations: %s", ", ".join(applied))
        logger.info("validator hotkey %s is uid %d on %s", wallet.hotkey.ss58_address, uid, settings.subnet_label)

        from validator.service import create_app

        return create_app(settings, database_url=database_url, wallet=wallet, chain=chain)

    try:
        serve(host=settings.host, port=settings.port, env_prefix="VALIDATOR_", prepare=prepare)
    except ServingError as error:
        _fail(str(error))


@app.command("mint-api-key")
def mint_api_key_command(
    account: str = typer.Option(..., "--account", help="Account name; created when it does not exist"),
) -> None:
    """Create an API key for an account and print it (only the key, once: it is not stored)."""
    settings = load_settings(ValidatorSettings)
    setup_logging("WARNING", role="validator")
    if not account.strip():
        _fail("--account must not be blank")
    database_url = _database_url(settings)

    async def mint() -> str:
        await _migrate(database_url)
        pool = await create_pool(database_url, min_size=1, max_size=2)
        try:
            return await mint_api_key(pool, account)
        finally:
            await pool.close()

    try:
        api_key = asyncio.run(mint())
    except DatabaseError as error:
        _fail(str(error))
    typer.echo(api_key)


@app.command()
def migrate(
    down: bool = typer.Option(False, "--down", help="Roll back instead of applying"),
    steps: int = typer.Option(1, min=1, help="With --down: how many migrations to roll back"),
) -> None:
    """Apply the pending database migrations (or roll back the newest with --down)."""
    settings = load_settings(ValidatorSettings)
    setup_logging(settings.log_level, role="validator")
    database_url = _database_url(settings)
    try:
        labels = asyncio.run(_migrate(database_url, down_steps=steps if down else 0))
    except DatabaseError as error:
        _fail(str(error))
    verb = "rolled back" if down else "applied"
    typer.echo(f"{verb}: {', '.join(labels)}" if labels else f"nothing to {'roll back' if down else 'apply'}")
