"""The miner server: which training repo to run, told only to registered validators; its settings and start."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest

from core.chain import LocalChain
from core.settings import load_settings
from core.signed_http import SignedClient
from core.wallets import create_wallet
from miner.server import create_app
from miner.settings import MinerSettings

MINER_URL = "http://miner"
INSTRUCT_REPO = {"github_repo": "https://github.com/example/instruct-trainer", "commit_hash": "a" * 40}
TOURNAMENT_REPO = {"github_repo": "file:///srv/repos/tournament", "commit_hash": "b1c2d3e"}


@pytest.fixture
async def network(tmp_path):
    chain = LocalChain.create(tmp_path / "chain.json", netuid=56)
    names = ("validator", "outsider", "miner")
    wallets = {name: create_wallet("owner", name, tmp_path / "wallets") for name in names}
    coldkey = wallets["validator"].coldkeypub.ss58_address
    for name in names:
        await chain.register(
            wallets[name].hotkey.ss58_address, coldkey, stake=10.0, validator_permit=name == "validator"
        )
    return {"chain": chain, "wallets": wallets, "tmp_path": tmp_path}


def miner_app(network, **repos):
    settings = MinerSettings(training_repos=repos, data_dir=network["tmp_path"])
    hotkey = network["wallets"]["miner"].hotkey.ss58_address
    return create_app(settings, chain=network["chain"], hotkey_ss58=hotkey), hotkey


async def test_a_registered_validator_gets_the_repo_of_a_task_type(network):
    app, hotkey = miner_app(network, InstructTextTask=INSTRUCT_REPO)
    async with SignedClient(network["wallets"]["validator"], transport=httpx.ASGITransport(app=app)) as client:
        for task_type in ("InstructTextTask", "text"):
            response = await client.get(f"{MINER_URL}/training_repo/{task_type}", receiver_hotkey=hotkey)
            assert response.status_code == 200, response.text
            assert response.json() == INSTRUCT_REPO


async def test_a_configured_tournament_kind_wins_over_the_task_type(network):
    app, hotkey = miner_app(network, InstructTextTask=INSTRUCT_REPO, text=TOURNAMENT_REPO)
    async with SignedClient(network["wallets"]["validator"], transport=httpx.ASGITransport(app=app)) as client:
        text = await client.get(f"{MINER_URL}/training_repo/text", receiver_hotkey=hotkey)
        instruct = await client.get(f"{MINER_URL}/training_repo/InstructTextTask", receiver_hotkey=hotkey)
    assert text.json() == TOURNAMENT_REPO
    assert instruct.json() == INSTRUCT_REPO


async def test_unknown_and_unconfigured_task_types_are_404_with_a_message(network):
    app, hotkey = miner_app(network, InstructTextTask=INSTRUCT_REPO)
    async with SignedClient(network["wallets"]["validator"], transport=httpx.ASGITransport(app=app)) as client:
        unknown = await client.get(f"{MINER_URL}/training_repo/SpeechTask", receiver_hotkey=hotkey)
        unconfigured = await client.get(f"{MINER_URL}/training_repo/DpoTask", receiver_hotkey=hotkey)
        image = await client.get(f"{MINER_URL}/training_repo/image", receiver_hotkey=hotkey)
    assert unknown.status_code == 404
    assert "unknown task type 'SpeechTask'" in unknown.json()["detail"]
    assert unconfigured.status_code == 404
    assert unconfigured.json()["detail"] == "this miner has no training repo for DpoTask"
    assert image.status_code == 404


async def test_non_validators_and_unsigned_requests_are_refused(network):
    app, hotkey = miner_app(network, InstructTextTask=INSTRUCT_REPO)
    transport = httpx.ASGITransport(app=app)
    async with SignedClient(network["wallets"]["outsider"], transport=transport) as outsider:
        refused = await outsider.get(f"{MINER_URL}/training_repo/InstructTextTask", receiver_hotkey=hotkey)
    assert refused.status_code == 403
    assert "not a registered validator" in refused.json()["detail"]
    async with httpx.AsyncClient(transport=transport, base_url=MINER_URL) as unsigned:
        assert (await unsigned.get("/training_repo/InstructTextTask")).status_code == 401


def test_training_repos_are_read_from_the_environment(monkeypatch, capsys):
    repos = {"InstructTextTask": INSTRUCT_REPO, "image": TOURNAMENT_REPO}
    monkeypatch.setenv("MINER_TRAINING_REPOS", json.dumps(repos))
    settings = load_settings(MinerSettings)
    assert settings.repo_for("InstructTextTask").commit_hash == "a" * 40
    assert settings.repo_for("image").github_repo == TOURNAMENT_REPO["github_repo"]
    assert settings.repo_for("ImageTask") is None

    monkeypatch.setenv("MINER_TRAINING_REPOS", json.dumps({"SpeechTask": INSTRUCT_REPO}))
    with pytest.raises(SystemExit) as exit_info:
        load_settings(MinerSettings)
    assert exit_info.value.code == 2
    assert "MINER_TRAINING_REPOS" in capsys.readouterr().err

    bad_url = {"InstructTextTask": {**INSTRUCT_REPO, "github_repo": "ssh://git@example.com/r.git"}}
    monkeypatch.setenv("MINER_TRAINING_REPOS", json.dumps(bad_url))
    with pytest.raises(SystemExit):
        load_settings(MinerSettings)
    assert "https:// or file://" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(network, *, hotkey: str, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(network["tmp_path"]),
        "MINER_DATA_DIR": str(network["tmp_path"]),
        "MINER_NETUID": "56",
        "MINER_CHAIN_PATH": str(network["tmp_path"] / "chain.json"),
        "MINER_WALLET_NAME": "owner",
        "MINER_WALLET_HOTKEY": hotkey,
        "MINER_WALLET_PATH": str(network["tmp_path"] / "wallets"),
        "MINER_PORT": str(port),
        "MINER_TRAINING_REPOS": json.dumps({"InstructTextTask": INSTRUCT_REPO}),
    }


CLI = [sys.executable, "-c", "from miner.cli import app; app()", "run"]
REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_cli_run_refuses_an_unregistered_hotkey(network):
    create_wallet("owner", "stranger", network["tmp_path"] / "wallets")
    env = cli_env(network, hotkey="stranger", port=free_port())
    process = await asyncio.create_subprocess_exec(*CLI, env=env, cwd=REPO_ROOT, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "is not registered on netuid 56" in stderr.decode()


async def test_cli_run_serves_its_address_on_chain_and_answers_validators(network):
    port = free_port()
    env = cli_env(network, hotkey="miner", port=port)
    process = await asyncio.create_subprocess_exec(*CLI, env=env, cwd=REPO_ROOT, stderr=asyncio.subprocess.DEVNULL)
    try:
        hotkey = network["wallets"]["miner"].hotkey.ss58_address
        async with SignedClient(network["wallets"]["validator"]) as client:
            for _ in range(200):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/training_repo/text", receiver_hotkey=hotkey)
                    break
                except httpx.ConnectError:
                    assert process.returncode is None, "the miner exited"
                    await asyncio.sleep(0.1)
        assert response.status_code == 200 and response.json() == INSTRUCT_REPO
        served = {neuron.hotkey: neuron.address for neuron in await network["chain"].metagraph()}
        assert served[hotkey] == f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
