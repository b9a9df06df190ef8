"""The training contract that miners' repos implement (compatible with the existing subnet's tournament repos).

A repo holds `dockerfiles/standalone-text-trainer.dockerfile` (and/or the image one). Its entrypoint takes the
arguments built by `training_command_args` and writes its result to `{checkpoints}/{task_id}/{expected_repo_name}`.
Inside Docker the roots are the fixed container paths below. The child-process sandbox of the trainer host cannot
remap absolute paths, so it passes the per-job roots in the environment variables `CHECKPOINTS_DIR_ENV` and
`CACHE_DIR_ENV`; a repo that honours them (the reference trainer does, via `resolve_roots`) runs unchanged in both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TEXT_DOCKERFILE = "dockerfiles/standalone-text-trainer.dockerfile"
IMAGE_DOCKERFILE = "dockerfiles/standalone-image-trainer.dockerfile"

CONTAINER_CHECKPOINTS_DIR = Path("/app/checkpoints")
CONTAINER_CACHE_DIR = Path("/cache")

CHECKPOINTS_DIR_ENV = "GOD_CHECKPOINTS_DIR"
CACHE_DIR_ENV = "GOD_CACHE_DIR"


def model_dir_name(model_repo: str) -> str:
    """`org/name` → `org--name`, the folder name of a base model under `{cache}/models`."""
    return model_repo.replace("/", "--")


@dataclass(frozen=True)
class ContractPaths:
    """Where a job's inputs and output live, under one checkpoints root and one cache root."""

    checkpoints: Path
    cache: Path

    def model_dir(self, model_repo: str) -> Path:
        return self.cache / "models" / model_dir_name(model_repo)

    def dataset_file(self, task_id: str) -> Path:
        return self.cache / "datasets" / f"{task_id}_train_data.json"

    def output_dir(self, task_id: str, expected_repo_name: str) -> Path:
        return self.checkpoints / task_id / expected_repo_name


def resolve_roots() -> ContractPaths:
    """The roots a training script should use: the environment's when set, else the container paths."""
    return ContractPaths(
        checkpoints=Path(os.environ.get(CHECKPOINTS_DIR_ENV, CONTAINER_CHECKPOINTS_DIR)),
        cache=Path(os.environ.get(CACHE_DIR_ENV, CONTAINER_CACHE_DIR)),
    )


def training_command_args(
    *,
    task_id: str,
    model: str,
    dataset: str,
    dataset_type_json: str,
    task_type: str,
    file_format: str,
    expected_repo_name: str,
    hours_to_complete: float,
) -> list[str]:
    """The exact text-task command line of the contract, in the existing subnet's order."""
    return [
        "--task-id", task_id,
        "--model", model,
        "--dataset", dataset,
        "--dataset-type", dataset_type_json,
        "--task-type", task_type,
        "--file-format", file_format,
        "--expected-repo-name", expected_repo_name,
        "--hours-to-complete", f"{hours_to_complete:g}",
    ]  # fmt: skip
