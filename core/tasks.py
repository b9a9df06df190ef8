"""The shared vocabulary of tasks: types, statuses and the customer-facing payloads.

Names and values follow the public API description (shared/reference/gradients-skill.md) exactly: they are
what customers and their agents send and read.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from core.model_store import check_repo_id
from core.stores import StoreError


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

# The URL schemes a dataset may be fetched with; `artifact://` names a key in the validator's artifact store.
DATASET_URL_SCHEMES = ("http", "https", "artifact")
# Extensions of the text files that data preparation reads itself (file_format json, csv or s3), not the hub.
DATASET_FILE_EXTENSIONS = (".json", ".jsonl", ".csv")
MIN_HOURS_TO_COMPLETE = 0.01
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# What a hub dataset id looks like: "name" or "org/name", no leading "/" or ".".
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def url_scheme(source: str) -> str | None:
    """The lower-cased scheme of `source` when it is written as a URL ("scheme://..."), else None."""
    match = _URL_SCHEME.match(source)
    return match.group(1).lower() if match else None


def hub_format_problem(ds_repo: str) -> str | None:
    """Why `ds_repo` cannot be a hub dataset (file_format "hf"): a URL, or a file path of a JSON/CSV file.

    The reason reads after "file_format": "is 'hf' (a hub dataset), but ds_repo is a URL; set file_format to ...".
    """
    if url_scheme(ds_repo) is not None:
        return "is 'hf' (a hub dataset), but ds_repo is a URL; set file_format to json or csv"
    if not _HUB_ID.match(ds_repo) and ds_repo.lower().endswith(DATASET_FILE_EXTENSIONS):
        return "is 'hf' (a hub dataset), but ds_repo is a file path; set file_format to json or csv"
    return None


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
    model_repo: str = Field(min_length=1, max_length=256, description="Base model repository id ('org/name')")
    # Validated even when defaulted: the default "hf" cannot read a URL or a JSON/CSV file named in ds_repo.
    file_format: FileFormat = Field(default=FileFormat.HF, validate_default=True)
    hours_to_complete: float = Field(
        ge=MIN_HOURS_TO_COMPLETE, le=168, allow_inf_nan=False, description="Training time budget in hours"
    )
    field_instruction: str = Field(min_length=1, max_length=256)
    field_input: str | None = Field(default=None, max_length=256)
    # Optional in the reference's schema, but instruct evaluation compares against it: checked even when omitted.
    field_output: str | None = Field(
        default=None, max_length=256, validate_default=True, description="Column of the expected answer (required)"
    )
    field_system: str | None = Field(default=None, max_length=256)
    format: str | None = Field(default=None, max_length=1024)
    no_input_format: str | None = Field(default=None, max_length=1024)
    system_format: str | None = Field(default=None, max_length=1024)
    result_model_name: str | None = Field(default=None, max_length=96, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    yarn_factor: Literal[2, 4, 8, 16, 32] | None = None

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text and jsonb cannot hold NUL: accepted, the task's insert would fail with a 500.
        # (Lone surrogates are refused by pydantic's own string validation.)
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("ds_repo", "model_repo", "field_instruction")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("ds_repo")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = url_scheme(value)
        if scheme is not None and scheme not in DATASET_URL_SCHEMES:
            raise ValueError(f"unsupported URL scheme {scheme!r}; use http(s)")
        return value

    @field_validator("model_repo")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        # The model store refuses any other id, which would fail the task only once data preparation starts.
        try:
            check_repo_id(value)
        except StoreError:
            raise ValueError(
                f"{value[:100]!r} must look like 'org/name' (letters, digits, '.', '_', '-'; no '..')"
            ) from None
        return value

    @field_validator("file_format")
    @classmethod
    def _format_fits_source(cls, value: FileFormat, info: ValidationInfo) -> FileFormat:
        ds_repo = info.data.get("ds_repo")
        if value is FileFormat.HF and isinstance(ds_repo, str) and (problem := hub_format_problem(ds_repo)):
            raise ValueError(problem)
        return value

    @field_validator("hours_to_complete", mode="before")
    @classmethod
    def _a_number_of_hours(cls, value: Any) -> Any:
        # JSON true would otherwise pass as 1 hour.
        if isinstance(value, bool):
            raise ValueError("must be a number of hours, not true or false")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("field_output")
    @classmethod
    def _output_declared(cls, value: str | None) -> str:
        if value is None or not value.strip():
            raise ValueError("required for instruct tasks: name the column that holds the expected answer")
        return value


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
