"""Fixtures of the validator tests: a migrated database, a local chain with miners, in-test miners and a trainer."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.chain import LocalChain
from core.db import apply_migrations, create_pool
from core.model_store import LocalModelStore
from core.signed_http import SignedClient
from core.tasks import NewTaskRequestInstructText, TaskStatus
from core.wallets import create_wallet
from tests.validator.fakes import FakeMiner, FakeTrainer, HostRouter, word_rows
from validator.db import MIGRATIONS_DIR, contestants as contestants_db, tasks as tasks_db
from validator.db.accounts import get_or_create_account
from validator.db.contestants import ContestantRow
from validator.db.tasks import TaskRow
from validator.service import build_artifact_store
from validator.settings import ValidatorSettings
from validator.workers import Stage, WorkerContext, nodes, prepare, run_stage_once

NETUID = 7
BASE_MODEL = "base/tiny"
TRAINER_URL = "http://trainer.test"
MINER_COUNT = 3


@dataclass
class Keys:
    validator: Any
    other_validator: Any
    trainer: Any
    miners: list[Any]


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("wallets")
    return Keys(
        validator=create_wallet("validator", "default", root),
        other_validator=create_wallet("other-validator", "default", root),
        trainer=create_wallet("trainer", "default", root),
        miners=[create_wallet(f"miner{index}", "default", root) for index in range(MINER_COUNT)],
    )


def hotkey(wallet: Any) -> str:
    return wallet.hotkey.ss58_address


def coldkey(wallet: Any) -> str:
    return wallet.coldkeypub.ss58_address


@pytest.fixture
async def validator_db(make_database) -> str:
    """URL of a new database with the validator's migrations applied."""
    url = await make_database()
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        await apply_migrations(pool, MIGRATIONS_DIR)
    finally:
        await pool.close()
    return url


@pytest.fixture
async def pool(validator_db: str) -> asyncpg.Pool:
    pool = await create_pool(validator_db, min_size=1, max_size=10)
    yield pool
    await pool.close()


def miner_host(index: int) -> str:
    return f"miner{index}.test"


@pytest.fixture
async def chain(tmp_path: Path, keys: Keys) -> LocalChain:
    """Validators with permits, miners serving `http://minerN.test`, and the trainer host (served, no permit)."""
    chain = LocalChain.create(tmp_path / "chain.json", netuid=NETUID, block_time_seconds=0.05, weights_rate_limit=4)
    for wallet in (keys.validator, keys.other_validator):
        await chain.register(hotkey(wallet), coldkey(wallet), stake=1000.0, validator_permit=True)
    await chain.serve(hotkey(keys.other_validator), "http://other-validator.test")
    for index, wallet in enumerate(keys.miners):
        await chain.register(hotkey(wallet), coldkey(wallet))
        await chain.serve(hotkey(wallet), f"http://{miner_host(index)}")
    await chain.register(hotkey(keys.trainer), coldkey(keys.trainer))
    await chain.serve(hotkey(keys.trainer), TRAINER_URL)
    return chain


@pytest.fixture
def settings(tmp_path: Path, keys: Keys) -> ValidatorSettings:
    return ValidatorSettings(
        data_dir=tmp_path / "validator",
        netuid=NETUID,
        network="local",
        poll_interval_seconds=0.05,
        lease_seconds=5.0,
        delay_seconds=0.05,
        max_delays=2,
        min_dataset_rows=10,
        trainers=[{"url": TRAINER_URL, "hotkey": hotkey(keys.trainer)}],
        training_grace_seconds=60.0,
        eval_batch_size=4,
        eval_max_length=64,
        artifact_secret=secrets.token_hex(16),
    )


@pytest.fixture
def model_store(tmp_path: Path) -> LocalModelStore:
    store = LocalModelStore(tmp_path / "models")
    placeholder = tmp_path / "placeholder-base"
    placeholder.mkdir()
    (placeholder / "config.json").write_text("{}")
    store.upload(placeholder, BASE_MODEL)
    return store


@dataclass
class Network:
    router: HostRouter
    miners: list[FakeMiner]
    trainer: FakeTrainer


@pytest.fixture
def network(keys: Keys, model_store: LocalModelStore) -> Network:
    miners = [FakeMiner(hotkey(wallet)) for wallet in keys.miners]
    trainer = FakeTrainer(hotkey(keys.trainer), model_store=model_store)
    router = HostRouter({miner_host(index): miner.app for index, miner in enumerate(miners)})
    router.add("trainer.test", trainer.app)
    return Network(router=router, miners=miners, trainer=trainer)


@pytest.fixture
async def ctx(
    settings: ValidatorSettings, pool: asyncpg.Pool, chain: LocalChain, keys: Keys, network: Network, model_store
) -> WorkerContext:
    http = SignedClient(keys.validator, transport=network.router)
    context = WorkerContext(
        settings=settings,
        pool=pool,
        chain=chain,
        wallet=keys.validator,
        http=http,
        model_store=model_store,
        artifact_store=build_artifact_store(settings),
    )
    yield context
    await http.aclose()


def write_dataset(folder: Path, rows: list[dict[str, Any]], name: str = "rows.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(rows))
    return path


async def insert_task(
    pool: asyncpg.Pool, *, ds_repo: str, account: str = "acme", model_repo: str = BASE_MODEL, **fields: Any
) -> TaskRow:
    """A pending task as the API would create it (JSON file dataset with question/answer columns by default)."""
    request = NewTaskRequestInstructText(
        ds_repo=ds_repo,
        model_repo=model_repo,
        file_format=fields.pop("file_format", "json"),
        hours_to_complete=fields.pop("hours_to_complete", 1.0),
        field_instruction=fields.pop("field_instruction", "question"),
        field_output=fields.pop("field_output", "answer"),
        **fields,
    )
    async with pool.acquire() as conn, conn.transaction():
        account_id = await get_or_create_account(conn, name=account)
        return await tasks_db.insert_task(
            conn,
            task_id=uuid.uuid4(),
            account_id=account_id,
            task_type="InstructTextTask",
            model_repo=request.model_repo,
            ds_repo=request.ds_repo,
            file_format=request.file_format.value,
            hours_to_complete=request.hours_to_complete,
            request=request.model_dump(mode="json"),
            result_model_name=request.result_model_name,
            split_seed=1234,
        )


async def get_task(pool: asyncpg.Pool, task_id: uuid.UUID) -> TaskRow:
    async with pool.acquire() as conn:
        task = await tasks_db.get_task(conn, task_id=task_id)
    assert task is not None
    return task


async def events(pool: asyncpg.Pool, task_id: uuid.UUID) -> list[tuple[str, str]]:
    async with pool.acquire() as conn:
        return [(event.status, event.message) for event in await tasks_db.list_events(conn, task_id=task_id)]


@pytest.fixture
def dataset_file(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "datasets", word_rows(40))


async def run_until(
    ctx: WorkerContext, stage: Stage, task_id: uuid.UUID, statuses: set[TaskStatus], *, tries: int = 200
) -> TaskRow:
    """Run the stage (as the same worker) until the task reaches one of `statuses`."""
    for _ in range(tries):
        await run_stage_once(ctx, stage, lease_owner="test-worker")
        task = await get_task(ctx.pool, task_id)
        if task.status in statuses:
            return task
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} is stuck in {task.status}")


async def ready_task(ctx: WorkerContext, dataset: Path) -> uuid.UUID:
    """A task prepared and with contestants (one per fake miner), as the real stages leave it."""
    task = await insert_task(ctx.pool, ds_repo=str(dataset))
    await run_until(ctx, prepare.STAGE, task.task_id, {TaskStatus.LOOKING_FOR_NODES})
    await run_until(ctx, nodes.STAGE, task.task_id, {TaskStatus.READY})
    return task.task_id


async def contestants_of(pool: asyncpg.Pool, task_id: uuid.UUID) -> dict[str, ContestantRow]:
    async with pool.acquire() as conn:
        return {item.hotkey: item for item in await contestants_db.list_contestants(conn, task_id=task_id)}
