"""`god localnet fund` records a TAO transfer on the local network's chain."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bittensor.sp_core import Keypair
from typer.testing import CliRunner

from core.chain.local import LocalChain
from god.localnet.cli import app
from god.localnet.network import NETUID

DEST = Keypair.create_from_uri("//Bob").ss58_address


def test_fund_makes_a_transfer_the_chain_reports(tmp_path: Path) -> None:
    chain = LocalChain.create(tmp_path / "chain.json", netuid=NETUID)

    result = CliRunner().invoke(app, ["fund", DEST, "1.25", "--data-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    transfers = asyncio.run(chain.transfers_to([DEST], since_block=0))
    assert [(transfer.id, transfer.amount_tao) for transfer in transfers] == [(printed["transfer_id"], 1.25)]


def test_fund_explains_bad_input(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["fund", DEST, "1", "--data-dir", str(tmp_path)])
    LocalChain.create(tmp_path / "chain.json", netuid=NETUID)
    bad_address = CliRunner().invoke(app, ["fund", "not-an-address", "1", "--data-dir", str(tmp_path)])

    # Rich wraps long lines to the terminal width.
    assert missing.exit_code == 1 and "localnet up" in " ".join(missing.output.split())
    assert bad_address.exit_code == 1 and "not a valid ss58 address" in " ".join(bad_address.output.split())
