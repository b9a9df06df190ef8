"""`god localnet demo`: one real fine-tuning task, from the public API to weights on the local chain.

The demo acts as a customer would: it creates the task over HTTP with an API key, polls it, and reads the
per-submission results from `GET /v1/tasks/breakdown/{task_id}`. The weights come from the chain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from core.chain.local import LocalChain
from core.tasks import TaskStatus, TaskType
from god.localnet.network import NETUID, LocalNetwork

TASK_TIMEOUT_SECONDS = 1800.0
WEIGHTS_TIMEOUT_SECONDS = 120.0


class DemoError(RuntimeError):
    pass


def instruct_task_payload(network: LocalNetwork, *, hours_to_complete: float = 0.25) -> dict[str, Any]:
    assert network.base_model_repo is not None
    return {
        "ds_repo": str(network.dataset_path),
        "model_repo": network.base_model_repo,
        "file_format": "json",
        "hours_to_complete": hours_to_complete,
        "field_instruction": "question",
        "field_output": "answer",
        "result_model_name": "localnet-chatterbot-instruct",
    }


def create_task(network: LocalNetwork, payload: dict[str, Any]) -> str:
    response = httpx.post(
        f"{network.api_url}/v1/tasks/create",
        json=payload,
        headers={"Authorization": f"Bearer {network.api_key}"},
        timeout=30,
    )
    if response.status_code != 200:
        raise DemoError(f"task creation was refused ({response.status_code}): {response.text}")
    return str(response.json()["task_id"])


def get_task(network: LocalNetwork, task_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{network.api_url}/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {network.api_key}"}, timeout=30
    )
    response.raise_for_status()
    return dict(response.json())


def wait_for_task(
    network: LocalNetwork,
    task_id: str,
    *,
    on_status: Callable[[str, dict[str, Any]], None] | None = None,
    until: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = TASK_TIMEOUT_SECONDS,
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    """Poll the task until `until(task)` holds (default: a terminal status); report each new status."""
    stop = until or (lambda task: TaskStatus(task["status"]).is_terminal)
    deadline = time.monotonic() + timeout
    last_status = None
    while time.monotonic() < deadline:
        try:
            task = get_task(network, task_id)
        except httpx.HTTPError:
            # The validator may be restarting (the crash test kills it); keep polling until the deadline.
            time.sleep(poll_seconds)
            continue
        if task["status"] != last_status:
            last_status = task["status"]
            if on_status:
                on_status(last_status, task)
        if stop(task):
            return task
        time.sleep(poll_seconds)
    raise DemoError(f"task {task_id} did not finish within {timeout:.0f} s (last status {last_status})")


def get_breakdown(network: LocalNetwork, task_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{network.api_url}/v1/tasks/breakdown/{task_id}",
        headers={"Authorization": f"Bearer {network.api_key}"},
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json())


def wait_for_weights(network: LocalNetwork, *, after_block: int, timeout: float = WEIGHTS_TIMEOUT_SECONDS) -> dict:
    """Wait for the validator's first weight set after `after_block`; return {hotkey: weight}."""
    chain = LocalChain(network.chain_path, NETUID)
    validator_hotkey = network.nodes["validator"].hotkey
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = asyncio.run(chain.latest_weights(validator_hotkey))
        if record is not None and record.block > after_block:
            return {hotkey: weight for hotkey, weight in zip(record.hotkeys, record.weights, strict=True)}
        time.sleep(0.5)
    raise DemoError(f"the validator set no weights within {timeout:.0f} s; see {network.nodes['validator'].log_path}")


def summarize(network: LocalNetwork, task: dict[str, Any], weights: dict[str, float]) -> dict[str, Any]:
    """The demo's JSON object (documented in docs/localnet.md)."""
    breakdown = get_breakdown(network, str(task["id"]))
    submissions = sorted(
        breakdown["submissions"],
        key=lambda row: (row["test_loss"] is None, row["test_loss"] or 0.0, row["hotkey"]),
    )
    return {
        "task_id": str(task["id"]),
        "task_type": task.get("task_type", TaskType.INSTRUCT_TEXT.value),
        "status": task["status"],
        "base_model": network.base_model_repo,
        "base_test_loss": breakdown["base_test_loss"],
        "submissions": [
            {
                "hotkey": row["hotkey"],
                "repo": row["repo"],
                "commit": row["commit_hash"],
                "trained_model_repository": row["trained_model_repository"],
                "test_loss": row["test_loss"],
                "score": row["score"],
                **({"error": row["error"]} if row["error"] else {}),
            }
            for row in submissions
        ],
        "trained_model_repository": task.get("trained_model_repository"),
        "weights": weights,
        "error": task.get("error"),
    }


def current_block(network: LocalNetwork) -> int:
    return asyncio.run(LocalChain(network.chain_path, NETUID).current_block())
