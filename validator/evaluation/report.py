"""What the evaluator is asked to do and what it answers: the JSON files between the worker and the child process.

These models import neither torch nor transformers, so the API process can build a spec and read a report cheaply.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.tasks import InstructTextDatasetType, TaskType


class EvaluationError(Exception):
    """The evaluation as a whole cannot run (the base model or tokenizer does not load, no test rows)."""


class SubmissionLoss(BaseModel):
    """One model's score: the mean completion-token loss on the test rows, or why there is none."""

    test_loss: float | None
    n_tokens: int = Field(description="Completion tokens scored (end-of-sequence tokens included)")
    error: str | None = None
    is_adapter: bool = False


class EvaluationReport(BaseModel):
    base: SubmissionLoss
    submissions: dict[str, SubmissionLoss]


class EvaluationSpec(BaseModel):
    """The `--spec` file of `python -m validator.evaluation.run`."""

    task_type: TaskType
    base_model_dir: Path
    submissions: dict[str, Path] = Field(description="Submission key (e.g. hotkey) -> model or adapter directory")
    test_rows_file: Path = Field(description="JSON list of prepared test rows")
    dataset_type: InstructTextDatasetType
    batch_size: int = Field(default=8, ge=1)
    max_length: int = Field(default=512, ge=2)
    device: str | None = Field(default=None, description="cpu, cuda, cuda:1 ...; the first GPU if any when absent")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


def evaluation_command(spec_path: Path, out_path: Path) -> list[str]:
    """The child-process command line that evaluates `spec_path` and writes the report to `out_path`.

    Exit status 0: the report is written (a submission that failed carries its own `error`). 1: the base model
    could not be evaluated. 2: the spec is invalid. The reason of a non-zero exit is the last line on stderr.
    """
    return [sys.executable, "-m", "validator.evaluation.run", "--spec", str(spec_path), "--out", str(out_path)]
