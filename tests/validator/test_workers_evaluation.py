"""Evaluation results → contestant results: a missing or failed result scores 0 alone; a broken base fails."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from core.tasks import TaskStatus
from tests.validator.conftest import Network, ready_task, run_until
from validator.db.contestants import ContestantRow, ContestantStatus
from validator.evaluation.report import EvaluationReport, SubmissionLoss
from validator.submission_checks import NO_OP_ADAPTER
from validator.workers import WorkerContext, evaluation, preevaluation, training
from validator.workers.evaluation import _last_line, submission_results


def contestant(hotkey: str, *, is_valid: bool | None, invalid_reason: str | None = None) -> ContestantRow:
    return ContestantRow(
        task_id=uuid.uuid4(),
        hotkey=hotkey,
        uid=1,
        repo_url="https://example.com/r.git",
        commit_hash="abcdef1",
        job_id=uuid.uuid4(),
        expected_repo_name="out",
        trainer_url=None,
        trainer_hotkey=None,
        status=ContestantStatus.TRAINED,
        output_repository="trainer/out",
        error=None,
        test_loss=None,
        score=None,
        is_valid=is_valid,
        invalid_reason=invalid_reason,
        created_at=datetime.now(UTC),
        dispatched_at=None,
        finished_at=None,
    )


def test_each_contestant_gets_its_own_result_or_reason() -> None:
    report = EvaluationReport(
        base=SubmissionLoss(test_loss=3.0, n_tokens=10),
        submissions={
            "ok": SubmissionLoss(test_loss=2.5, n_tokens=10),
            "broken": SubmissionLoss(test_loss=None, n_tokens=0, error="weights do not match the base model"),
        },
    )
    contestants = [
        contestant("ok", is_valid=True),
        contestant("broken", is_valid=True),
        contestant("killed", is_valid=True),
        contestant("pickled", is_valid=False, invalid_reason="pickle"),
    ]

    results = {result.hotkey: result for result in submission_results(contestants, report)}

    assert (results["ok"].test_loss, results["ok"].is_valid) == (2.5, True)
    assert results["broken"].invalid_reason == "weights do not match the base model"
    assert results["killed"].invalid_reason == "evaluation produced no result"
    assert (results["pickled"].is_valid, results["pickled"].invalid_reason) == (False, "pickle")


def test_an_adapter_with_exactly_the_base_models_loss_is_a_no_op() -> None:
    report = EvaluationReport(
        base=SubmissionLoss(test_loss=3.0, n_tokens=10),
        submissions={
            "noop": SubmissionLoss(test_loss=3.0, n_tokens=10, is_adapter=True),
            "trained": SubmissionLoss(test_loss=2.9, n_tokens=10, is_adapter=True),
        },
    )

    results = {
        result.hotkey: result
        for result in submission_results(
            [contestant("noop", is_valid=True), contestant("trained", is_valid=True)], report
        )
    }

    assert (results["noop"].is_valid, results["noop"].invalid_reason) == (False, NO_OP_ADAPTER)
    assert (results["trained"].is_valid, results["trained"].test_loss) == (True, 2.9)


def test_the_childs_reason_is_its_last_log_message() -> None:
    stderr = (
        "Loading weights: 100%\n"
        "2026-12-03 17:01:02,345 ERROR   evaluator validator.evaluation.run: base model cannot be loaded: bad config\n"
    )

    assert _last_line(stderr) == "base model cannot be loaded: bad config"
    assert _last_line("Killed\n") == "Killed"
    assert _last_line("") == "no message"


async def test_a_base_model_that_cannot_be_evaluated_fails_the_task(
    ctx: WorkerContext, network: Network, dataset_file
) -> None:
    # The placeholder base model has an empty config.json: the child process cannot load it.
    task_id = await ready_task(ctx, dataset_file)
    await run_until(ctx, training.STAGE, task_id, {TaskStatus.PREEVALUATION})
    await run_until(ctx, preevaluation.STAGE, task_id, {TaskStatus.EVALUATING})

    task = await run_until(ctx, evaluation.STAGE, task_id, {TaskStatus.SUCCESS, TaskStatus.FAILURE}, tries=3)

    assert task.status is TaskStatus.FAILURE
    assert task.error.startswith("the base model could not be evaluated: ")
