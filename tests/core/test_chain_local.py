import asyncio
import json
import multiprocessing
import time

import pytest
from bittensor.sp_core import Keypair

from core.chain import BittensorChain, ChainError, LocalChain, RateLimited, open_chain
from core.settings import NodeSettings


class KeyWallet:
    """A wallet-like object over a Keypair (the chain only needs `.hotkey`)."""

    def __init__(self, keypair):
        self.hotkey = keypair


class LyingKey:
    """Claims one hotkey's address but signs with another key."""

    def __init__(self, claimed, signer):
        self.ss58_address = claimed.ss58_address
        self._signer = signer

    def sign(self, payload):
        return self._signer.sign(payload)


def key(name: str) -> Keypair:
    return Keypair.create_from_uri(f"//{name}")


COLD = key("Owner").ss58_address


@pytest.fixture
async def chain(tmp_path):
    chain = LocalChain.create(tmp_path / "chain.json", netuid=7, block_time_seconds=0.05, weights_rate_limit=4)
    await chain.register(key("Validator").ss58_address, COLD, stake=1000.0, validator_permit=True)
    await chain.register(key("Miner1").ss58_address, COLD, stake=0.0)
    await chain.register(key("Miner2").ss58_address, COLD, stake=0.0)
    return chain


async def test_register_serve_and_metagraph(chain, tmp_path):
    again = await chain.register(key("Miner1").ss58_address, COLD, stake=5.0, validator_permit=True)
    assert again.uid == 1 and again.stake == 0.0 and not again.validator_permit
    await chain.serve(key("Miner2").ss58_address, "http://127.0.0.1:8091")
    neurons = await chain.metagraph()
    assert [n.uid for n in neurons] == [0, 1, 2]
    assert neurons[0].validator_permit and neurons[0].stake == 1000.0
    assert neurons[2].address == "http://127.0.0.1:8091"
    with pytest.raises(ChainError, match="not registered"):
        await chain.serve(key("Stranger").ss58_address, "http://127.0.0.1:1")
    with pytest.raises(ChainError, match="not a valid ss58"):
        await chain.register("5notakey", COLD)

    # create() keeps an existing chain of the same netuid and refuses another netuid
    same = LocalChain.create(tmp_path / "chain.json", netuid=7)
    assert len(await same.metagraph()) == 3
    with pytest.raises(ChainError, match="netuid 7, not 8"):
        LocalChain.create(tmp_path / "chain.json", netuid=8)


async def test_blocks_follow_the_clock(chain):
    first = await chain.current_block()
    await asyncio.sleep(0.12)
    assert await chain.current_block() >= first + 2


async def test_set_weights_normalises_and_rate_limits(chain):
    validator = KeyWallet(key("Validator"))
    record = await chain.set_weights(wallet=validator, uids=[1, 2], weights=[3.0, 1.0], version_key=9)
    assert record.weights == [0.75, 0.25]
    assert record.hotkeys == [key("Miner1").ss58_address, key("Miner2").ss58_address]
    assert await chain.latest_weights(key("Validator").ss58_address) == record
    assert await chain.last_weights_block(key("Validator").ss58_address) == record.block
    assert await chain.latest_weights(key("Miner1").ss58_address) is None
    assert await chain.weights_rate_limit() == 4

    with pytest.raises(RateLimited) as limited:
        await chain.set_weights(wallet=validator, uids=[1], weights=[1.0], version_key=9)
    assert limited.value.retry_at_block == record.block + 4
    blocks_left = limited.value.retry_at_block - await chain.current_block()
    await asyncio.sleep(blocks_left * 0.05 + 0.02)
    later = await chain.set_weights(wallet=validator, uids=[1], weights=[2.0], version_key=9)
    assert later.weights == [1.0] and later.block >= record.block + 4
    assert await chain.latest_weights(key("Validator").ss58_address) == later


@pytest.mark.parametrize(
    ("uids", "weights", "message"),
    [
        ([1, 2], [1.0], "2 uids but 1 weights"),
        ([1, 9], [1.0, 1.0], "uid 9 is not registered"),
        ([1, 2], [1.0, float("nan")], "finite and non-negative"),
        ([1, 2], [1.0, -0.5], "finite and non-negative"),
        ([1, 2], [0.0, 0.0], "only zero weights"),
        ([1, 1], [1.0, 1.0], "duplicate uids"),
        ([], [], "at least one uid"),
    ],
)
async def test_bad_weights_are_refused(chain, uids, weights, message):
    with pytest.raises(ChainError, match=message):
        await chain.set_weights(wallet=KeyWallet(key("Validator")), uids=uids, weights=weights, version_key=1)
    assert await chain.latest_weights(key("Validator").ss58_address) is None


async def test_only_signing_permitted_validators_set_weights(chain):
    with pytest.raises(ChainError, match="no validator permit"):
        await chain.set_weights(wallet=KeyWallet(key("Miner1")), uids=[2], weights=[1.0], version_key=1)
    with pytest.raises(ChainError, match="not registered"):
        await chain.set_weights(wallet=KeyWallet(key("Stranger")), uids=[2], weights=[1.0], version_key=1)
    forged = KeyWallet(LyingKey(key("Validator"), key("Miner1")))
    with pytest.raises(ChainError, match="signature does not verify"):
        await chain.set_weights(wallet=forged, uids=[2], weights=[1.0], version_key=1)
    assert await chain.latest_weights(key("Validator").ss58_address) is None


async def test_history_is_bounded(tmp_path):
    chain = LocalChain.create(tmp_path / "c.json", netuid=1, weights_rate_limit=0)
    await chain.register(key("Validator").ss58_address, COLD, validator_permit=True)
    state = json.loads((tmp_path / "c.json").read_text())
    record = {"block": 0, "validator_hotkey": "x", "uids": [0], "weights": [1.0], "version_key": 0, "hotkeys": []}
    state["weights"] = [record] * 1000
    (tmp_path / "c.json").write_text(json.dumps(state))
    await chain.set_weights(wallet=KeyWallet(key("Validator")), uids=[0], weights=[1.0], version_key=3)
    state = json.loads((tmp_path / "c.json").read_text())
    assert len(state["weights"]) == 1000 and state["weights"][-1]["version_key"] == 3


def _register_many(path: str, names: list[str], queue) -> None:
    async def run():
        chain = LocalChain(path, 7)
        return [(await chain.register(key(name).ss58_address, COLD)).uid for name in names]

    queue.put(asyncio.run(run()))


def test_processes_registering_concurrently_get_distinct_uids(tmp_path):
    path = tmp_path / "chain.json"
    LocalChain.create(path, netuid=7)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    batches = [[f"P{p}-{i}" for i in range(15)] for p in range(3)]
    processes = [context.Process(target=_register_many, args=(str(path), batch, queue)) for batch in batches]
    for process in processes:
        process.start()
    uids = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    all_uids = sorted(uid for batch in uids for uid in batch)
    assert all_uids == list(range(45))
    neurons = asyncio.run(LocalChain(path, 7).metagraph())
    assert sorted(n.hotkey for n in neurons) == sorted(key(name).ss58_address for b in batches for name in b)


async def test_open_chain(tmp_path):
    settings = NodeSettings(data_dir=tmp_path, netuid=7)
    with pytest.raises(ChainError, match="god localnet up"):
        open_chain(settings)
    LocalChain.create(tmp_path / "chain.json", netuid=7)
    chain = open_chain(settings)
    assert isinstance(chain, LocalChain) and chain.netuid == 7
    assert await chain.metagraph() == []
    # Real networks get the SDK-backed chain; nothing connects until the first call.
    finney = open_chain(NodeSettings(data_dir=tmp_path, network="finney", netuid=7))
    assert isinstance(finney, BittensorChain) and finney.netuid == 7
    wrong_netuid = open_chain(NodeSettings(data_dir=tmp_path, netuid=3))
    with pytest.raises(ChainError, match="netuid 7, not 3"):
        await wrong_netuid.metagraph()
    started = time.monotonic()
    assert await chain.current_block() >= 0
    assert time.monotonic() - started < 1


async def test_replace_neuron_recycles_a_uid_for_a_new_hotkey(chain):
    await chain.serve(key("Miner1").ss58_address, "http://127.0.0.1:8091")

    replaced = await chain.replace_neuron(1, key("Miner3").ss58_address, COLD, stake=2.0)

    assert replaced.uid == 1 and replaced.hotkey == key("Miner3").ss58_address and replaced.address is None
    assert [(n.uid, n.hotkey) for n in await chain.metagraph()] == [
        (0, key("Validator").ss58_address),
        (1, key("Miner3").ss58_address),
        (2, key("Miner2").ss58_address),
    ]
    with pytest.raises(ChainError, match="not registered"):
        await chain.serve(key("Miner1").ss58_address, "http://127.0.0.1:8092")
    with pytest.raises(ChainError, match="already registered"):
        await chain.replace_neuron(2, key("Miner3").ss58_address, COLD)
    with pytest.raises(ChainError, match="uid 9 is not registered"):
        await chain.replace_neuron(9, key("Miner4").ss58_address, COLD)
    # The old hotkey may register again; it gets a fresh uid.
    assert (await chain.register(key("Miner1").ss58_address, COLD)).uid == 3
    assert await chain.max_weight_limit() == 1.0
