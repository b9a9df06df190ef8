"""`god audit`: recompute a validator's weights from its public auditing pages and compare them with what it published
and with what the chain holds.

1. `GET /auditing/scores-url` names the latest weight set; its JSON holds the weights as computed and every input of
   the formula (evaluation time, parameters, the uid ↔ hotkey map, the task scores it used).
2. The finished tasks are read from `GET /auditing/tasks` (paged) back to the start of the longest window, and the
   organic inputs are rebuilt from them alone; any task or score that differs from the published inputs is reported.
3. `validator.weights.compute_weights` (the validator's own function) recomputes the weights from the rebuilt inputs.
   They must equal the published weights within `--tolerance` (before quantisation), and the chain's latest weights
   of the validator either within the tolerance or exactly as the chain quantises them (u16, largest = 65535).

Exit status: 0 when everything matches, 1 on any difference (each named by uid and hotkey), 2 when the audit could
not be done (validator or chain unreachable, unreadable data).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from core.chain import BittensorChain, Chain, ChainError, LocalChain, WeightsRecord
from core.logging import setup_logging
from validator.api.routes.auditing import TaskAudit, TaskAuditPage, WeightSetResponse
from validator.weights import TaskScores, clean_score, compute_weights

logger = logging.getLogger(__name__)

U16_MAX = 65535
PAGE_SIZE = 500
# The weight setter stores a set right after the chain accepted it; a newer set on chain is looked for this often.
SYNC_ATTEMPTS = 5
SYNC_PAUSE_SECONDS = 1.0
LOCAL_NETUID = 1  # god.localnet.network.NETUID, without importing the local network's machinery

stderr = Console(stderr=True)


class AuditError(Exception):
    """The audit could not be done (not: the weights differ)."""


@dataclass
class AuditRow:
    uid: int
    hotkey: str | None
    recomputed: float
    published: float
    chain: float | None
    matches: bool


@dataclass
class AuditReport:
    validator_url: str
    weight_set_id: int
    block: int
    validator_hotkey: str
    evaluated_at: str
    tasks_used: int
    rows: list[AuditRow] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def quantized_like_chain(weights: dict[int, float]) -> dict[int, float]:
    """The weights as the chain keeps them: largest scaled to 65535, rounded, zeros dropped, read back normalised."""
    top = max(weights.values(), default=0.0)
    if top <= 0:
        return {}
    values = {uid: round(weight / top * U16_MAX) for uid, weight in weights.items()}
    total = sum(values.values())
    return {uid: value / total for uid, value in values.items() if value > 0}


def _close(left: dict[int, float], right: dict[int, float], tolerance: float) -> bool:
    return all(abs(left.get(uid, 0.0) - right.get(uid, 0.0)) <= tolerance for uid in set(left) | set(right))


async def _get_json(client: httpx.AsyncClient, url: str, what: str) -> Any:
    try:
        response = await client.get(url)
    except httpx.HTTPError as error:
        raise AuditError(f"cannot read {what} from {url}: {type(error).__name__}: {error}") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise AuditError(f"{url} answered {response.status_code} for {what}: {message}")
    try:
        return response.json()
    except ValueError:
        raise AuditError(f"{url} sent {what} that is not JSON") from None


async def fetch_weight_set(client: httpx.AsyncClient) -> WeightSetResponse:
    pointer = await _get_json(client, "/auditing/scores-url", "the scores URL")
    url = pointer.get("url") if isinstance(pointer, dict) else None
    if not isinstance(url, str):
        raise AuditError("/auditing/scores-url did not name a URL")
    body = await _get_json(client, url, "the latest weight set")
    try:
        return WeightSetResponse.model_validate(body)
    except ValidationError as error:
        raise AuditError(f"the weight set at {url} is not readable: {error.errors()[:2]}") from None


async def fetch_finished_tasks(client: httpx.AsyncClient, since: datetime, wanted: set[str]) -> dict[str, TaskAudit]:
    """Finished tasks back to `since` (newest first, paged), plus any of `wanted` the pages did not show."""
    tasks: dict[str, TaskAudit] = {}
    offset: int | None = 0
    while offset is not None:
        body = await _get_json(client, f"/auditing/tasks?limit={PAGE_SIZE}&offset={offset}", "the finished tasks")
        try:
            page = TaskAuditPage.model_validate(body)
        except ValidationError as error:
            raise AuditError(f"/auditing/tasks sent an unreadable page: {error.errors()[:2]}") from None
        for task in page.tasks:
            tasks.setdefault(str(task.task_id), task)
        oldest = min((task.finished_at for task in page.tasks if task.finished_at is not None), default=None)
        offset = page.next_offset if oldest is not None and oldest >= since else None
    for task_id in sorted(wanted - set(tasks)):
        response = await client.get(f"/auditing/tasks/{task_id}")
        if response.status_code == 200:
            tasks[task_id] = TaskAudit.model_validate(response.json())
    return tasks


def organic_inputs_from_tasks(tasks: dict[str, TaskAudit], since: datetime, until: datetime) -> tuple[TaskScores, ...]:
    """The formula's organic inputs as the validator builds them: successful tasks in [since, until], scored ones."""
    organic = []
    eligible = [
        task
        for task in tasks.values()
        if task.status == "success" and task.finished_at is not None and since <= task.finished_at <= until
    ]
    for task in sorted(eligible, key=lambda item: (item.finished_at, str(item.task_id))):
        scored = [item for item in task.submissions if item.score is not None]
        if not scored:
            continue
        organic.append(
            TaskScores(
                task_id=str(task.task_id),
                task_type=task.task_type,
                finished_at=task.finished_at,
                scores={item.hotkey: item.score for item in scored},
                uids={item.hotkey: item.uid for item in scored if item.uid is not None},
            )
        )
    return tuple(organic)


def _counted(task: TaskScores) -> dict[str, tuple[float, int | None]]:
    """What of a task the formula can see: each hotkey's positive score and its uid."""
    return {
        hotkey: (clean_score(score), task.uids.get(hotkey))
        for hotkey, score in task.scores.items()
        if clean_score(score) > 0
    }


def compare_inputs(published: tuple[TaskScores, ...], public: tuple[TaskScores, ...]) -> list[str]:
    """Differences between the task scores the validator says it used and those its auditing pages show."""
    differences = []
    published_by_id = {task.task_id: task for task in published if _counted(task)}
    public_by_id = {task.task_id: task for task in public if _counted(task)}
    for task_id in sorted(set(published_by_id) - set(public_by_id)):
        differences.append(f"task {task_id} is in the published inputs but not among the finished tasks it should be")
    for task_id in sorted(set(public_by_id) - set(published_by_id)):
        differences.append(f"task {task_id} finished within the windows but is missing from the published inputs")
    for task_id in sorted(set(published_by_id) & set(public_by_id)):
        mine, theirs = published_by_id[task_id], public_by_id[task_id]
        if mine.task_type != theirs.task_type or mine.finished_at != theirs.finished_at:
            differences.append(
                f"task {task_id}: published as {mine.task_type} finished {mine.finished_at.isoformat()}, the task "
                f"page says {theirs.task_type} finished {theirs.finished_at.isoformat()}"
            )
        mine_counted, theirs_counted = _counted(mine), _counted(theirs)
        for hotkey in sorted(set(mine_counted) | set(theirs_counted)):
            if mine_counted.get(hotkey) != theirs_counted.get(hotkey):
                differences.append(
                    f"task {task_id}, hotkey {hotkey}: published (score, uid) {mine_counted.get(hotkey)}, "
                    f"the task page says {theirs_counted.get(hotkey)}"
                )
    return differences


async def chain_weights_for(
    client: httpx.AsyncClient, chain: Chain, weight_set: WeightSetResponse
) -> tuple[WeightSetResponse, WeightsRecord | None]:
    """The chain's latest weights of the validator, with the published set of the same block when there is one.

    The validator stores a set just after the chain accepted it, so a chain a little ahead is waited for.
    """
    record = None
    for attempt in range(SYNC_ATTEMPTS):
        record = await chain.latest_weights(weight_set.validator_hotkey)
        if record is None or record.block == weight_set.block:
            return weight_set, record
        if attempt + 1 < SYNC_ATTEMPTS:
            await asyncio.sleep(SYNC_PAUSE_SECONDS)
            weight_set = await fetch_weight_set(client)
    return weight_set, record


async def run_audit(
    client: httpx.AsyncClient,
    chain: Chain | None,
    *,
    tolerance: float = 1e-9,
    expected_hotkey: str | None = None,
) -> AuditReport:
    weight_set = await fetch_weight_set(client)
    record: WeightsRecord | None = None
    if chain is not None:
        try:
            weight_set, record = await chain_weights_for(client, chain, weight_set)
        except ChainError as error:
            raise AuditError(f"cannot read the validator's weights on chain: {error}") from None

    published_inputs = weight_set.inputs
    until = published_inputs.evaluated_at
    since = until - timedelta(seconds=published_inputs.params.longest_window_seconds)
    tasks = await fetch_finished_tasks(client, since, {task.task_id for task in published_inputs.organic})
    public_organic = organic_inputs_from_tasks(tasks, since, until)
    # TODO(#6): rebuild the tournament inputs from public tournament pages too; until then the published list is used.
    public_inputs = published_inputs.model_copy(update={"organic": public_organic})
    recomputed = compute_weights(public_inputs)
    published = {entry.uid: entry.weight for entry in weight_set.weights}
    hotkey_by_uid = {node.uid: node.hotkey for node in published_inputs.nodes}

    report = AuditReport(
        validator_url=str(client.base_url),
        weight_set_id=weight_set.weight_set_id,
        block=weight_set.block,
        validator_hotkey=weight_set.validator_hotkey,
        evaluated_at=until.isoformat(),
        tasks_used=len(public_organic),
    )
    if expected_hotkey is not None and weight_set.validator_hotkey != expected_hotkey:
        report.differences.append(
            f"the weight set was published for hotkey {weight_set.validator_hotkey}, not {expected_hotkey}"
        )
    report.differences.extend(compare_inputs(published_inputs.organic, public_organic))
    if not _close(compute_weights(published_inputs), published, tolerance):
        report.differences.append("the published weights do not follow from the published inputs")

    chain_weights: dict[int, float] | None = None
    if chain is None:
        report.notes.append("the chain was not read")
    elif record is None:
        report.differences.append(f"the chain holds no weights of validator {weight_set.validator_hotkey}")
    else:
        chain_weights = dict(zip(record.uids, record.weights, strict=True))
        if record.block != weight_set.block:
            report.differences.append(
                f"the chain's latest weights (block {record.block}) are not the published set (block "
                f"{weight_set.block})"
            )
        for uid, chain_hotkey in zip(record.uids, record.hotkeys, strict=False):
            if chain_hotkey and hotkey_by_uid.get(uid) not in (None, chain_hotkey):
                report.differences.append(
                    f"uid {uid}: the published uid map says hotkey {hotkey_by_uid.get(uid)}, the chain says "
                    f"{chain_hotkey}"
                )
        chain_matches = _close(recomputed, chain_weights, tolerance) or _close(
            quantized_like_chain(recomputed), chain_weights, tolerance
        )
        if not chain_matches:
            report.notes.append("the chain's weights match neither the recomputed weights nor their u16 quantisation")

    quantized = quantized_like_chain(recomputed)
    for uid in sorted(set(recomputed) | set(published) | set(chain_weights or {})):
        mine, theirs = recomputed.get(uid, 0.0), published.get(uid, 0.0)
        on_chain = chain_weights.get(uid, 0.0) if chain_weights is not None else None
        matches = abs(mine - theirs) <= tolerance
        if on_chain is not None:
            matches = matches and (
                abs(mine - on_chain) <= tolerance or abs(quantized.get(uid, 0.0) - on_chain) <= tolerance
            )
        row = AuditRow(uid, hotkey_by_uid.get(uid), mine, theirs, on_chain, matches)
        report.rows.append(row)
        if not matches:
            chain_text = f", chain {on_chain:.12f}" if on_chain is not None else ""
            report.differences.append(
                f"uid {uid} (hotkey {row.hotkey}): recomputed {mine:.12f}, published {theirs:.12f}{chain_text}"
            )
    return report


def open_audit_chain(network: str, netuid: int, chain_path: Path | None, data_dir: Path) -> Chain:
    if network == "local":
        path = chain_path if chain_path is not None else data_dir / "chain.json"
        if not path.exists():
            raise AuditError(
                f"no local chain at {path}: pass --data-dir of a running `god localnet up`, or --chain-path, "
                "or --network finney/test/ws://…"
            )
        return LocalChain(path, netuid)
    return BittensorChain(network, netuid)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.9f}"


def print_report(report: AuditReport, console: Console) -> None:
    console.print(
        f"weight set {report.weight_set_id} of validator {report.validator_hotkey} at block {report.block} "
        f"(evaluated {report.evaluated_at}, {report.tasks_used} tasks)"
    )
    table = Table()
    for column in ("uid", "hotkey", "recomputed", "published", "chain", ""):
        table.add_column(column)
    for row in report.rows:
        table.add_row(
            str(row.uid),
            row.hotkey or "—",
            _fmt(row.recomputed),
            _fmt(row.published),
            _fmt(row.chain),
            "ok" if row.matches else "[red]DIFFERS[/red]",
        )
    console.print(table)
    for note in report.notes:
        console.print(f"note: {note}")
    for difference in report.differences:
        console.print(f"[red]difference:[/red] {difference}")
    console.print("[green]the weights match[/green]" if report.ok else "[red]the weights differ[/red]")


async def _audit(
    validator_url: str, chain: Chain, *, tolerance: float, expected_hotkey: str | None, http_timeout: float
) -> AuditReport:
    async with httpx.AsyncClient(base_url=validator_url.rstrip("/"), timeout=http_timeout) as client:
        return await run_audit(client, chain, tolerance=tolerance, expected_hotkey=expected_hotkey)


def audit(
    validator_url: str = typer.Option(
        ..., "--validator-url", help="The validator's public API, e.g. http://1.2.3.4:9001"
    ),
    network: str = typer.Option("local", "--network", help="finney, test, local (a `god localnet`) or a ws:// URL."),
    netuid: int = typer.Option(LOCAL_NETUID, "--netuid", help="The subnet (the local network's is 1)."),
    chain_path: Path | None = typer.Option(
        None, "--chain-path", help="The local chain file (default DATA_DIR/chain.json)."
    ),
    data_dir: Path = typer.Option(Path(".localnet"), "--data-dir", help="The local network's directory."),
    validator_hotkey: str | None = typer.Option(
        None, "--validator-hotkey", help="Also check that the weight set is this validator's."
    ),
    tolerance: float = typer.Option(1e-9, "--tolerance", help="Largest allowed difference per weight."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per HTTP request."),
) -> None:
    """Recompute the validator's latest weights from its public auditing pages; exit 0 on a match, 1 on a difference."""
    setup_logging("WARNING", role="audit")
    try:
        chain = open_audit_chain(network, netuid, chain_path, data_dir)
        report = asyncio.run(
            _audit(validator_url, chain, tolerance=tolerance, expected_hotkey=validator_hotkey, http_timeout=timeout)
        )
    except (AuditError, ChainError) as error:
        stderr.print(f"[red]audit failed: {error}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
    else:
        print_report(report, Console())
    raise typer.Exit(0 if report.ok else 1)
