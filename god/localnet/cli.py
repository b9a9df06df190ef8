"""`god localnet demo` and `god localnet up`."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from core.logging import setup_logging
from god.localnet.demo import (
    DemoError,
    create_task,
    current_block,
    instruct_task_payload,
    summarize,
    wait_for_task,
    wait_for_weights,
)
from god.localnet.network import LocalNetwork, LocalNetworkError, mint_key_for_running_network

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
stderr = Console(stderr=True)
stdout = Console()

DATA_DIR_OPTION = typer.Option(Path(".localnet"), "--data-dir", help="Where the local network keeps its state.")
MODEL_OPTION = typer.Option("smollm2", "--model", help="smollm2 (SmolLM2-135M-Instruct) or tiny (random, for tests).")


def _check_model(model: str) -> None:
    # The one-off model conversion draws progress bars over the demo's own status line.
    os.environ.setdefault("TQDM_DISABLE", "1")
    if model not in ("smollm2", "tiny"):
        stderr.print(f"[red]--model must be smollm2 or tiny, not {model!r}[/red]")
        raise typer.Exit(2)


@app.command()
def demo(
    data_dir: Path = DATA_DIR_OPTION,
    model: str = MODEL_OPTION,
    task_type: str = typer.Option("instruct", "--task-type", help="instruct (other types: issue #3)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    hours_to_complete: float = typer.Option(0.25, help="The task's training budget in hours."),
) -> None:
    """Run one real fine-tuning task end to end on a fresh local network.

    Exits 0 only if the task succeeded and the validator set weights.
    """
    _check_model(model)
    if task_type != "instruct":
        # TODO(#3): chat, dpo, grpo and image demos.
        stderr.print(f"[red]--task-type {task_type!r} is not supported yet; use instruct[/red]")
        raise typer.Exit(2)
    setup_logging("WARNING", role="localnet")
    started = time.monotonic()
    network = LocalNetwork(data_dir, model=model)
    try:
        with stderr.status("preparing the local network (model, data, keys, chain, database)…"):
            network.prepare()
        with stderr.status("starting the trainer host, two miners and the validator…"):
            network.start()
        stderr.print(f"validator API at {network.api_url}")
        block_before = current_block(network)
        task_id = create_task(network, instruct_task_payload(network, hours_to_complete=hours_to_complete))
        stderr.print(f"created task {task_id}")

        def report(status: str, task: dict[str, Any]) -> None:
            stderr.print(f"  [{time.monotonic() - started:6.1f} s] {status}")

        task = wait_for_task(network, task_id, on_status=report)
        weights: dict[str, float] = {}
        if task["status"] == "success":
            with stderr.status("waiting for the validator to set weights…"):
                weights = wait_for_weights(network, after_block=block_before)
        summary = summarize(network, task, weights)
    except (LocalNetworkError, DemoError) as error:
        stderr.print(f"[red]demo failed: {error}[/red]")
        raise typer.Exit(1) from error
    finally:
        network.stop()

    summary["seconds"] = round(time.monotonic() - started, 1)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        _print_summary(summary)
    ok = summary["status"] == "success" and bool(summary["weights"])
    raise typer.Exit(0 if ok else 1)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return "—" if value is None else str(value)


def _print_summary(summary: dict[str, Any]) -> None:
    stdout.print(f"\ntask {summary['task_id']} ({summary['task_type']}): [bold]{summary['status']}[/bold]")
    if summary.get("error"):
        stdout.print(f"reason: {summary['error']}")
    stdout.print(f"base model {summary['base_model']}: test loss {_fmt(summary['base_test_loss'])}")
    table = Table(title="submissions")
    for column in ("hotkey", "commit", "test loss", "score", "weight", "trained model"):
        table.add_column(column)
    for row in summary["submissions"]:
        table.add_row(
            row["hotkey"][:12] + "…",
            (row["commit"] or "")[:10],
            _fmt(row["test_loss"]),
            _fmt(row["score"]),
            _fmt(summary["weights"].get(row["hotkey"])),
            row["trained_model_repository"] or row.get("error") or "—",
        )
    stdout.print(table)
    stdout.print(f"delivered model: {summary['trained_model_repository']}")
    stdout.print(f"weights sum to {sum(summary['weights'].values()):.6f}; took {summary['seconds']} s")


@app.command()
def up(data_dir: Path = DATA_DIR_OPTION, model: str = MODEL_OPTION) -> None:
    """Start a local network and keep it running; prints the API URL and an API key for curl. Ctrl-C stops it."""
    _check_model(model)
    setup_logging("WARNING", role="localnet")
    network = LocalNetwork(data_dir, model=model)
    try:
        with stderr.status("preparing and starting the local network…"):
            network.prepare()
            network.start()
    except LocalNetworkError as error:
        network.stop()
        stderr.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    # Plain prints: rich would wrap the curl line inside its quotes when the output is not a terminal.
    payload = json.dumps(instruct_task_payload(network))
    print(f"API URL: {network.api_url}")
    print(f"API key: {network.api_key}")
    print(f"dataset: {network.dataset_path} (columns question, answer)   base model: {network.base_model_repo}")
    print(
        f"try: curl -s -X POST {network.api_url}/v1/tasks/create -H 'Authorization: Bearer {network.api_key}' "
        f"-H 'Content-Type: application/json' -d '{payload}'"
    )
    print(f"more API keys: god localnet mint-api-key --data-dir {data_dir} --account NAME")
    print(f"logs: {network.root / 'logs'}   (Ctrl-C to stop; the next `up` or `demo` starts from a clean state)")
    sys.stdout.flush()
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        network.stop()
        logging.getLogger(__name__).info("local network stopped")


# The local chain keeps no balances; transfers come from the well-known development account, as on a subtensor
# localnet where //Alice holds the genesis funds.
FAUCET_URI = "//Alice"


@app.command("fund")
def fund(
    address: str = typer.Argument(..., help="The ss58 address to send TAO to (an account's deposit address)."),
    tao: float = typer.Argument(..., help="How much TAO to send."),
    data_dir: Path = DATA_DIR_OPTION,
) -> None:
    """Send TAO to an address on the running local network's chain; the validator credits deposits it sees."""
    import asyncio

    from bittensor.sp_core import Keypair

    from core.chain import ChainError
    from core.chain.local import LocalChain
    from god.localnet.network import NETUID

    setup_logging("WARNING", role="localnet")
    chain_path = data_dir / "chain.json"
    if not chain_path.exists():
        stderr.print(f"[red]no local network in {data_dir}: start one with `god localnet up`[/red]")
        raise typer.Exit(1)
    faucet = Keypair.create_from_uri(FAUCET_URI).ss58_address
    try:
        transfer = asyncio.run(LocalChain(chain_path, NETUID).transfer(faucet, address, tao))
    except ChainError as error:
        stderr.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    print(json.dumps({"transfer_id": transfer.id, "block": transfer.block, "to": address, "amount_tao": tao}))


@app.command("mint-api-key")
def mint_api_key(
    data_dir: Path = DATA_DIR_OPTION,
    account: str = typer.Option(..., "--account", help="The account the key belongs to (created when new)."),
) -> None:
    """Print a new API key for an account of a running local network (`god localnet up`)."""
    setup_logging("WARNING", role="localnet")
    try:
        print(mint_key_for_running_network(data_dir, account))
    except LocalNetworkError as error:
        stderr.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
