"""TAO transfers on the local chain: recorded with unique ids, read back by destination and block."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bittensor.sp_core import Keypair

from core.chain import ChainError, LocalChain, Transfer

ALICE = Keypair.create_from_uri("//Alice").ss58_address
BOB = Keypair.create_from_uri("//Bob").ss58_address
CHARLIE = Keypair.create_from_uri("//Charlie").ss58_address


async def test_transfers_are_read_back_by_destination_and_block(tmp_path: Path) -> None:
    chain = LocalChain.create(tmp_path / "chain.json", netuid=3, block_time_seconds=0.05)
    first = await chain.transfer(ALICE, BOB, 1.5)
    await chain.transfer(ALICE, CHARLIE, 2.0)
    await asyncio.sleep(0.12)
    later = await chain.transfer(CHARLIE, BOB, 0.25)

    assert later.block > first.block and first.id != later.id
    assert await chain.transfers_to([BOB], since_block=0) == [first, later]
    assert await chain.transfers_to([BOB], since_block=later.block) == [later]
    assert await chain.transfers_to([], since_block=0) == []
    reopened = LocalChain(tmp_path / "chain.json", netuid=3)
    assert [transfer.amount_tao for transfer in await reopened.transfers_to([BOB, CHARLIE], 0)] == [1.5, 2.0, 0.25]
    assert isinstance(first, Transfer) and first.from_ss58 == ALICE and first.to_ss58 == BOB


@pytest.mark.parametrize(
    ("sender", "dest", "amount"),
    [(ALICE, "nope", 1.0), (ALICE, BOB, 0.0), (ALICE, BOB, -1.0), (ALICE, BOB, float("nan")), ("x", BOB, 1.0)],
)
async def test_bad_transfers_are_refused(tmp_path: Path, sender: str, dest: str, amount: float) -> None:
    chain = LocalChain.create(tmp_path / "chain.json", netuid=3)

    with pytest.raises(ChainError):
        await chain.transfer(sender, dest, amount)
    assert await chain.transfers_to([BOB], since_block=0) == []
