"""`god audit` against a tiny local network: real processes, real embedded PostgreSQL, a real task to success."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import asyncpg
import httpx
from typer.testing import CliRunner

from god.cli import app
from god.localnet.demo import create_task, current_block, instruct_task_payload, wait_for_task, wait_for_weights
from god.localnet.network import LocalNetwork


def wait_for_published_weight_set(network: LocalNetwork, timeout: float = 60.0) -> dict:
    """The validator stores a weight set just after the chain accepted it; wait until its scores URL answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{network.api_url}/auditing/scores-url", timeout=10)
        if response.status_code == 200:
            return response.json()
        time.sleep(0.5)
    raise AssertionError(f"no weight set was published; {network.log_tail('validator')}")


def run_audit(network: LocalNetwork, *extra: str) -> tuple[int, dict]:
    result = CliRunner().invoke(
        app,
        ["audit", "--validator-url", network.api_url, "--data-dir", str(network.root), "--json", *extra],
    )
    assert result.exit_code in (0, 1), (result.exit_code, result.output, result.exception)
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


async def tamper_with_a_published_score(database_url: str, weight_set_id: int, hotkey: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE weight_sets SET inputs = jsonb_set(inputs, $2::text[], '0.001'::jsonb) WHERE weight_set_id = $1",
            weight_set_id,
            ["organic", "0", "scores", hotkey],
        )
    finally:
        await connection.close()


def test_god_audit_reproduces_the_validators_weights_and_catches_a_tampered_input(tmp_path: Path) -> None:
    # One weight set after the task succeeds and none after, so the tampered row stays the latest.
    validator_env = {"WEIGHTS_INTERVAL_SECONDS": "3600"}
    with LocalNetwork(tmp_path / "net", model="tiny", min_dataset_rows=50, validator_env=validator_env) as network:
        network.prepare()
        network.start()
        block = current_block(network)
        task_id = create_task(network, instruct_task_payload(network, hours_to_complete=0.05))
        task = wait_for_task(network, task_id, timeout=600)
        assert task["status"] == "success", (task, network.log_tail("validator"))
        on_chain = wait_for_weights(network, after_block=block)
        pointer = wait_for_published_weight_set(network)

        validator_hotkey = network.nodes["validator"].hotkey
        exit_code, report = run_audit(network, "--validator-hotkey", validator_hotkey)
        best_hotkey = max(on_chain, key=on_chain.__getitem__)
        asyncio.run(tamper_with_a_published_score(network.database_url, pointer["weight_set_id"], best_hotkey))
        tampered_exit_code, tampered = run_audit(network)

    assert exit_code == 0, report["differences"]
    assert report["ok"] and report["tasks_used"] == 1 and report["weight_set_id"] == pointer["weight_set_id"]
    # No burn uid on the local network: the miners' weights sum to 1, exactly as the chain holds them.
    assert math.isclose(sum(on_chain.values()), 1.0, abs_tol=1e-9)
    assert {row["hotkey"]: row["chain"] for row in report["rows"]} == on_chain
    for row in report["rows"]:
        assert row["matches"]
        assert abs(row["recomputed"] - row["published"]) <= 1e-9
        assert abs(row["recomputed"] - row["chain"]) <= 1e-9

    assert tampered_exit_code == 1
    assert not tampered["ok"]
    assert any(best_hotkey in line and task_id in line for line in tampered["differences"]), tampered["differences"]
    assert "the published weights do not follow from the published inputs" in tampered["differences"]
