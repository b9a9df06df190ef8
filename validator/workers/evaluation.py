"""evaluating → success / failure: test loss of every valid submission and of the base model, then scores.

The evaluation runs as a child process (`validator.evaluation.run`) so that model loading and inference never
block the API, and an out-of-memory kill takes down only the child. Submissions the child reports no result for are
scored 0 with a reason rather than failing the whole task.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import shutil
import tempfile
from pathlib import Path

import asyncpg
from pydantic import ValidationError

from core.stores import StoreError
from core.tasks import InstructTextDatasetType, TaskStatus
from validator.db import contestants as contestants_db, tasks as tasks_db
from validator.db.contestants import ContestantRow
from validator.db.tasks import TaskRow
from validator.evaluation.report import EvaluationReport, EvaluationSpec, evaluation_command
from validator.evaluation.run import EXIT_EVALUATION_FAILED
from validator.scoring import SubmissionResult, SubmissionScore, compute_scores, winner
from validator.submission_checks import NO_OP_ADAPTER
from validator.workers.context import WorkerContext
from validator.workers.runner import Stage, fail_task, transition

logger = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20
# A log line of the child: "<date> <time> LEVEL evaluator logger.name: message".
_LOG_LINE = re.compile(r"^\S+ \S+ +[A-Z]+ +\S+ \S+: (?P<message>.*)$")


class EvaluationCrashed(Exception):
    """The evaluation child ended without a report (killed, or a bug); the stage retries."""


def _last_line(text: str) -> str:
    """The child's reason for failing: its last stderr line, without the log prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no message"
    match = _LOG_LINE.match(lines[-1])
    return match["message"] if match else lines[-1]


async def run_evaluation(spec: EvaluationSpec, workdir: Path, *, timeout_seconds: float) -> tuple[int, str, Path]:
    """Run the child; returns (exit status, its stderr, the report path). Kills it on timeout or cancellation."""
    spec_path = workdir / "spec.json"
    out_path = workdir / "report.json"
    await asyncio.to_thread(spec_path.write_text, spec.model_dump_json(), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        *evaluation_command(spec_path, out_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout_seconds)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    text = stderr.decode("utf-8", errors="replace")
    logger.debug("evaluation stderr (last lines):\n%s", "\n".join(text.splitlines()[-STDERR_TAIL_LINES:]))
    return process.returncode, text, out_path


def submission_results(contestants: list[ContestantRow], report: EvaluationReport) -> list[SubmissionResult]:
    results = []
    for contestant in contestants:
        if not contestant.is_valid:
            reason = contestant.invalid_reason or contestant.error or "invalid submission"
            results.append(SubmissionResult(contestant.hotkey, None, False, reason))
            continue
        loss = report.submissions.get(contestant.hotkey)
        if loss is None:
            results.append(SubmissionResult(contestant.hotkey, None, False, "evaluation produced no result"))
        elif loss.error:
            results.append(SubmissionResult(contestant.hotkey, loss.test_loss, False, loss.error))
        elif loss.is_adapter and loss.test_loss is not None and loss.test_loss == report.base.test_loss:
            # Bit-for-bit the base model's loss: the adapter's output is the base model's.
            results.append(SubmissionResult(contestant.hotkey, loss.test_loss, False, NO_OP_ADAPTER))
        else:
            results.append(SubmissionResult(contestant.hotkey, loss.test_loss, True))
    return results


def _format_loss(value: float | None) -> str:
    return "none" if value is None or not math.isfinite(value) else f"{value:.4f}"


async def _submission_dirs(ctx: WorkerContext, contestants: list[ContestantRow]) -> dict[str, Path]:
    dirs = {}
    for contestant in contestants:
        if contestant.is_valid and contestant.output_repository:
            try:
                dirs[contestant.hotkey] = await asyncio.to_thread(
                    ctx.model_store.local_path, contestant.output_repository
                )
            except StoreError as error:
                # Scored as "no result" below; the other submissions still count.
                logger.warning("output of %s cannot be read for evaluation: %s", contestant.hotkey, error)
    return dirs


async def evaluate(ctx: WorkerContext, task: TaskRow, lease_owner: str) -> None:
    async with ctx.pool.acquire() as conn:
        contestants = await contestants_db.list_contestants(conn, task_id=task.task_id)
    try:
        base_model_dir = await asyncio.to_thread(ctx.model_store.local_path, task.model_repo)
    except StoreError as error:
        await fail_task(ctx, task.task_id, lease_owner, f"the base model cannot be read for evaluation: {error}")
        return

    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"god-eval-{task.task_id.hex[:8]}-"))
    try:
        test_rows_file = workdir / "test.json"
        test_bytes = await asyncio.to_thread(ctx.artifact_store.get_bytes, task.test_artifact_key)
        await asyncio.to_thread(test_rows_file.write_bytes, test_bytes)
        spec = EvaluationSpec(
            task_type=task.task_type,
            base_model_dir=base_model_dir,
            submissions=await _submission_dirs(ctx, contestants),
            test_rows_file=test_rows_file,
            dataset_type=InstructTextDatasetType.model_validate(task.dataset_type or {}),
            batch_size=ctx.settings.eval_batch_size,
            max_length=ctx.settings.eval_max_length,
        )
        logger.info("evaluating %d submissions of task %s", len(spec.submissions), task.task_id)
        try:
            returncode, stderr, report_path = await run_evaluation(
                spec, workdir, timeout_seconds=ctx.settings.eval_timeout_seconds
            )
        except TimeoutError:
            await fail_task(
                ctx,
                task.task_id,
                lease_owner,
                f"evaluation did not finish within {ctx.settings.eval_timeout_seconds:g} s",
            )
            return
        if returncode == EXIT_EVALUATION_FAILED:
            await fail_task(
                ctx, task.task_id, lease_owner, f"the base model could not be evaluated: {_last_line(stderr)}"
            )
            return
        if returncode != 0:
            raise EvaluationCrashed(f"evaluation exited with status {returncode}: {_last_line(stderr)}")
        try:
            report = EvaluationReport.model_validate_json(await asyncio.to_thread(report_path.read_bytes))
        except (OSError, ValidationError) as error:
            raise EvaluationCrashed(f"evaluation wrote no usable report: {error}") from error
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)

    scores = compute_scores(submission_results(contestants, report))
    await _finish(ctx, task, lease_owner, contestants, scores, report.base.test_loss)


async def _finish(
    ctx: WorkerContext,
    task: TaskRow,
    lease_owner: str,
    contestants: list[ContestantRow],
    scores: list[SubmissionScore],
    base_test_loss: float | None,
) -> None:
    job_ids = {contestant.hotkey: contestant.job_id for contestant in contestants}
    outputs = {contestant.hotkey: contestant.output_repository for contestant in contestants}
    best = winner(scores)
    base_loss = base_test_loss if base_test_loss is not None and math.isfinite(base_test_loss) else None
    # TODO(#3): require the winner to beat the base model's loss; remove when the reference's rule is settled.
    trained_model_repository = outputs[best.hotkey] if best is not None else None

    async def save(conn: asyncpg.Connection) -> None:
        for score in scores:
            await contestants_db.set_score(
                conn,
                job_id=job_ids[score.hotkey],
                lease_owner=lease_owner,
                test_loss=score.test_loss,
                score=score.score,
                is_valid=score.is_valid,
                invalid_reason=score.invalid_reason,
            )
        await tasks_db.save_results(
            conn,
            task_id=task.task_id,
            lease_owner=lease_owner,
            base_test_loss=base_loss,
            trained_model_repository=trained_model_repository,
        )

    if best is None:
        reasons = "; ".join(f"{score.hotkey}: {score.invalid_reason}" for score in scores)
        reason = f"no submission could be evaluated: {reasons}"
        await transition(ctx, task.task_id, lease_owner, TaskStatus.FAILURE, reason, error=reason, writes=save)
        return
    ranked = sum(1 for score in scores if score.rank is not None)
    await transition(
        ctx,
        task.task_id,
        lease_owner,
        TaskStatus.SUCCESS,
        f"winner {best.hotkey} with test loss {_format_loss(best.test_loss)} (base model {_format_loss(base_loss)}; "
        f"{ranked} of {len(scores)} submissions ranked): {trained_model_repository}",
        writes=save,
    )


STAGE = Stage(name="evaluation", statuses=(TaskStatus.EVALUATING,), handler=evaluate)
