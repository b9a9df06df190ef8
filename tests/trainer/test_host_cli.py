"""`trainer run`: the start checks, serving the address on chain, and a signed request to the real server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from core.signed_http import SignedClient
from core.wallets import create_wallet

CLI = [sys.executable, "-c", "from trainer.cli import app; app()", "run"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(tmp_path: Path, *, hotkey: str, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TRAINER_DATA_DIR": str(tmp_path / "data"),
        "TRAINER_MODEL_STORE_DIR": str(tmp_path / "store"),
        "TRAINER_NETUID": "56",
        "TRAINER_CHAIN_PATH": str(tmp_path / "chain.json"),
        "TRAINER_WALLET_NAME": "owner",
        "TRAINER_WALLET_HOTKEY": hotkey,
        "TRAINER_WALLET_PATH": str(tmp_path / "wallets"),
        "TRAINER_PORT": str(port),
    }


async def test_run_refuses_an_unregistered_hotkey(network, tmp_path):
    create_wallet("owner", "stranger", tmp_path / "wallets")
    env = cli_env(tmp_path, hotkey="stranger", port=free_port())
    process = await asyncio.create_subprocess_exec(*CLI, env=env, cwd=REPO_ROOT, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and "is not registered on netuid 56" in lines[0], lines


async def test_run_serves_its_address_and_answers_a_validator(network, tmp_path):
    port = free_port()
    env = cli_env(tmp_path, hotkey="trainer", port=port)
    process = await asyncio.create_subprocess_exec(*CLI, env=env, cwd=REPO_ROOT, stderr=asyncio.subprocess.DEVNULL)
    hotkey = network["wallets"]["trainer"].hotkey.ss58_address
    try:
        async with SignedClient(network["wallets"]["validator"]) as client:
            for _ in range(300):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/v1/capacity", receiver_hotkey=hotkey)
                    break
                except httpx.ConnectError:
                    assert process.returncode is None, "the trainer host exited"
                    await asyncio.sleep(0.1)
        assert response.status_code == 200
        assert response.json() == {"slots_total": 1, "slots_free": 1, "gpus": []}
        served = {neuron.hotkey: neuron.address for neuron in await network["chain"].metagraph()}
        assert served[hotkey] == f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert await asyncio.wait_for(process.wait(), 30) in (0, -signal.SIGTERM)


async def test_run_on_a_port_in_use_leaves_the_chain_address_alone(network, tmp_path):
    hotkey = network["wallets"]["trainer"].hotkey.ss58_address
    # The trainer host already running on this hotkey, elsewhere.
    await network["chain"].serve(hotkey, "http://10.0.0.9:8001")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = cli_env(tmp_path, hotkey="trainer", port=port)
        process = await asyncio.create_subprocess_exec(*CLI, env=env, cwd=REPO_ROOT, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert stderr.decode() == (
        f"error: port {port} on 127.0.0.1 is already in use; set TRAINER_PORT (or --port) to a free port\n"
    )
    served = {neuron.hotkey: neuron.address for neuron in await network["chain"].metagraph()}
    assert served[hotkey] == "http://10.0.0.9:8001"


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ({"TRAINER_WALLET_HOTKEY": "nobody"}, "error: hotkey file "),
        ({"TRAINER_CHAIN_PATH": "missing.json"}, "error: local chain file "),
    ],
    ids=["no-wallet", "no-chain-file"],
)
async def test_run_without_wallet_or_chain_says_so_in_one_line(network, tmp_path, setting, error):
    env = {**cli_env(tmp_path, hotkey="trainer", port=free_port()), **setting}
    process = await asyncio.create_subprocess_exec(*CLI, env=env, cwd=REPO_ROOT, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), lines
