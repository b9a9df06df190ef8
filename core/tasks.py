"""The shared vocabulary of tasks: types, statuses and the customer-facing payloads.

Names and values follow the public API description (shared/reference/gradients-skill.md) exactly: they are
what customers and their agents send and read.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TaskType(StrEnum):
    INSTRUCT_TEXT = "InstructTextTask"
    CHAT = "ChatTask"
    DPO = "DpoTask"
    GRPO = "GrpoTask"
    IMAGE = "ImageTask"


class TaskStatus(StrEnum):
    PENDING = "pending"
    PREPARING_DATA = "preparing_data"
    LOOKING_FOR_NODES = "looking_for_nodes"
    DELAYED = "delayed"
    READY = "ready"
    TRAINING = "training"
    PREEVALUATION = "preevaluation"
    EVALUATING = "evaluating"
    SUCCESS = "success"
    FAILURE = "failure"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.SUCCESS, TaskStatus.FAILURE)


class FileFormat(StrEnum):
    """Where `ds_repo` points: a hub dataset, a URL (presigned S3 or any https), or a local JSON/CSV path."""

    HF = "hf"
    S3 = "s3"
    JSON = "json"
    CSV = "csv"


# Standard column names that data preparation writes, whatever the customer's columns were called.
# The training contract's `--dataset-type` JSON then names these columns.
INSTRUCT_COLUMNS = ("instruct", "input", "output", "system")


class InstructTextDatasetType(BaseModel):
    """The `--dataset-type` JSON of an instruct task, as the existing subnet's training repos read it."""

    system_prompt: str | None = ""
    system_format: str | None = "{system}"
    field_system: str | None = None
    field_instruction: str = "instruct"
    field_input: str | None = None
    field_output: str | None = "output"
    format: str | None = None
    no_input_format: str | None = None
    field: str | None = None


class NewTaskRequestInstructText(BaseModel):
    """Body of `POST /v1/tasks/create`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    ds_repo: str = Field(min_length=1, max_length=2048, description="Dataset: hub id, URL, local path or artifact key")
    model_repo: str = Field(min_length=1, max_length=256, description="Base model repository id")
    file_format: FileFormat = FileFormat.HF
    hours_to_complete: float = Field(gt=0, le=168, description="Training time budget in hours")
    field_instruction: str = Field(min_length=1, max_length=256)
    field_input: str | None = Field(default=None, max_length=256)
    field_output: str | None = Field(default=None, max_length=256)
    field_system: str | None = Field(default=None, max_length=256)
    format: str | None = Field(default=None, max_length=1024)
    no_input_format: str | None = Field(default=None, max_length=1024)
    system_format: str | None = Field(default=None, max_length=1024)
    result_model_name: str | None = Field(default=None, max_length=96, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    yarn_factor: Literal[2, 4, 8, 16, 32] | None = None

    @field_validator("ds_repo", "model_repo", "field_instruction")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class NewTaskResponse(BaseModel):
    success: bool
    task_id: UUID
    created_at: datetime
    account_id: UUID


class TaskDetails(BaseModel):
    """Body of `GET /v1/tasks/{task_id}`: the detail fields of the reference, plus the failure reason."""

    model_config = ConfigDict(protected_namespaces=())

    id: UUID
    account_id: UUID
    status: TaskStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    hours_to_complete: float
    task_type: TaskType
    result_model_name: str | None
    trained_model_repository: str | None
    base_model_repository: str
    ds_repo: str
    error: str | None = Field(default=None, description="Why the task failed, when status is failure")
