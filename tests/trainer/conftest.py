"""Fixtures of the trainer tests: a tiny base model, a dataset web server, and trainer hosts on a local chain."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from core.chain import LocalChain
from core.model_store import LocalModelStore
from core.signed_http import SignedClient
from core.trainer_api import JOBS_PATH
from core.wallets import create_wallet
from tests.trainer.helpers import build_tiny_model, generated_rows
from trainer.host.server import create_app
from trainer.settings import TrainerSettings

BASE_MODEL = "tiny/qwen2"
HOST_URL = "http://trainer"
DATASET_TYPE = {"field_instruction": "instruct", "field_input": "input", "field_output": "output"}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def dataset_server(tmp_path_factory: pytest.TempPathFactory):
    """A real HTTP server on a free port serving a folder; yields (base URL, folder). `rows.json` holds 40 rows."""
    root = tmp_path_factory.mktemp("datasets")
    (root / "rows.json").write_text(json.dumps(generated_rows(40)))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@dataclass
class Host:
    """A running trainer host app and clients of it."""

    app: FastAPI
    client: SignedClient  # signed by a registered validator
    other_validator: SignedClient
    outsider: SignedClient  # registered, without a validator permit
    hotkey: str
    store: LocalModelStore
    data_dir: Path
    dataset_url: str

    @property
    def jobs(self):
        return self.app.state.jobs

    def job(self, repo_url: str, commit: str, **overrides: Any) -> dict[str, Any]:
        body = {
            "job_id": str(uuid4()),
            "task_id": str(uuid4()),
            "hotkey": "5Contestant",
            "repo_url": repo_url,
            "commit_hash": commit,
            "task_type": "InstructTextTask",
            "model_repo": BASE_MODEL,
            "dataset_url": self.dataset_url,
            "dataset_type": DATASET_TYPE,
            "file_format": "s3",
            "expected_repo_name": f"out-{uuid4().hex[:8]}",
            "hours_to_complete": 1,
            "time_limit_seconds": 120,
        }
        body.update(overrides)
        return body

    async def post(self, body: dict[str, Any], client: SignedClient | None = None) -> httpx.Response:
        return await (client or self.client).post(f"{HOST_URL}{JOBS_PATH}", receiver_hotkey=self.hotkey, json=body)

    async def get(self, job_id: str, client: SignedClient | None = None) -> httpx.Response:
        return await (client or self.client).get(f"{HOST_URL}{JOBS_PATH}/{job_id}", receiver_hotkey=self.hotkey)

    async def wait_for(self, job_id: str, *, within: float = 60.0, until: set[str] | None = None) -> dict[str, Any]:
        """Poll the job until it reaches one of `until` (default: a terminal status); returns its status."""
        until = until or {"success", "failure", "cancelled"}
        deadline = asyncio.get_running_loop().time() + within
        while True:
            response = await self.get(job_id)
            assert response.status_code == 200, response.text
            status = response.json()
            if status["status"] in until:
                return status
            assert asyncio.get_running_loop().time() < deadline, f"job stuck in {status}"
            await asyncio.sleep(0.1)


@pytest.fixture
async def network(tmp_path, tiny_model_dir):
    """A local chain with two validators, an outsider and the trainer's hotkey, and a store with the base model."""
    chain = LocalChain.create(tmp_path / "chain.json", netuid=56)
    wallets = tmp_path / "wallets"
    names = ("validator", "other-validator", "outsider", "trainer")
    keys = {name: create_wallet("owner", name, wallets) for name in names}
    coldkey = keys["validator"].coldkeypub.ss58_address
    for name in names:
        permit = name in ("validator", "other-validator")
        await chain.register(keys[name].hotkey.ss58_address, coldkey, stake=10.0, validator_permit=permit)
    store = LocalModelStore(tmp_path / "store")
    await asyncio.to_thread(store.upload, tiny_model_dir, BASE_MODEL)
    return {"chain": chain, "wallets": keys, "store": store, "tmp_path": tmp_path}


@pytest.fixture
def make_host(network, dataset_server):
    """`async with make_host(**settings) as host:` runs a trainer host app (lifespan included) on a shared data dir."""

    @contextlib.asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Host]:
        tmp_path = network["tmp_path"]
        values = {
            "data_dir": tmp_path / "data",
            "model_store_dir": tmp_path / "store",
            "chain_path": tmp_path / "chain.json",
            "netuid": 56,
            "kill_grace_seconds": 1.0,
            "git_timeout_seconds": 60.0,
            **overrides,
        }
        settings = TrainerSettings(**values)
        hotkey = network["wallets"]["trainer"].hotkey.ss58_address
        app = create_app(settings, chain=network["chain"], hotkey_ss58=hotkey, model_store=network["store"])
        transport = httpx.ASGITransport(app=app)
        wallets = network["wallets"]
        async with (
            app.router.lifespan_context(app),
            SignedClient(wallets["validator"], transport=transport) as client,
            SignedClient(wallets["other-validator"], transport=transport) as other_validator,
            SignedClient(wallets["outsider"], transport=transport) as outsider,
        ):
            yield Host(
                app=app,
                client=client,
                other_validator=other_validator,
                outsider=outsider,
                hotkey=hotkey,
                store=network["store"],
                data_dir=settings.data_dir,
                dataset_url=f"{dataset_server[0]}/rows.json?expires=1&signature=abc",
            )

    return make
