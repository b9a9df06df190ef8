"""`god validator` commands, run as real processes against the test database and local chain."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from core.chain import LocalChain
from core.wallets import create_wallet
from tests.validator.conftest import NETUID, Keys, get_task, insert_task
from validator.db import MIGRATIONS_DIR, accounts as accounts_db

CLI = [sys.executable, "-c", "from validator.cli import app; app()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cli_env(tmp_path: Path, validator_db: str, keys: Keys, chain: LocalChain) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("VALIDATOR_", "GOD_"))}
    env.update(
        DATABASE_URL=validator_db,
        VALIDATOR_DATA_DIR=str(tmp_path / "validator"),
        VALIDATOR_NETWORK="local",
        VALIDATOR_NETUID=str(NETUID),
        VALIDATOR_CHAIN_PATH=str(chain.path),
        VALIDATOR_WALLET_PATH=str(keys.validator.path),
        VALIDATOR_WALLET_NAME="validator",
        VALIDATOR_WALLET_HOTKEY="default",
        VALIDATOR_LOG_LEVEL="INFO",
    )
    return env


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_mint_api_key_prints_only_a_working_key(cli_env: dict[str, str], pool: asyncpg.Pool) -> None:
    code, stdout, stderr = await run_cli(cli_env, "mint-api-key", "--account", "acme")

    assert code == 0, stderr
    api_key = stdout.strip()
    assert stdout == api_key + "\n" and api_key.startswith("god_")
    async with pool.acquire() as conn:
        account_id = await accounts_db.get_account_for_key(conn, key_hash=accounts_db.hash_api_key(api_key))
        name = await conn.fetchval("SELECT name FROM accounts WHERE account_id = $1", account_id)
    assert name == "acme"


async def test_migrate_down_and_up_again(cli_env: dict[str, str], pool: asyncpg.Pool) -> None:
    labels = sorted(path.name.removesuffix(".up.sql") for path in MIGRATIONS_DIR.glob("*.up.sql"))

    down = await run_cli(cli_env, "migrate", "--down", "--steps", str(len(labels)))
    async with pool.acquire() as conn:
        tables_after_down = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'tasks'")
    up = await run_cli(cli_env, "migrate")

    assert labels[0] == "0001_initial"
    assert down[:2] == (0, f"rolled back: {', '.join(reversed(labels))}\n"), down[2]
    assert tables_after_down == 0
    assert up[:2] == (0, f"applied: {', '.join(labels)}\n"), up[2]
    assert (await run_cli(cli_env, "migrate"))[1] == "nothing to apply\n"


async def test_run_refuses_a_hotkey_without_a_validator_permit(cli_env: dict[str, str], keys: Keys) -> None:
    cli_env["VALIDATOR_WALLET_NAME"] = "miner0"

    code, stdout, stderr = await run_cli(cli_env, "run")

    assert code == 1
    assert stderr == (
        f"error: hotkey {keys.miners[0].hotkey.ss58_address} (uid 2) has no validator permit on netuid {NETUID} of "
        "the local chain; on the local network only the validators `god localnet up` registers have one\n"
    )


async def test_run_serves_the_api_and_stops_cleanly(cli_env: dict[str, str]) -> None:
    port = free_port()
    cli_env["VALIDATOR_PORT"] = str(port)
    process = await asyncio.create_subprocess_exec(
        *CLI, "run", env=cli_env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(150):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError("the validator did not start")
        assert response.json() == {"status": "ok", "database": "ok"}
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)

    log = stderr.decode()
    assert process.returncode == 0, log
    assert "started 5 task workers" in log
    assert "stopped the task workers" in log


async def test_run_on_a_port_in_use_stops_before_any_worker_claims_a_task(
    cli_env: dict[str, str], pool: asyncpg.Pool, dataset_file: Path
) -> None:
    task = await insert_task(pool, ds_repo=str(dataset_file))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cli_env["VALIDATOR_PORT"] = str(port)
        code, _, stderr = await run_cli(cli_env, "run")

    assert code == 1
    assert (
        stderr == f"error: port {port} on 127.0.0.1 is already in use; set VALIDATOR_PORT (or --port) to a free port\n"
    )
    # No worker ran: the task was neither claimed (lease) nor moved on.
    assert await get_task(pool, task.task_id) == task


async def test_run_reports_a_trainers_setting_that_is_not_json(cli_env: dict[str, str]) -> None:
    cli_env["VALIDATOR_TRAINERS"] = "not json"

    code, _, stderr = await run_cli(cli_env, "run")

    assert code == 2
    assert stderr == "invalid setting VALIDATOR_TRAINERS: is not valid JSON (Expecting value at line 1 column 1)\n"


async def test_run_names_a_bad_port_option(cli_env: dict[str, str]) -> None:
    code, _, stderr = await run_cli(cli_env, "run", "--port", "0")

    assert code == 2
    assert stderr == "invalid setting --port: Input should be greater than or equal to 1 (got '0')\n"


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ({"VALIDATOR_WALLET_HOTKEY": "nobody"}, "error: hotkey file "),
        ({"VALIDATOR_CHAIN_PATH": "missing.json"}, "error: local chain file "),
        ({"VALIDATOR_WALLET_NAME": "stranger"}, "error: hotkey "),
    ],
    ids=["no-wallet", "no-chain-file", "unregistered"],
)
async def test_run_without_wallet_chain_or_registration_says_so_in_one_line(
    cli_env: dict[str, str], setting: dict[str, str], error: str
) -> None:
    # A hotkey that is not on the chain.
    create_wallet("stranger", "default", Path(cli_env["VALIDATOR_WALLET_PATH"]))
    cli_env.update(setting)

    code, _, stderr = await run_cli(cli_env, "run")

    assert code == 1
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), lines
