"""`LocalChain`: the chain of a local network, one JSON file shared by all of its processes.

Every read-modify-write holds an exclusive `fcntl.flock` on a sibling `.lock` file, and the file is replaced
atomically (temp file + `os.replace`), so readers never see half a write and concurrent registrations get distinct
uids. Blocks are derived from the wall clock: block = floor((now - genesis_time) / block_time_seconds).

Weight setting mirrors the real chain's checks: the caller's hotkey signs the call, must be registered with a
validator permit, respects the weights rate limit, and sends finite non-negative weights for registered uids.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from bittensor.sp_core import decode_ss58, verify

from core.chain.base import ChainError, Neuron, RateLimited, Transfer, WeightsRecord, check_weights

logger = logging.getLogger(__name__)

WEIGHTS_HISTORY = 1000
T = TypeVar("T")


def _lock_path(path: Path) -> Path:
    # Lock a sibling file: the chain file itself is replaced on every write, so a lock on it would lock a stale inode.
    return path.with_name(path.name + ".lock")


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with open(_lock_path(path), "a") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, state: dict[str, Any]) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            json.dump(state, tmp, indent=1)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _check_ss58(value: str, what: str) -> str:
    try:
        decode_ss58(value)
    except (ValueError, TypeError) as error:
        raise ChainError(f"{what} {value!r} is not a valid ss58 address: {error}") from None
    return value


def weights_payload(*, netuid: int, hotkey: str, uids: list[int], weights: list[float], version_key: int) -> bytes:
    """The bytes a validator's hotkey signs to set weights on the local chain."""
    body = {"netuid": netuid, "hotkey": hotkey, "uids": uids, "weights": weights, "version_key": version_key}
    return ("god-local-chain/set_weights\n" + json.dumps(body, sort_keys=True)).encode()


class LocalChain:
    """The `Chain` of a local network, stored in `path` (made by `LocalChain.create`)."""

    def __init__(self, path: Path, netuid: int) -> None:
        self.path = Path(path)
        self.netuid = netuid

    # -- creation and registration (local-network setup) --

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        netuid: int,
        block_time_seconds: float = 1.0,
        weights_rate_limit: int = 10,
        max_weight_limit: float = 1.0,
    ) -> LocalChain:
        """Create the chain file, or keep an existing one of the same netuid (idempotent)."""
        path = Path(path)
        if block_time_seconds <= 0:
            raise ChainError(f"block_time_seconds must be positive, got {block_time_seconds}")
        if weights_rate_limit < 0:
            raise ChainError(f"weights_rate_limit must be >= 0, got {weights_rate_limit}")
        if not 0 < max_weight_limit <= 1:
            raise ChainError(f"max_weight_limit must be in (0, 1], got {max_weight_limit}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(path):
            if path.exists():
                existing = cls._read_file(path)
                if existing.get("netuid") != netuid:
                    raise ChainError(
                        f"{path} holds the chain of netuid {existing.get('netuid')}, not {netuid}; "
                        "remove it or use another path"
                    )
                return cls(path, netuid)
            state = {
                "netuid": netuid,
                "genesis_time": time.time(),
                "block_time_seconds": float(block_time_seconds),
                "weights_rate_limit": int(weights_rate_limit),
                "max_weight_limit": float(max_weight_limit),
                "neurons": [],
                "weights": [],
                "last_update": {},
            }
            _write_atomic(path, state)
        logger.info("created local chain for netuid %d at %s", netuid, path)
        return cls(path, netuid)

    async def register(
        self, hotkey_ss58: str, coldkey_ss58: str, *, stake: float = 0.0, validator_permit: bool = False
    ) -> Neuron:
        """Register a hotkey on the subnet; registering it again returns its existing neuron unchanged."""
        _check_ss58(hotkey_ss58, "hotkey")
        _check_ss58(coldkey_ss58, "coldkey")
        if not math.isfinite(stake) or stake < 0:
            raise ChainError(f"stake must be a finite non-negative number, got {stake}")

        def change(state: dict[str, Any]) -> Neuron:
            for entry in state["neurons"]:
                if entry["hotkey"] == hotkey_ss58:
                    return Neuron(**entry)
            entry = {
                "uid": len(state["neurons"]),
                "hotkey": hotkey_ss58,
                "coldkey": coldkey_ss58,
                "stake": float(stake),
                "validator_permit": bool(validator_permit),
                "address": None,
            }
            state["neurons"].append(entry)
            logger.info("registered hotkey %s as uid %d on netuid %d", hotkey_ss58, entry["uid"], self.netuid)
            return Neuron(**entry)

        return await asyncio.to_thread(self._update, change)

    async def replace_neuron(
        self, uid: int, hotkey_ss58: str, coldkey_ss58: str, *, stake: float = 0.0, validator_permit: bool = False
    ) -> Neuron:
        """Deregister the hotkey at `uid` and register `hotkey_ss58` in its place, as the chain does when a new
        registration prunes a uid. The new neuron serves nothing yet; the old hotkey is no longer registered."""
        _check_ss58(hotkey_ss58, "hotkey")
        _check_ss58(coldkey_ss58, "coldkey")
        if not math.isfinite(stake) or stake < 0:
            raise ChainError(f"stake must be a finite non-negative number, got {stake}")

        def change(state: dict[str, Any]) -> Neuron:
            if any(entry["hotkey"] == hotkey_ss58 for entry in state["neurons"]):
                raise ChainError(f"hotkey {hotkey_ss58} is already registered on netuid {self.netuid}")
            for entry in state["neurons"]:
                if entry["uid"] == uid:
                    old_hotkey = entry["hotkey"]
                    entry.update(
                        hotkey=hotkey_ss58,
                        coldkey=coldkey_ss58,
                        stake=float(stake),
                        validator_permit=bool(validator_permit),
                        address=None,
                    )
                    # The uid's rate-limit clock belongs to the old registration.
                    state["last_update"].pop(old_hotkey, None)
                    logger.info(
                        "uid %d on netuid %d: deregistered %s, registered %s", uid, self.netuid, old_hotkey, hotkey_ss58
                    )
                    return Neuron(**entry)
            raise ChainError(f"uid {uid} is not registered on netuid {self.netuid}")

        return await asyncio.to_thread(self._update, change)

    # -- the Chain protocol --

    async def current_block(self) -> int:
        return self._block_of(await asyncio.to_thread(self._read))

    async def metagraph(self) -> list[Neuron]:
        state = await asyncio.to_thread(self._read)
        return sorted((Neuron(**entry) for entry in state["neurons"]), key=lambda neuron: neuron.uid)

    async def serve(self, hotkey_ss58: str, address: str) -> None:
        if not address.startswith(("http://", "https://")):
            raise ChainError(f"address {address!r} must be an http:// or https:// URL")

        def change(state: dict[str, Any]) -> None:
            entry = self._neuron_entry(state, hotkey_ss58)
            if entry["address"] != address:
                entry["address"] = address
                logger.info("hotkey %s serves %s", hotkey_ss58, address)

        await asyncio.to_thread(self._update, change)

    async def weights_rate_limit(self) -> int:
        return int((await asyncio.to_thread(self._read))["weights_rate_limit"])

    async def last_weights_block(self, hotkey_ss58: str) -> int | None:
        return (await asyncio.to_thread(self._read))["last_update"].get(hotkey_ss58)

    async def max_weight_limit(self) -> float:
        """The largest share one uid may get (the subnet's max weight limit / 65535); not part of `Chain`.

        The local chain does not enforce it: it is read by the weight setter, as the SDK reads the hyperparameter.
        """
        return float((await asyncio.to_thread(self._read)).get("max_weight_limit", 1.0))

    async def set_weights(
        self, *, wallet: object, uids: list[int], weights: list[float], version_key: int
    ) -> WeightsRecord:
        try:
            hotkey = wallet.hotkey.ss58_address  # type: ignore[attr-defined]
        except Exception as error:
            raise ChainError(f"cannot read the wallet's hotkey: {error}") from error
        uids, weights, version_key = check_weights(uids, weights, version_key)
        payload = weights_payload(
            netuid=self.netuid, hotkey=hotkey, uids=uids, weights=weights, version_key=version_key
        )
        try:
            signature = bytes(wallet.hotkey.sign(payload))  # type: ignore[attr-defined]
        except Exception as error:
            raise ChainError(f"the wallet cannot sign with hotkey {hotkey}: {error}") from error

        def change(state: dict[str, Any]) -> WeightsRecord:
            return self._apply_weights(state, hotkey, uids, weights, version_key, payload, signature)

        return await asyncio.to_thread(self._update, change)

    async def latest_weights(self, validator_hotkey: str) -> WeightsRecord | None:
        state = await asyncio.to_thread(self._read)
        for record in reversed(state["weights"]):
            if record["validator_hotkey"] == validator_hotkey:
                return WeightsRecord(**record)
        return None

    async def transfer(self, from_coldkey: str, to_ss58: str, amount_tao: float) -> Transfer:
        """Record a TAO transfer (`god localnet fund`). The local chain keeps no balances: any coldkey can send."""
        _check_ss58(from_coldkey, "sender coldkey")
        _check_ss58(to_ss58, "destination")
        if isinstance(amount_tao, bool) or not math.isfinite(amount_tao) or amount_tao <= 0:
            raise ChainError(f"a transfer needs a positive, finite amount of TAO, got {amount_tao}")

        def change(state: dict[str, Any]) -> Transfer:
            transfers = state.setdefault("transfers", [])
            block = self._block_of(state)
            # Block and position in the chain's history, like subtensor's block-extrinsic ids: unique per chain.
            record = Transfer(
                id=f"{block}-{len(transfers)}",
                block=block,
                from_ss58=from_coldkey,
                to_ss58=to_ss58,
                amount_tao=float(amount_tao),
            )
            transfers.append(asdict(record))
            logger.info(
                "transfer %s: %s TAO from %s to %s at block %d", record.id, amount_tao, from_coldkey, to_ss58, block
            )
            return record

        return await asyncio.to_thread(self._update, change)

    async def transfers_to(self, addresses: list[str], since_block: int) -> list[Transfer]:
        wanted = set(addresses)
        state = await asyncio.to_thread(self._read)
        return [
            Transfer(**entry)
            for entry in state.get("transfers", [])
            if entry["to_ss58"] in wanted and entry["block"] >= since_block
        ]

    # -- internals (run in worker threads) --

    def _apply_weights(
        self,
        state: dict[str, Any],
        hotkey: str,
        uids: list[int],
        weights: list[float],
        version_key: int,
        payload: bytes,
        signature: bytes,
    ) -> WeightsRecord:
        try:
            valid = verify(payload, signature, hotkey)
        except ValueError:
            valid = False
        if not valid:
            raise ChainError(f"set_weights signature does not verify against hotkey {hotkey}")
        entry = self._neuron_entry(state, hotkey)
        if not entry["validator_permit"]:
            raise ChainError(f"hotkey {hotkey} (uid {entry['uid']}) has no validator permit on netuid {self.netuid}")
        # The weights themselves were checked (check_weights) before signing; here, against the chain's state.
        registered = {neuron["uid"]: neuron["hotkey"] for neuron in state["neurons"]}
        for uid in uids:
            if uid not in registered:
                raise ChainError(f"uid {uid} is not registered on netuid {self.netuid}")
        total = math.fsum(weights)

        block = self._block_of(state)
        limit = int(state["weights_rate_limit"])
        last = state["last_update"].get(hotkey)
        if last is not None and block - last < limit:
            raise RateLimited(
                f"hotkey {hotkey} set weights at block {last}; the rate limit is {limit} blocks (now {block})",
                retry_at_block=last + limit,
            )
        record = WeightsRecord(
            block=block,
            validator_hotkey=hotkey,
            uids=uids,
            weights=[weight / total for weight in weights],
            version_key=version_key,
            hotkeys=[registered[uid] for uid in uids],
        )
        state["weights"] = [*state["weights"], asdict(record)][-WEIGHTS_HISTORY:]
        state["last_update"][hotkey] = block
        logger.info("hotkey %s set weights on %d uids at block %d", hotkey, len(uids), block)
        return record

    def _neuron_entry(self, state: dict[str, Any], hotkey: str) -> dict[str, Any]:
        for entry in state["neurons"]:
            if entry["hotkey"] == hotkey:
                return entry
        raise ChainError(f"hotkey {hotkey} is not registered on netuid {self.netuid}")

    @staticmethod
    def _block_of(state: dict[str, Any]) -> int:
        return max(0, math.floor((time.time() - state["genesis_time"]) / state["block_time_seconds"]))

    @staticmethod
    def _read_file(path: Path) -> dict[str, Any]:
        try:
            with open(path, encoding="utf-8") as file:
                return json.load(file)
        except FileNotFoundError:
            raise ChainError(f"local chain file {path} does not exist: run `god localnet up` first") from None
        except (OSError, json.JSONDecodeError) as error:
            raise ChainError(f"cannot read the local chain file {path}: {error}") from error

    def _read(self) -> dict[str, Any]:
        state = self._read_file(self.path)
        if state.get("netuid") != self.netuid:
            raise ChainError(f"{self.path} holds the chain of netuid {state.get('netuid')}, not {self.netuid}")
        return state

    def _update(self, change: Callable[[dict[str, Any]], T]) -> T:
        if not self.path.exists():
            self._read()  # raises the "run god localnet up" error
        with _exclusive(self.path):
            state = self._read()
            result = change(state)
            _write_atomic(self.path, state)
        return result
