"""End-to-end runs of the local network: real processes, real embedded PostgreSQL, real training of a tiny model."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from god.localnet.demo import (
    create_task,
    current_block,
    get_task,
    instruct_task_payload,
    summarize,
    wait_for_task,
    wait_for_weights,
)
from god.localnet.network import LocalNetwork, MinerSpec, mint_key_for_running_network

ROOT = Path(__file__).resolve().parents[2]

FAILING_SCRIPT = "import sys\nprint('Error: this training repo always fails', file=sys.stderr)\nsys.exit(3)\n"
SLEEPING_SCRIPT = "import time\ntime.sleep(3600)\n"


def training_runs_per_contestant(network: LocalNetwork) -> Counter[tuple[str, str]]:
    """How many jobs the trainer host accepted per (task, hotkey), from the job records it keeps on disk.

    The host starts a job once per job id (a repeated POST returns the existing job), so a validator that dispatched
    a contestant twice would show up here as two records for one contestant.
    """
    records = (network.root / "nodes" / "trainer-1" / "jobs").glob("*/job.json")
    requests = [json.loads(record.read_text())["request"] for record in records]
    return Counter((request["task_id"], request["hotkey"]) for request in requests)


def assert_weights_follow_losses(summary: dict) -> None:
    weights = summary["weights"]
    assert math.isclose(sum(weights.values()), 1.0, abs_tol=1e-6)
    scored = [s for s in summary["submissions"] if s["test_loss"] is not None]
    best = min(scored, key=lambda s: s["test_loss"])
    assert weights[best["hotkey"]] == max(weights.values())


def test_tiny_network_runs_an_instruct_task_to_success_and_sets_weights(tmp_path: Path) -> None:
    with LocalNetwork(tmp_path / "net", model="tiny", min_dataset_rows=50) as network:
        network.prepare()
        network.start()
        block = current_block(network)
        task_id = create_task(network, instruct_task_payload(network, hours_to_complete=0.05))
        task = wait_for_task(network, task_id, timeout=600)
        assert task["status"] == "success", (task, network.log_tail("validator"))
        weights = wait_for_weights(network, after_block=block)
        summary = summarize(network, task, weights)

    assert summary["trained_model_repository"] in {s["trained_model_repository"] for s in summary["submissions"]}
    assert len(summary["submissions"]) == 2
    assert all(s["test_loss"] is not None and math.isfinite(s["test_loss"]) for s in summary["submissions"])
    assert summary["base_test_loss"] is not None
    assert_weights_follow_losses(summary)


def test_validator_killed_during_training_finishes_the_task_without_dispatching_a_job_twice(tmp_path: Path) -> None:
    with LocalNetwork(tmp_path / "net", model="tiny", min_dataset_rows=50) as network:
        network.prepare()
        network.start()
        task_id = create_task(network, instruct_task_payload(network, hours_to_complete=0.05))
        wait_for_task(network, task_id, until=lambda task: task["status"] == "training", timeout=300, poll_seconds=0.1)

        network.kill_node("validator", signal.SIGKILL)
        network.start_node("validator")

        task = wait_for_task(network, task_id, timeout=600)
        assert task["status"] == "success", (task, network.log_tail("validator"))
        runs = training_runs_per_contestant(network)

    assert len(runs) == 2
    assert set(runs.values()) == {1}


def test_failing_and_overrunning_repos_fail_their_submissions_and_the_task_still_succeeds(tmp_path: Path) -> None:
    miners = [
        MinerSpec("good", {"learning_rate": 1e-3}),
        MinerSpec("crashing", extra_files={"scripts/text_trainer.py": FAILING_SCRIPT}),
        MinerSpec("overrunning", extra_files={"scripts/text_trainer.py": SLEEPING_SCRIPT}),
    ]
    with LocalNetwork(tmp_path / "net", model="tiny", miners=miners, min_dataset_rows=50, trainer_slots=3) as network:
        network.prepare()
        network.start()
        # 0.01 h = 36 s: the sleeping repo is killed at its time limit, the good one finishes well before.
        task_id = create_task(network, instruct_task_payload(network, hours_to_complete=0.01))
        task = wait_for_task(network, task_id, timeout=600)
        summary = summarize(network, task, {})
        hotkeys = {name: network.nodes[name].hotkey for name in ("good", "crashing", "overrunning")}

    assert task["status"] == "success", summary
    by_hotkey = {s["hotkey"]: s for s in summary["submissions"]}
    assert by_hotkey[hotkeys["good"]]["test_loss"] is not None
    assert task["trained_model_repository"] == by_hotkey[hotkeys["good"]]["trained_model_repository"]
    assert "exit" in by_hotkey[hotkeys["crashing"]]["error"].lower()
    assert "time limit" in by_hotkey[hotkeys["overrunning"]]["error"].lower()
    assert by_hotkey[hotkeys["crashing"]]["score"] in (0, None)


def test_bad_dataset_column_fails_the_task_with_a_reason_naming_it(tmp_path: Path) -> None:
    with LocalNetwork(tmp_path / "net", model="tiny", min_dataset_rows=50) as network:
        network.prepare()
        network.start()
        payload = instruct_task_payload(network) | {"field_instruction": "prompt_text"}
        task = wait_for_task(network, create_task(network, payload), timeout=120)
        too_small = instruct_task_payload(network)
        network.dataset_path.with_name("small.json").write_text(
            json.dumps([{"question": f"q{i}", "answer": "a"} for i in range(3)])
        )
        too_small["ds_repo"] = str(network.dataset_path.with_name("small.json"))
        small_task = wait_for_task(network, create_task(network, too_small), timeout=120)
        assert get_task(network, small_task["id"])["status"] == "failure"

        # A second account's key (minted for the running network) cannot read the first account's task.
        other_key = mint_key_for_running_network(network.root, "other-customer")
        response = httpx.get(
            f"{network.api_url}/v1/tasks/{task['id']}", headers={"Authorization": f"Bearer {other_key}"}, timeout=30
        )
        assert response.status_code == 404

    assert task["status"] == "failure"
    assert "prompt_text" in task["error"]
    assert small_task["status"] == "failure"
    assert "3 usable rows" in small_task["error"] and "at least 50" in small_task["error"]


@pytest.mark.slow
def test_demo_with_smollm2_beats_the_base_model_and_sets_weights(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    completed = subprocess.run(
        [sys.executable, "-m", "god", "localnet", "demo", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    expected = {"task_id", "task_type", "status", "base_model", "base_test_loss", "submissions",
                "trained_model_repository", "weights"}  # fmt: skip
    assert expected <= set(summary)
    assert summary["status"] == "success"
    assert len(summary["submissions"]) == 2
    for submission in summary["submissions"]:
        assert {"hotkey", "repo", "commit", "trained_model_repository", "test_loss", "score"} <= set(submission)
        assert submission["test_loss"] < summary["base_test_loss"]
    assert_weights_follow_losses(summary)

    # A second preparation reuses the converted model instead of converting it again.
    model_file = data_dir / "model_store" / "HuggingFaceTB" / "SmolLM2-135M-Instruct" / "model.safetensors"
    before = model_file.stat().st_mtime_ns
    network = LocalNetwork(data_dir)
    try:
        network.prepare()
    finally:
        network.stop()
    assert model_file.stat().st_mtime_ns == before
