"""Evaluation of submissions on the held-out rows.

The spec/report models and `evaluation_command` are light; `evaluate_instruct` (torch, transformers) is imported
on first use so that the API process does not pay for it.
"""

from typing import Any

from validator.evaluation.report import (
    EvaluationError,
    EvaluationReport,
    EvaluationSpec,
    SubmissionLoss,
    evaluation_command,
)

__all__ = [
    "EvaluationError",
    "EvaluationReport",
    "EvaluationSpec",
    "SubmissionLoss",
    "evaluate_instruct",
    "evaluation_command",
]


def __getattr__(name: str) -> Any:
    if name == "evaluate_instruct":
        from validator.evaluation.text_loss import evaluate_instruct

        return evaluate_instruct
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
