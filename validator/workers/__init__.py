"""Task lifecycle workers: pending → preparing_data → looking_for_nodes → ready → training → preevaluation →
evaluating → success / failure, each stage a loop that claims one task at a time under a lease."""

from validator.workers.context import WorkerContext
from validator.workers.group import STAGES, WorkerGroup
from validator.workers.runner import Stage, run_stage_once

__all__ = ["STAGES", "Stage", "WorkerContext", "WorkerGroup", "run_stage_once"]
