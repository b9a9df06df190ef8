"""Public auditing pages (no API key): finished tasks with their submissions' results, and the weight sets.

Anyone can recompute the validator's weights from these (`god audit`). Tasks show their type, base model, status,
finish time and, per submission, the miner's hotkey, test loss and score; never the account, the dataset or the
customer's model names. A weight set is published with every input of the weight formula.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from validator.api.deps import DbConn
from validator.api.errors import ApiError, ErrorResponse
from validator.db import auditing as auditing_db, weights as weights_db
from validator.db.auditing import AuditTask
from validator.db.weights import WeightSetRow
from validator.weights import WeightInputs

logger = logging.getLogger(__name__)

PUBLIC_ERRORS = {status: {"model": ErrorResponse} for status in (404, 422, 500)}
router = APIRouter(prefix="/auditing", tags=["auditing"], responses=PUBLIC_ERRORS)

MAX_PAGE = 500


class SubmissionResult(BaseModel):
    hotkey: str
    uid: int | None = Field(description="The miner's uid when it became a contestant")
    test_loss: float | None = Field(description="Loss on the held-out rows; null when there is none or not finite")
    score: float | None = Field(description="The task score the weights use; null when not scored")


class TaskAudit(BaseModel):
    task_id: UUID
    task_type: str
    base_model: str
    status: str
    finished_at: datetime | None
    submissions: list[SubmissionResult]


class TaskAuditPage(BaseModel):
    tasks: list[TaskAudit]
    limit: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page; null on the last page")


class ScoresUrlResponse(BaseModel):
    url: str = Field(description="Where the latest weight set and all its inputs are published")
    weight_set_id: int
    block: int
    created_at: datetime


class WeightEntry(BaseModel):
    uid: int
    hotkey: str | None
    weight: float = Field(description="The weight as computed (normalised, before the chain quantises it)")


class WeightSetResponse(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")

    weight_set_id: int
    block: int
    validator_hotkey: str
    version_key: int
    created_at: datetime
    evaluated_at: datetime
    weights: list[WeightEntry]
    inputs: WeightInputs


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _task_audit(task: AuditTask) -> TaskAudit:
    return TaskAudit(
        task_id=task.task_id,
        task_type=task.task_type,
        base_model=task.base_model,
        status=task.status,
        finished_at=task.finished_at,
        submissions=[
            SubmissionResult(
                hotkey=item.hotkey, uid=item.uid, test_loss=_finite(item.test_loss), score=_finite(item.score)
            )
            for item in task.submissions
        ],
    )


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Tasks per page")]
# PostgreSQL's OFFSET is a bigint: a larger value is a 422 naming the field, not a 500 from the driver.
MAX_OFFSET = 2**62
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Tasks to skip (newest first)")]


def _page(tasks: list[AuditTask], limit: int, offset: int) -> TaskAuditPage:
    return TaskAuditPage(
        tasks=[_task_audit(task) for task in tasks],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(tasks) == limit else None,
    )


@router.get("/tasks", response_model=TaskAuditPage)
async def list_tasks(conn: DbConn, limit: Limit = 100, offset: Offset = 0) -> TaskAuditPage:
    """Finished tasks, newest first, with every submission's hotkey, test loss and score."""
    return _page(await auditing_db.list_finished_tasks(conn, limit=limit, offset=offset), limit, offset)


@router.get("/tasks/hotkey/{hotkey}", response_model=TaskAuditPage)
async def list_tasks_of_hotkey(
    hotkey: Annotated[str, Path(min_length=1, max_length=128)], conn: DbConn, limit: Limit = 100, offset: Offset = 0
) -> TaskAuditPage:
    """Finished tasks that `hotkey` took part in, newest first."""
    tasks = await auditing_db.list_finished_tasks(conn, limit=limit, offset=offset, hotkey=hotkey)
    return _page(tasks, limit, offset)


@router.get("/tasks/{task_id}", response_model=TaskAudit)
async def read_task(task_id: UUID, conn: DbConn) -> TaskAudit:
    """One finished task; a task still in progress is not published yet."""
    task = await auditing_db.get_finished_task(conn, task_id=task_id)
    if task is None:
        raise ApiError(404, f"no finished task {task_id}")
    return _task_audit(task)


def _public_base_url(request: Request) -> str:
    context = getattr(request.app.state, "context", None)
    public_url = getattr(getattr(context, "settings", None), "public_url", None)
    return (public_url or str(request.base_url)).rstrip("/")


@router.get("/scores-url", response_model=ScoresUrlResponse)
async def read_scores_url(request: Request, conn: DbConn) -> ScoresUrlResponse:
    """The URL of the latest weight set with all its inputs (what `god audit` recomputes)."""
    row = await weights_db.latest_auditable_weight_set(conn)
    if row is None:
        raise ApiError(404, "this validator has set no weights yet")
    return ScoresUrlResponse(
        url=f"{_public_base_url(request)}/auditing/weights/{row.weight_set_id}",
        weight_set_id=row.weight_set_id,
        block=row.block,
        created_at=row.created_at,
    )


def _weight_set_response(row: WeightSetRow) -> Response:
    if row.evaluated_at is None or row.weights_by_uid is None:
        raise ApiError(404, f"weight set {row.weight_set_id} was stored before weight sets kept their inputs")
    try:
        inputs = WeightInputs.model_validate(row.inputs)
    except ValidationError as error:
        logger.warning("weight set %d has unreadable inputs: %s", row.weight_set_id, error.errors()[:1])
        raise ApiError(404, f"weight set {row.weight_set_id} has inputs of another format") from None
    hotkey_by_uid = {node.uid: node.hotkey for node in inputs.nodes}
    body = WeightSetResponse(
        weight_set_id=row.weight_set_id,
        block=row.block,
        validator_hotkey=row.validator_hotkey,
        version_key=row.version_key,
        created_at=row.created_at,
        evaluated_at=row.evaluated_at,
        weights=[
            WeightEntry(uid=uid, hotkey=hotkey_by_uid.get(uid), weight=weight)
            for uid, weight in sorted(row.weights_by_uid.items())
        ],
        inputs=inputs,
    )
    # Serialised here rather than by FastAPI so that non-finite scores in the inputs travel as "NaN" strings.
    return Response(content=body.model_dump_json(), media_type="application/json")


@router.get("/weights/latest", response_model=WeightSetResponse)
async def read_latest_weight_set(conn: DbConn) -> Response:
    """The latest weight set with its inputs."""
    row = await weights_db.latest_auditable_weight_set(conn)
    if row is None:
        raise ApiError(404, "this validator has set no weights yet")
    return _weight_set_response(row)


@router.get("/weights/{weight_set_id}", response_model=WeightSetResponse)
async def read_weight_set(weight_set_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: DbConn) -> Response:
    """One weight set: the weights sent (before quantisation), the block, and every input of the formula."""
    row = await weights_db.get_weight_set(conn, weight_set_id=weight_set_id)
    if row is None:
        raise ApiError(404, f"no weight set {weight_set_id}")
    return _weight_set_response(row)
