"""Wire format between a validator and a trainer host (every request is btauth/1-signed by the validator)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from core.tasks import TaskType

JOBS_PATH = "/v1/jobs"
CAPACITY_PATH = "/v1/capacity"


class JobStatus(StrEnum):
    QUEUED = "queued"
    PREPARING = "preparing"  # cloning the repo, fetching the base model and dataset
    RUNNING = "running"
    PUBLISHING = "publishing"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCESS, JobStatus.FAILURE, JobStatus.CANCELLED)


class TrainingJobRequest(BaseModel):
    """`POST /v1/jobs`. `job_id` is the idempotency key: posting the same id again returns the existing job."""

    model_config = ConfigDict(protected_namespaces=())

    job_id: UUID
    task_id: UUID
    hotkey: str = Field(description="The contestant whose repo is trained")
    repo_url: str = Field(description="git URL (https:// or file://) of the training repo")
    commit_hash: str = Field(pattern=r"^[0-9a-fA-F]{7,64}$")
    task_type: TaskType
    model_repo: str
    dataset_url: str = Field(description="Signed URL of the prepared training data (JSON list of rows)")
    dataset_type: dict[str, Any]
    file_format: str = "s3"
    expected_repo_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
    hours_to_complete: float = Field(gt=0)
    time_limit_seconds: float = Field(gt=0, description="Wall-clock limit of the training run itself")


class TrainingJobStatus(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    job_id: UUID
    task_id: UUID
    hotkey: str
    status: JobStatus
    error: str | None = None
    output_repository: str | None = Field(default=None, description="Model-store repo id of the published output")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    log_tail: list[str] = Field(default_factory=list)


class TrainerCapacity(BaseModel):
    slots_total: int
    slots_free: int
    gpus: list[dict[str, Any]] = Field(default_factory=list)
