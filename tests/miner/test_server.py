"""The miner server: which training repo to run, told only to registered validators; its settings and start."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
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


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("not json", "MINER_TRAINING_REPOS: is not valid JSON (Expecting value at line 1 column 1)"),
        (
            json.dumps({"InstructTextTask": {"github_repo": INSTRUCT_REPO["github_repo"]}}),
            "MINER_TRAINING_REPOS at ['InstructTextTask']['commit_hash']: field required",
        ),
    ],
    ids=["not-json", "no-commit-hash"],
)
def test_cli_run_reports_bad_training_repos_in_one_line(tmp_path, value, error):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MINER_TRAINING_REPOS": value}
    result = subprocess.run(CLI, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"invalid setting {error}\n"


def test_cli_run_names_a_bad_port_option(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MINER_PORT": "8091"}
    result = subprocess.run([*CLI, "--port", "0"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == "invalid setting --port: Input should be greater than or equal to 1 (got '0')\n"


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
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and "is not registered on netuid 56" in lines[0], lines


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


async def test_cli_run_on_a_port_in_use_leaves_the_chain_address_alone(network):
    hotkey = network["wallets"]["miner"].hotkey.ss58_address
    # The miner already running on this hotkey, elsewhere.
    await network["chain"].serve(hotkey, "http://10.0.0.9:8091")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = cli_env(network, hotkey="miner", port=port)
        process = await asyncio.create_subprocess_exec(*CLI, env=env, cwd=REPO_ROOT, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert stderr.decode() == (
        f"error: port {port} on 127.0.0.1 is already in use; set MINER_PORT (or --port) to a free port\n"
    )
    served = {neuron.hotkey: neuron.address for neuron in await network["chain"].metagraph()}
    assert served[hotkey] == "http://10.0.0.9:8091"


async def test_cli_training_repo_options_win_over_the_environments_repos(network):
    port = free_port()
    env = cli_env(network, hotkey="miner", port=port)
    env["MINER_TRAINING_REPOS"] = json.dumps({"InstructTextTask": INSTRUCT_REPO, "DpoTask": INSTRUCT_REPO})
    option = f"InstructTextTask={TOURNAMENT_REPO['github_repo']}@{TOURNAMENT_REPO['commit_hash']}"
    process = await asyncio.create_subprocess_exec(
        *CLI, "--training-repo", option, env=env, cwd=REPO_ROOT, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        hotkey = network["wallets"]["miner"].hotkey.ss58_address
        async with SignedClient(network["wallets"]["validator"]) as client:
            for _ in range(200):
                try:
                    instruct = await client.get(
                        f"http://127.0.0.1:{port}/training_repo/InstructTextTask", receiver_hotkey=hotkey
                    )
                    break
                except httpx.ConnectError:
                    assert process.returncode is None, "the miner exited"
                    await asyncio.sleep(0.1)
            dpo = await client.get(f"http://127.0.0.1:{port}/training_repo/DpoTask", receiver_hotkey=hotkey)
        assert instruct.status_code == 200 and instruct.json() == TOURNAMENT_REPO
        # The variable's entry for another task type stays.
        assert dpo.status_code == 200 and dpo.json() == INSTRUCT_REPO
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


def test_cli_names_a_bad_training_repo_option(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    value = "InstructTextTask=https://github.com/me/trainer@main"
    result = subprocess.run(
        [*CLI, "--training-repo", value], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr == f"invalid setting --training-repo: the commit must be 7 to 64 hex digits (got {value!r})\n"


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ({"MINER_WALLET_HOTKEY": "nobody"}, "error: hotkey file "),
        ({"MINER_CHAIN_PATH": "missing.json"}, "error: local chain file "),
    ],
    ids=["no-wallet", "no-chain-file"],
)
async def test_cli_run_without_wallet_or_chain_says_so_in_one_line(network, setting, error):
    env = {**cli_env(network, hotkey="miner", port=free_port()), **setting}
    process = await asyncio.create_subprocess_exec(*CLI, env=env, cwd=REPO_ROOT, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), lines
