"""An in-memory subtensor behind the bittensor 11 SDK's `Substrate` protocol (`bt.Client(network, substrate=fake)`).

It implements only what `BittensorChain` reaches through the SDK: connecting, block numbers and hashes, storage reads,
the metagraph runtime API, and composing, pricing and submitting calls. Everything else, including a storage item the
test did not declare, raises AssertionError so a new code path cannot silently read made-up state.

Submitted calls are kept with the address that signed them (the signature is checked against the signer's public
key), and `set_mechanism_weights` / `serve_axon` change the storage the way the chain does, so a second read sees them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from bittensor import Balance, ExtrinsicResult
from bittensor.sp_core import verify

PALLET = "SubtensorModule"


@dataclass(frozen=True)
class ComposedCall:
    """What the SDK composed: the pallet, the call function and its parameters, exactly as passed to `compose`."""

    module: str
    function: str
    params: dict[str, Any]

    def encoded(self) -> bytes:
        """Stand-in for SCALE bytes: deterministic, so a signature over it can be verified."""
        return json.dumps([self.module, self.function, self.params], sort_keys=True, default=_hex).encode()


@dataclass(frozen=True)
class Submission:
    call: ComposedCall
    signer: str
    block: int


@dataclass
class FakeNeuron:
    uid: int
    hotkey: str
    coldkey: str
    total_stake_rao: int = 0
    validator_permit: bool = False
    axon_ip: int = 0
    axon_port: int = 0


@dataclass
class FakeSubstrate:
    netuid: int
    block: int = 1000
    rate_limit: int = 100
    commit_reveal: bool = False
    neurons: list[FakeNeuron] = field(default_factory=list)
    # Upcoming connects that fail (with `connect_error`), or hang forever when `connect_hangs`.
    connect_failures: int = 0
    connect_error: type[Exception] = OSError
    connect_hangs: bool = False
    # Upcoming storage reads that fail as if the socket dropped mid-call.
    query_failures: int = 0
    connects: int = 0
    closes: int = 0
    composed: list[ComposedCall] = field(default_factory=list)
    submitted: list[Submission] = field(default_factory=list)
    token_symbols: dict[int, str] = field(default_factory=dict)
    _connected: bool = False
    _weights: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    _last_update: dict[int, int] = field(default_factory=dict)
    extra_storage: dict[tuple[str, str], dict[tuple, Any]] = field(default_factory=dict)

    def register(self, hotkey: str, coldkey: str, **fields: Any) -> FakeNeuron:
        neuron = FakeNeuron(uid=len(self.neurons), hotkey=hotkey, coldkey=coldkey, **fields)
        self.neurons.append(neuron)
        return neuron

    def set_last_update(self, uid: int, block: int) -> None:
        self._last_update[uid] = block

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the fake does not define: a Substrate method this fake never expected.
        raise AssertionError(f"unexpected Substrate call {name!r}: the fake does not model it")

    # -- lifecycle --

    def balance(self, rao: int, netuid: int = 0) -> Balance:
        return Balance(int(rao), netuid, self.token_symbols.get(netuid) if netuid else None)

    async def connect(self) -> None:
        self.connects += 1
        if self.connect_hangs:
            await asyncio.Event().wait()
        if self.connect_failures > 0:
            self.connect_failures -= 1
            raise self.connect_error("[Errno 111] Connect call failed (fake)")
        self._connected = True

    async def close(self) -> None:
        self.closes += 1
        self._connected = False

    def _require_connection(self) -> None:
        assert self._connected, "the SDK used the fake substrate before connecting it"

    # -- reads --

    async def block_number(self) -> int:
        self._require_connection()
        return self.block

    async def block_hash(self, block: int | None = None) -> str:
        self._require_connection()
        number = self.block if block is None else block
        assert 0 <= number <= self.block, f"block {number} is not on the fake chain (head {self.block})"
        return f"0x{number:064x}"

    async def block_time(self) -> float:
        return 12.0

    def _storage(self) -> dict[tuple[str, str], dict[tuple, Any]]:
        netuid = self.netuid
        uids = {(netuid, n.hotkey): n.uid for n in self.neurons}
        keys = {(netuid, n.uid): n.hotkey for n in self.neurons}
        axons = {
            (netuid, n.hotkey): {"ip": n.axon_ip, "port": n.axon_port, "ip_type": 4, "protocol": 4, "version": 1}
            for n in self.neurons
            if n.axon_ip
        }
        last_update = [self._last_update.get(n.uid, 0) for n in self.neurons]
        tables: dict[tuple[str, str], dict[tuple, Any]] = {
            (PALLET, "Uids"): uids,
            (PALLET, "Keys"): keys,
            (PALLET, "Axons"): axons,
            (PALLET, "LastUpdate"): {(netuid,): last_update},
            (PALLET, "Weights"): {(netuid, uid): row for uid, row in self._weights.items()},
            (PALLET, "WeightsSetRateLimit"): {(netuid,): self.rate_limit},
            (PALLET, "CommitRevealWeightsEnabled"): {(netuid,): self.commit_reveal},
            (PALLET, "MinAllowedWeights"): {(netuid,): 1},
            (PALLET, "MaxWeightsLimit"): {(netuid,): 65535},
            (PALLET, "SubnetEpochConsensus"): {(netuid,): "Yuma"},
            (PALLET, "WeightsVersionKey"): {(netuid,): 0},
            (PALLET, "TokenSymbol"): {(netuid,): list("γ".encode())},
        }
        for item, table in self.extra_storage.items():
            tables.setdefault(item, {}).update(table)
        return tables

    async def query(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> Any:
        self._require_connection()
        if self.query_failures > 0:
            self.query_failures -= 1
            raise ConnectionResetError("connection reset by peer (fake)")
        table = self._storage().get((module, storage_function))
        if table is None:
            raise AssertionError(f"unexpected storage read {module}.{storage_function}{params}")
        return table.get(tuple(params or ()))

    async def query_map(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> list[tuple[Any, Any]]:
        self._require_connection()
        table = self._storage().get((module, storage_function))
        if table is None:
            raise AssertionError(f"unexpected storage map read {module}.{storage_function}{params}")
        prefix = tuple(params or ())
        rows = []
        for key, value in table.items():
            if key[: len(prefix)] == prefix:
                rest = key[len(prefix) :]
                rows.append((rest[0] if len(rest) == 1 else rest, value))
        return rows

    async def query_batch(
        self, module: str, storage_function: str, param_sets: list[list], block_hash: str | None = None
    ) -> list[Any]:
        return [await self.query(module, storage_function, params, block_hash) for params in param_sets]

    async def runtime_call(self, api: str, method: str, params: list, block_hash: str | None = None) -> Any:
        self._require_connection()
        if (api, method) != ("SubnetInfoRuntimeApi", "get_metagraph"):
            raise AssertionError(f"unexpected runtime call {api}.{method}{params}")
        if params != [self.netuid]:
            return None
        neurons = self.neurons
        return {
            "netuid": self.netuid,
            "name": list(b"fake"),
            "symbol": list("γ".encode()),
            "block": self.block,
            "tempo": 360,
            "last_step": self.block - 10,
            "blocks_since_last_step": 10,
            "owner_hotkey": neurons[0].hotkey if neurons else "",
            "owner_coldkey": neurons[0].coldkey if neurons else "",
            "network_registered_at": 1,
            "num_uids": len(neurons),
            "max_uids": 256,
            "hotkeys": [n.hotkey for n in neurons],
            "coldkeys": [n.coldkey for n in neurons],
            "axons": [{"ip": n.axon_ip, "port": n.axon_port, "ip_type": 4} for n in neurons],
            "active": [True for _ in neurons],
            "validator_permit": [n.validator_permit for n in neurons],
            "last_update": [self._last_update.get(n.uid, 0) for n in neurons],
            "total_stake": [n.total_stake_rao for n in neurons],
            "alpha_stake": [n.total_stake_rao for n in neurons],
            "tao_stake": [0 for _ in neurons],
        }

    # -- calls --

    async def compose(self, call: Any) -> ComposedCall:
        self._require_connection()
        module, function, params = call
        composed = ComposedCall(module, function, dict(params))
        self.composed.append(composed)
        return composed

    async def estimate_fee(self, call: Any, keypair: Any) -> Balance:
        assert isinstance(call, ComposedCall), f"fee asked for a call the fake did not compose: {call!r}"
        return Balance.from_rao(125_000)

    async def submit(
        self,
        call: Any,
        keypair: Any,
        *,
        nonce: int | None = None,
        period: int | None = None,
        wait_for_inclusion: bool = True,
        wait_for_finalization: bool = True,
    ) -> ExtrinsicResult:
        self._require_connection()
        assert isinstance(call, ComposedCall), f"submitted a call the fake did not compose: {call!r}"
        signer = keypair.ss58_address
        signature = bytes(keypair.sign(call.encoded()))
        assert verify(call.encoded(), signature, signer), "the extrinsic's signature does not verify"
        self.submitted.append(Submission(call, signer, self.block))
        self._apply(call, signer)
        return ExtrinsicResult(
            success=True,
            message="Success",
            block_hash=f"0x{self.block:064x}",
            extrinsic_id=f"{self.block}-0003",
            fee=Balance.from_rao(125_000),
        )

    def _apply(self, call: ComposedCall, signer: str) -> None:
        neuron = next((n for n in self.neurons if n.hotkey == signer), None)
        assert neuron is not None, f"{signer} is not registered on the fake chain"
        if call.function == "set_mechanism_weights":
            self._weights[neuron.uid] = list(zip(call.params["dests"], call.params["weights"], strict=True))
            self._last_update[neuron.uid] = self.block
        elif call.function == "commit_timelocked_mechanism_weights":
            self._last_update[neuron.uid] = self.block
        elif call.function == "serve_axon":
            neuron.axon_ip = call.params["ip"]
            neuron.axon_port = call.params["port"]
        else:
            raise AssertionError(f"the fake chain does not model {call.module}.{call.function}")


def ipv4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    raise TypeError(f"cannot encode {type(value).__name__}")
