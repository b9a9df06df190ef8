"""preevaluation → evaluating: check each trained output before any model is loaded.

An output is valid when it is in the model store under the name this validator chose for the contestant and holds
weights in safetensors form (a LoRA adapter with `adapter_config.json`, or a full model). Pickle-only weights are
refused: loading a pickle runs code chosen by whoever wrote it. Then `validator.submission_checks` refuses custom
code, outputs that are not a fine-tune of the task's base model and no-ops, and credits identical weights to the
contestant that finished first only.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

from core.logging import log_context
from core.stores import StoreError
from core.tasks import TaskStatus
from validator.db import contestants as contestants_db
from validator.db.contestants import ContestantRow, ContestantStatus
from validator.db.tasks import TaskRow
from validator.submission_checks import (
    SubmissionCheckError,
    WeightsEntry,
    check_submission,
    copy_reasons,
    weights_digest,
)
from validator.workers.context import WorkerContext
from validator.workers.runner import Stage, fail_task, transition

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def check_output_files(folder: Path) -> str | None:
    """Why the folder is not a usable model output, or None when it is."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    has_safetensors = any(path.suffix == ".safetensors" for path in files)
    if not has_safetensors:
        if any(path.suffix in PICKLE_SUFFIXES for path in files):
            return "the output holds only pickle weights (.bin/.pt); publish safetensors instead"
        return "the output holds no *.safetensors weights"
    names = {path.name for path in files}
    if "adapter_config.json" not in names and "config.json" not in names:
        return "the output has weights but neither adapter_config.json nor config.json"
    return None


def check_output(
    ctx: WorkerContext, contestant: ContestantRow, base_dir: Path | None = None
) -> tuple[str | None, str | None]:
    """Blocking (model store I/O): (why the contestant's output is invalid or None, its weights digest or None)."""
    repo = contestant.output_repository
    if not repo:
        return "the trainer reported no output repository", None
    if repo.rsplit("/", 1)[-1] != contestant.expected_repo_name:
        return f"output repository {repo!r} is not named {contestant.expected_repo_name!r} as assigned", None
    try:
        if not ctx.model_store.exists(repo):
            return f"output repository {repo!r} is not in the model store", None
        folder = ctx.model_store.local_path(repo)
    except StoreError as error:
        return f"output repository {repo!r} cannot be read: {error}", None
    problem = check_output_files(folder)
    if problem is None and base_dir is not None:
        problem = check_submission(folder, base_dir)
    if problem is not None:
        return problem, None
    try:
        return None, weights_digest(folder)
    except SubmissionCheckError as error:
        return str(error), None


def _finish_order(contestant: ContestantRow) -> tuple:
    # Earlier training finish first; a missing time sorts last, the hotkey breaks exact ties deterministically.
    far = datetime.max.replace(tzinfo=UTC)
    return (contestant.finished_at or far, contestant.dispatched_at or far, contestant.hotkey)


async def preevaluate(ctx: WorkerContext, task: TaskRow, lease_owner: str) -> None:
    async with ctx.pool.acquire() as conn:
        contestants = await contestants_db.list_contestants(conn, task_id=task.task_id)
    try:
        base_dir = await asyncio.to_thread(ctx.model_store.local_path, task.model_repo)
    except StoreError as error:
        await fail_task(ctx, task.task_id, lease_owner, f"the base model cannot be read for the checks: {error}")
        return

    problems: dict[str, str | None] = {}
    digests: list[WeightsEntry] = []
    reasons = []
    for contestant in contestants:
        if contestant.status is not ContestantStatus.TRAINED:
            reasons.append(f"{contestant.hotkey}: {contestant.error or 'not trained'}")
            continue
        with log_context(hotkey=contestant.hotkey):
            problem, digest = await asyncio.to_thread(check_output, ctx, contestant, base_dir)
        problems[contestant.hotkey] = problem
        if digest is not None:
            digests.append(WeightsEntry(contestant.hotkey, digest, _finish_order(contestant)))
    problems.update(copy_reasons(digests))

    valid = 0
    for contestant in contestants:
        if contestant.hotkey not in problems:
            continue
        problem = problems[contestant.hotkey]
        with log_context(hotkey=contestant.hotkey):
            async with ctx.pool.acquire() as conn:
                await contestants_db.set_validity(
                    conn,
                    job_id=contestant.job_id,
                    lease_owner=lease_owner,
                    is_valid=problem is None,
                    invalid_reason=problem,
                )
            if problem is None:
                valid += 1
            else:
                reasons.append(f"{contestant.hotkey}: {problem}")
                logger.info("output of %s is invalid: %s", contestant.hotkey, problem)

    if valid == 0:
        await fail_task(ctx, task.task_id, lease_owner, "no valid submission: " + "; ".join(reasons))
        return
    await transition(
        ctx,
        task.task_id,
        lease_owner,
        TaskStatus.EVALUATING,
        f"{valid} of {len(contestants)} submissions passed the checks",
    )


STAGE = Stage(name="preevaluation", statuses=(TaskStatus.PREEVALUATION,), handler=preevaluate)
