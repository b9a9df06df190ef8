"""Start and stop a whole local subnet: chain file, embedded PostgreSQL, trainer host, miners and a validator.

Every role runs as its own `python -m god <role> run` process, exactly as an operator would start it, configured only
through its environment variables. The network's directory holds everything:

    {root}/chain.json         the local chain shared by all processes
    {root}/wallets/           sr25519 keys of every node
    {root}/postgres/          embedded PostgreSQL data directory
    {root}/model_store/       the local model store (base models survive a reset, trained outputs do not)
    {root}/datasets/          the customer's dataset files
    {root}/repos/             the miners' training repos (git)
    {root}/nodes/<name>/      each node's data directory;  {root}/logs/<name>.log  its output
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.chain.local import LocalChain
from core.db import database_url_from, stop_embedded_database
from core.model_store import LocalModelStore
from core.tasks import TaskType
from core.wallets import create_wallet
from god.localnet import assets

logger = logging.getLogger(__name__)

NETUID = 1
LOOPBACK = "127.0.0.1"
API_KEY_ACCOUNT = "localnet"
STARTUP_TIMEOUT_SECONDS = 120.0


class LocalNetworkError(RuntimeError):
    """The local network could not start; the message names the node and its log file."""


@dataclass
class MinerSpec:
    """One miner of the local network: its name and how its training repo differs from the reference trainer."""

    name: str
    training_config: dict[str, Any] | None = None
    extra_files: dict[str, str] | None = None


@dataclass
class NodeProcess:
    name: str
    role: str
    env: dict[str, str]
    log_path: Path
    port: int
    hotkey: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalNetwork:
    root: Path
    model: str = "smollm2"  # "smollm2" (the real model) or "tiny" (a random two-layer model for tests)
    miners: list[MinerSpec] = field(
        default_factory=lambda: [
            MinerSpec("miner-1", {"learning_rate": 2e-4}),
            MinerSpec("miner-2", {"learning_rate": 1e-3}),
        ]
    )
    min_dataset_rows: int = 100
    trainer_slots: int = 1
    validator_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.chain_path = self.root / "chain.json"
        self.wallet_path = self.root / "wallets"
        self.model_store = LocalModelStore(self.root / "model_store")
        self.dataset_path = self.root / "datasets" / "chatterbot_instruct.json"
        self.database_url: str | None = None
        self.base_model_repo: str | None = None
        self.api_key: str | None = None
        self.nodes: dict[str, NodeProcess] = {}

    # --- set-up -----------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Reset the network's state (keeping converted base models) and make every asset, key and registration."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._stop_leftovers()
        for stale in ("chain.json", "wallets", "postgres", "repos", "nodes", "logs", "datasets"):
            path = self.root / stale
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        # Trained outputs of an earlier run go; base models (the slow SmolLM2 conversion) stay.
        shutil.rmtree(self.model_store.root / "localnet-outputs", ignore_errors=True)
        (self.root / "logs").mkdir()

        self.base_model_repo = (
            assets.ensure_smollm2(self.model_store)
            if self.model == "smollm2"
            else assets.ensure_tiny_model(self.model_store)
        )
        assets.write_instruct_dataset(self.dataset_path)

        chain = LocalChain.create(self.chain_path, netuid=NETUID, block_time_seconds=1.0, weights_rate_limit=5)
        validator_wallet = create_wallet("validator", "default", self.wallet_path)
        trainer_wallet = create_wallet("trainer-1", "default", self.wallet_path)
        for wallet, stake, permit in ((validator_wallet, 1000.0, True), (trainer_wallet, 0.0, False)):
            _register(chain, wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address, stake=stake, permit=permit)

        self.database_url = database_url_from(None, data_dir=self.root)

        common = {
            "NETUID": str(NETUID), "NETWORK": "local", "CHAIN_PATH": str(self.chain_path),
            "WALLET_PATH": str(self.wallet_path), "WALLET_HOTKEY": "default", "HOST": LOOPBACK, "LOG_LEVEL": "INFO",
        }  # fmt: skip

        trainer = self._node("trainer-1", "trainer", trainer_wallet.hotkey.ss58_address, common, {
            "WALLET_NAME": "trainer-1", "MODEL_STORE_DIR": str(self.model_store.root),
            "MODEL_NAMESPACE": "localnet-outputs", "SLOTS": str(self.trainer_slots),
        })  # fmt: skip

        for spec in self.miners:
            wallet = create_wallet(spec.name, "default", self.wallet_path)
            _register(chain, wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address, stake=10.0, permit=False)
            url, commit = assets.make_training_repo(
                self.root / "repos" / spec.name, training_config=spec.training_config, extra_files=spec.extra_files
            )
            repos = {TaskType.INSTRUCT_TEXT.value: {"github_repo": url, "commit_hash": commit}}
            self._node(spec.name, "miner", wallet.hotkey.ss58_address, common, {
                "WALLET_NAME": spec.name, "TRAINING_REPOS": json.dumps(repos),
            })  # fmt: skip

        self._node("validator", "validator", validator_wallet.hotkey.ss58_address, common, {
            "WALLET_NAME": "validator", "MODEL_STORE_DIR": str(self.model_store.root),
            "TRAINERS": json.dumps([{"url": trainer.url, "hotkey": trainer.hotkey}]),
            "MIN_DATASET_ROWS": str(self.min_dataset_rows), "POLL_INTERVAL_SECONDS": "0.5",
            "WEIGHTS_INTERVAL_SECONDS": "5", **self.validator_env,
        }, extra_env={"DATABASE_URL": self.database_url})  # fmt: skip

    def _node(
        self,
        name: str,
        role: str,
        hotkey: str,
        common: Mapping[str, str],
        own: Mapping[str, str],
        *,
        extra_env: Mapping[str, str] | None = None,
    ) -> NodeProcess:
        prefix = role.upper() + "_"
        port = free_port()
        data_dir = self.root / "nodes" / name
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {prefix + key: value for key, value in {**common, **own}.items()}
        env[prefix + "PORT"] = str(port)
        env[prefix + "DATA_DIR"] = str(data_dir)
        env.update(extra_env or {})
        node = NodeProcess(name, role, env, self.root / "logs" / f"{name}.log", port, hotkey)
        self.nodes[name] = node
        return node

    # --- processes ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the trainer host, the miners, then the validator; wait until each answers; mint an API key."""
        for node in sorted(self.nodes.values(), key=lambda n: n.role == "validator"):
            self.start_node(node.name)
        self.api_key = self._mint_api_key()

    def start_node(self, name: str) -> None:
        node = self.nodes[name]
        env = {**_base_env(), **node.env}
        with node.log_path.open("ab") as log:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "god", node.role, "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._record_pids()
        self._wait_until_listening(node)
        logger.info("started %s (%s) on port %d", node.name, node.role, node.port)

    def kill_node(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        node = self.nodes[name]
        if node.process is None or node.process.poll() is not None:
            return
        try:
            os.killpg(node.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            node.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and the embedded PostgreSQL server."""
        for name in reversed(list(self.nodes)):
            self.kill_node(name, signal.SIGTERM)
        if self.database_url is not None:
            stop_embedded_database(data_dir=self.root)
        (self.root / "pids.json").unlink(missing_ok=True)

    def __enter__(self) -> LocalNetwork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return self.nodes["validator"].url

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.nodes[name].log_path
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_until_listening(self, node: NodeProcess) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert node.process is not None
            if node.process.poll() is not None:
                raise LocalNetworkError(
                    f"{node.name} exited with status {node.process.returncode} while starting; "
                    f"its log {node.log_path} ends with:\n{self.log_tail(node.name)}"
                )
            if node.role == "validator":
                try:
                    if httpx.get(f"{node.url}/health", timeout=1.0).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.settimeout(0.5)
                    if sock.connect_ex((LOOPBACK, node.port)) == 0:
                        return
            time.sleep(0.2)
        raise LocalNetworkError(
            f"{node.name} did not start within {STARTUP_TIMEOUT_SECONDS:.0f} s; see {node.log_path}"
        )

    def _mint_api_key(self) -> str:
        node = self.nodes["validator"]
        completed = subprocess.run(
            [sys.executable, "-m", "god", "validator", "mint-api-key", "--account", API_KEY_ACCOUNT],
            env={**_base_env(), **node.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if completed.returncode != 0:
            raise LocalNetworkError(f"minting an API key failed: {completed.stderr.strip()[-2000:]}")
        return completed.stdout.strip().splitlines()[-1]

    def _record_pids(self) -> None:
        pids = {name: node.process.pid for name, node in self.nodes.items() if node.process is not None}
        (self.root / "pids.json").write_text(json.dumps(pids))

    def _stop_leftovers(self) -> None:
        """A run that was killed may have left nodes and the database running; stop them before a reset."""
        pids_file = self.root / "pids.json"
        if pids_file.exists():
            for pid in json.loads(pids_file.read_text()).values():
                try:
                    os.killpg(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            pids_file.unlink()
        if (self.root / "postgres").exists():
            stop_embedded_database(data_dir=self.root)


def _base_env() -> dict[str, str]:
    """The parent's environment minus settings meant for some other network, plus offline hub flags."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("VALIDATOR_", "MINER_", "TRAINER_")) and key != "DATABASE_URL"}  # fmt: skip
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    return env


def _register(chain: LocalChain, hotkey: str, coldkey: str, *, stake: float, permit: bool) -> None:
    """Register a node from the synchronous set-up code."""
    asyncio.run(chain.register(hotkey, coldkey, stake=stake, validator_permit=permit))


def mint_key_for_running_network(root: Path, account: str) -> str:
    """Mint an API key in the database of the local network at `root`, which must be running."""
    from core.db import create_pool
    from validator.db.accounts import mint_api_key

    if not (root / "pids.json").exists() or not (root / "postgres").is_dir():
        raise LocalNetworkError(f"no local network is running in {root}; start one with `god localnet up`")

    database_url = database_url_from(None, data_dir=root.resolve())

    async def mint() -> str:
        pool = await create_pool(database_url)
        try:
            return await mint_api_key(pool, account)
        finally:
            await pool.close()

    return asyncio.run(mint())
