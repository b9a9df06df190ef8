"""`BittensorChain` through the bittensor SDK, with the SDK's own injectable connection replaced by a fake subtensor.

Every call below goes through the real SDK: `bt.Client`, its read namespaces and snapshot, the metagraph decoder, the
`SetWeights` / `ServeAxon` intents and the executor that plans, prices, signs and submits them. Only the `Substrate`
(the websocket backend) is the in-memory fake of tests/core/fake_substrate.py.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time

import pytest

from core.chain import BittensorChain, ChainError, Neuron, RateLimited, RetryPolicy, open_chain
from core.settings import NodeSettings
from core.wallets import create_wallet
from tests.core.fake_substrate import FakeSubstrate, ipv4

NETUID = 7
ENDPOINT = "ws://subtensor.test:9944"
FAST = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0, call_timeout_s=5.0, submit_timeout_s=5.0)


@pytest.fixture(autouse=True)
def _token_symbol_cache(tmp_path, monkeypatch):
    # The SDK caches token symbols on connect; keep that file out of the home directory.
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "token_symbols.json"))


@pytest.fixture(scope="module")
def wallets(tmp_path_factory):
    root = tmp_path_factory.mktemp("wallets")
    return {name: create_wallet(name, "default", root) for name in ("validator", "miner1", "miner2")}


def hotkey(wallet) -> str:
    return wallet.hotkey.ss58_address


def coldkey(wallet) -> str:
    return wallet.coldkeypub.ss58_address


@pytest.fixture
def fake(wallets) -> FakeSubstrate:
    substrate = FakeSubstrate(netuid=NETUID, block=1000, rate_limit=100)
    substrate.register(
        hotkey(wallets["validator"]),
        coldkey(wallets["validator"]),
        total_stake_rao=1_500 * 10**9,
        validator_permit=True,
    )
    substrate.register(
        hotkey(wallets["miner1"]),
        coldkey(wallets["miner1"]),
        total_stake_rao=2_500_000_000,
        axon_ip=ipv4("10.0.0.9"),
        axon_port=8091,
    )
    substrate.register(hotkey(wallets["miner2"]), coldkey(wallets["miner2"]))
    return substrate


def chain_on(fake: FakeSubstrate, **kwargs) -> BittensorChain:
    return BittensorChain(ENDPOINT, NETUID, substrate=fake, retry=FAST, **kwargs)


async def test_metagraph_and_reads(fake, wallets):
    chain = chain_on(fake)
    neurons = await chain.metagraph()
    assert neurons == [
        Neuron(0, hotkey(wallets["validator"]), coldkey(wallets["validator"]), 1500.0, True, None),
        Neuron(1, hotkey(wallets["miner1"]), coldkey(wallets["miner1"]), 2.5, False, "http://10.0.0.9:8091"),
        Neuron(2, hotkey(wallets["miner2"]), coldkey(wallets["miner2"]), 0.0, False, None),
    ]
    assert await chain.current_block() == 1000
    assert await chain.weights_rate_limit() == 100
    # LastUpdate 0 means "never set"; an unregistered hotkey has none either.
    assert await chain.last_weights_block(hotkey(wallets["validator"])) is None
    fake.set_last_update(0, 950)
    assert await chain.last_weights_block(hotkey(wallets["validator"])) == 950
    assert await chain.last_weights_block("5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM") is None
    assert fake.connects == 1, "one connection serves every call"


async def test_max_weight_limit_is_the_hyperparameter_as_a_fraction(fake):
    chain = chain_on(fake)
    assert await chain.max_weight_limit() == 1.0
    fake.extra_storage = {("SubtensorModule", "MaxWeightsLimit"): {(NETUID,): 6553}}
    assert await chain.max_weight_limit() == pytest.approx(0.1, abs=1e-4)


async def test_metagraph_of_missing_subnet(fake):
    chain = BittensorChain(ENDPOINT, NETUID + 1, substrate=fake, retry=FAST)
    with pytest.raises(ChainError, match=f"netuid {NETUID + 1} does not exist on {ENDPOINT}"):
        await chain.metagraph()


async def test_set_weights_sends_exactly_one_weights_call(fake, wallets):
    chain = chain_on(fake)
    validator = wallets["validator"]
    record = await chain.set_weights(wallet=validator, uids=[1, 2], weights=[0.25, 0.75], version_key=7)

    assert len(fake.submitted) == 1
    submission = fake.submitted[0]
    assert submission.signer == hotkey(validator), "the validator's hotkey signs the weights"
    call = submission.call
    assert (call.module, call.function) == ("SubtensorModule", "set_mechanism_weights")
    # The SDK max-upscales and quantises to u16: 0.25/0.75 of 65535 rounds to 21845.
    assert call.params == {"netuid": NETUID, "mecid": 0, "dests": [1, 2], "weights": [21845, 65535], "version_key": 7}

    assert record.block == 1000 and record.validator_hotkey == hotkey(validator)
    assert record.uids == [1, 2] and record.weights == [0.25, 0.75] and record.version_key == 7
    assert record.hotkeys == [hotkey(wallets["miner1"]), hotkey(wallets["miner2"])]

    assert await chain.last_weights_block(hotkey(validator)) == 1000
    on_chain = await chain.latest_weights(hotkey(validator))
    assert on_chain is not None and on_chain.uids == [1, 2] and on_chain.block == 1000
    assert on_chain.hotkeys == record.hotkeys
    assert [round(weight, 4) for weight in on_chain.weights] == [0.25, 0.75]
    assert await chain.latest_weights(hotkey(wallets["miner1"])) is None

    # Straight away again: inside the window, so deferred with the block it may retry at, and nothing sent.
    with pytest.raises(RateLimited) as raised:
        await chain.set_weights(wallet=validator, uids=[1], weights=[1.0], version_key=7)
    assert raised.value.retry_at_block == 1000 + 100
    assert len(fake.submitted) == 1
    fake.block = 1100
    await chain.set_weights(wallet=validator, uids=[1], weights=[1.0], version_key=7)
    assert len(fake.submitted) == 2 and fake.submitted[1].call.params["dests"] == [1]


async def test_set_weights_inside_the_window_sends_nothing(fake, wallets):
    fake.set_last_update(0, 990)
    chain = chain_on(fake)
    with pytest.raises(RateLimited, match="rate limit of netuid 7 is 100 blocks") as raised:
        await chain.set_weights(wallet=wallets["validator"], uids=[1, 2], weights=[1.0, 2.0], version_key=1)
    assert raised.value.retry_at_block == 1090
    assert fake.composed == [] and fake.submitted == []


@pytest.mark.parametrize(
    ("uids", "weights", "message"),
    [
        ([1, 2], [0.5, math.nan], "finite and non-negative"),
        ([1, 2], [math.inf, 1.0], "finite and non-negative"),
        ([1, 2], [0.5, -0.1], "finite and non-negative"),
        ([1, 2], [0.0, 0.0], "only zero weights"),
        ([1, 2], [1.0], "2 uids but 1 weights"),
        ([], [], "at least one uid"),
        ([1, 1], [0.5, 0.5], "duplicate uids"),
    ],
)
async def test_bad_weights_are_refused_before_anything_is_sent(fake, wallets, uids, weights, message):
    chain = chain_on(fake)
    with pytest.raises(ChainError, match=message):
        await chain.set_weights(wallet=wallets["validator"], uids=uids, weights=weights, version_key=1)
    assert fake.connects == 0 and fake.composed == [] and fake.submitted == []


async def test_set_weights_refuses_unregistered_uids_and_hotkeys(fake, wallets, tmp_path):
    chain = chain_on(fake)
    with pytest.raises(ChainError, match=r"uids \[9\] are not registered on netuid 7"):
        await chain.set_weights(wallet=wallets["validator"], uids=[1, 9], weights=[1.0, 1.0], version_key=1)
    stranger = create_wallet("stranger", "default", tmp_path)
    with pytest.raises(ChainError, match=f"hotkey {hotkey(stranger)} is not registered on netuid 7"):
        await chain.set_weights(wallet=stranger, uids=[1], weights=[1.0], version_key=1)
    assert fake.submitted == []


async def test_commit_reveal_subnet_gets_a_timelocked_commit(fake, wallets):
    fake.commit_reveal = True
    fake.extra_storage = {
        ("SubtensorModule", item): {(NETUID,): value}
        for item, value in {
            "Tempo": 360,
            "RevealPeriodEpochs": 1,
            "LastEpochBlock": 900,
            "PendingEpochAt": 0,
            "SubnetEpochIndex": 3,
            "BlocksSinceLastStep": 100,
        }.items()
    }
    chain = chain_on(fake)
    record = await chain.set_weights(wallet=wallets["validator"], uids=[1, 2], weights=[1.0, 3.0], version_key=5)
    assert len(fake.submitted) == 1
    call = fake.submitted[0].call
    assert (call.module, call.function) == ("SubtensorModule", "commit_timelocked_mechanism_weights")
    assert call.params["netuid"] == NETUID and call.params["mecid"] == 0
    assert isinstance(call.params["commit"], bytes) and len(call.params["commit"]) > 64
    assert call.params["reveal_round"] > 0
    assert record.weights == [0.25, 0.75] and record.version_key == 5


async def test_connection_that_fails_then_recovers_is_retried(fake, wallets):
    fake.connect_failures = 2
    chain = chain_on(fake)
    assert len(await chain.metagraph()) == 3
    assert fake.connects == 3
    # A socket dropped in the middle of a call: the call reconnects and runs again.
    fake.query_failures = 1
    assert await chain.weights_rate_limit() == 100
    assert fake.connects == 4


async def test_connection_that_always_fails_names_the_endpoint(fake):
    fake.connect_failures = 10**6
    chain = chain_on(fake)
    started = time.monotonic()
    with pytest.raises(ChainError) as raised:
        await chain.metagraph()
    message = str(raised.value)
    assert ENDPOINT in message and "3 attempt(s)" in message and "Connect call failed" in message
    assert "\n" not in message
    assert fake.connects == 3
    assert time.monotonic() - started < 2


async def test_hanging_connection_fails_within_the_time_budget(fake):
    fake.connect_hangs = True
    chain = BittensorChain(ENDPOINT, NETUID, substrate=fake, retry=RetryPolicy(call_timeout_s=0.3, base_delay_s=0))
    started = time.monotonic()
    with pytest.raises(ChainError, match=f"cannot reach the {ENDPOINT} chain at {ENDPOINT} to read the current block"):
        await chain.current_block()
    assert time.monotonic() - started < 1.5


async def test_unreachable_real_endpoint_fails_fast_with_a_one_line_error():
    # No fake: the SDK's own websocket transport, against a port nothing listens on.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"ws://127.0.0.1:{port}"
    chain = BittensorChain(endpoint, NETUID, retry=RetryPolicy(attempts=2, base_delay_s=0.01))
    started = time.monotonic()
    with pytest.raises(ChainError, match=f"cannot reach the {endpoint} chain at {endpoint}") as raised:
        await chain.metagraph()
    assert "\n" not in str(raised.value)
    assert time.monotonic() - started < 10
    assert RetryPolicy().call_timeout_s + RetryPolicy().max_delay_s <= 30, "the default read budget stays under 30 s"


async def test_serve_announces_the_axon_once(fake, wallets):
    miner = wallets["miner2"]
    chain = chain_on(fake, wallet=miner)
    await chain.serve(hotkey(miner), "http://203.0.113.5:8091")
    assert len(fake.submitted) == 1
    call = fake.submitted[0].call
    assert (call.module, call.function) == ("SubtensorModule", "serve_axon")
    assert call.params["netuid"] == NETUID and call.params["ip"] == ipv4("203.0.113.5")
    assert call.params["port"] == 8091 and call.params["ip_type"] == 4
    assert fake.submitted[0].signer == hotkey(miner)
    assert (await chain.metagraph())[2].address == "http://203.0.113.5:8091"
    # The same address again costs nothing; a new one is announced.
    await chain.serve(hotkey(miner), "http://203.0.113.5:8091")
    assert len(fake.submitted) == 1
    await chain.serve(hotkey(miner), "http://203.0.113.5:9000")
    assert len(fake.submitted) == 2


async def test_serve_refusals(fake, wallets):
    miner = wallets["miner2"]
    with pytest.raises(ChainError, match="opened without one"):
        await chain_on(fake).serve(hotkey(miner), "http://203.0.113.5:8091")
    chain = chain_on(fake, wallet=miner)
    with pytest.raises(ChainError, match="IP addresses only"):
        await chain.serve(hotkey(miner), "http://miner.example.com:8091")
    with pytest.raises(ChainError, match="must be http://"):
        await chain.serve(hotkey(miner), "https://203.0.113.5:8091")
    with pytest.raises(ChainError, match="explicit port"):
        await chain.serve(hotkey(miner), "http://203.0.113.5")
    with pytest.raises(ChainError, match="the wallet's hotkey is"):
        await chain.serve(hotkey(wallets["miner1"]), "http://203.0.113.5:8091")
    assert fake.submitted == []


def test_each_event_loop_gets_its_own_connection(fake):
    # The CLIs announce in one asyncio.run and serve in another loop; a connection cannot cross loops.
    chain = chain_on(fake)
    assert asyncio.run(chain.current_block()) == 1000
    assert asyncio.run(chain.current_block()) == 1000
    assert fake.connects == 2


def test_network_names(wallets, tmp_path):
    assert BittensorChain("finney", 1).endpoint == "wss://entrypoint-finney.opentensor.ai:443"
    assert BittensorChain("test", 1).endpoint == "wss://test.finney.opentensor.ai:443"
    assert BittensorChain("wss://node.example:443", 1).endpoint == "wss://node.example:443"
    with pytest.raises(ChainError, match="Unknown network 'mainnet'"):
        BittensorChain("mainnet", 1)


def test_open_chain_for_real_networks(tmp_path):
    wallet = create_wallet("node", "hot", tmp_path / "wallets")
    settings = NodeSettings(
        data_dir=tmp_path,
        network="ws://127.0.0.1:9944",
        netuid=56,
        wallet_name="node",
        wallet_hotkey="hot",
        wallet_path=tmp_path / "wallets",
    )
    chain = open_chain(settings)
    assert isinstance(chain, BittensorChain) and chain.netuid == 56 and chain.endpoint == "ws://127.0.0.1:9944"
    assert chain.wallet is not None and chain.wallet.hotkey.ss58_address == wallet.hotkey.ss58_address
    without_wallet = open_chain(NodeSettings(data_dir=tmp_path, network="test", wallet_path=tmp_path / "none"))
    assert isinstance(without_wallet, BittensorChain) and without_wallet.wallet is None


async def test_weights_set_by_another_writer_after_the_check_is_deferred(fake, wallets):
    # Our read says "never set"; by the time the SDK's own preflight reads LastUpdate, another process has set weights.
    reads = []
    query = fake.query

    async def racing_query(module, storage_function, params=None, block_hash=None):
        if storage_function == "LastUpdate":
            reads.append(block_hash)
            if len(reads) == 2:
                fake.set_last_update(0, 995)
        return await query(module, storage_function, params, block_hash)

    fake.query = racing_query
    chain = chain_on(fake)
    with pytest.raises(RateLimited) as raised:
        await chain.set_weights(wallet=wallets["validator"], uids=[1], weights=[1.0], version_key=1)
    assert raised.value.retry_at_block == 995 + 100
    assert fake.submitted == []
