"""Child-process entry point of the evaluator.

    python -m validator.evaluation.run --spec spec.json --out result.json

The validator's worker runs this as a separate process so that loading models and running them never blocks or
crashes the API process. `spec.json` is an `EvaluationSpec`; the `EvaluationReport` is written to `--out`
atomically. Exit status: 0 report written, 1 the base model could not be evaluated, 2 invalid spec; the reason of
a failure is the last line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from core.logging import setup_logging
from core.tasks import TaskType
from validator.evaluation.report import EvaluationError, EvaluationReport, EvaluationSpec

logger = logging.getLogger(__name__)

EXIT_EVALUATION_FAILED = 1
EXIT_BAD_SPEC = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validator.evaluation.run", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="EvaluationSpec JSON file")
    parser.add_argument("--out", type=Path, required=True, help="where to write the EvaluationReport JSON")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level, role="evaluator")

    try:
        spec = EvaluationSpec.model_validate_json(args.spec.read_bytes())
        test_rows = _read_test_rows(spec.test_rows_file)
    except (OSError, ValidationError, ValueError) as exc:
        logger.error("invalid evaluation spec %s: %s", args.spec, str(exc).replace("\n", "; "))
        return EXIT_BAD_SPEC
    if spec.task_type is not TaskType.INSTRUCT_TEXT:
        # TODO(#3): chat, DPO, GRPO and image evaluation.
        logger.error("task type %s cannot be evaluated yet", spec.task_type.value)
        return EXIT_BAD_SPEC

    import torch

    from validator.evaluation.text_loss import evaluate_instruct

    torch.set_num_threads(_usable_cpus())
    try:
        report = evaluate_instruct(
            base_model_dir=spec.base_model_dir,
            submissions=spec.submissions,
            test_rows=test_rows,
            dataset_type=spec.dataset_type,
            batch_size=spec.batch_size,
            max_length=spec.max_length,
            device=spec.device,
            dtype=getattr(torch, spec.dtype),
        )
    except EvaluationError as exc:
        logger.error("evaluation failed: %s", exc)
        return EXIT_EVALUATION_FAILED
    write_report(report, args.out)
    return 0


def write_report(report: EvaluationReport, path: Path) -> None:
    """Write the report so that a reader sees either no file or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(report.model_dump_json(indent=2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_test_rows(path: Path) -> list[dict]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path} must hold a JSON list of row objects")
    return rows


def _usable_cpus() -> int:
    # The CPUs this process may run on, which a container or taskset can make fewer than the machine has.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


if __name__ == "__main__":
    sys.exit(main())
