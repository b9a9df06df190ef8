"""Monitoring a customer's own tasks: list them, read a task's per-submission breakdown, delete a task, and the
public status of the network.

Every task route answers for the caller's account only: another account's task reads as missing (404, never 403, so
that a task id says nothing about whether it exists).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from core.tasks import TaskDetails, TaskStatus, TaskType
from validator.api.deps import AccountId, DbConn
from validator.api.errors import ERROR_RESPONSES, ApiError
from validator.api.routes.tasks import task_details
from validator.db import contestants as contestants_db, ledger as ledger_db, nodes as nodes_db, tasks as tasks_db

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/tasks", tags=["monitoring"], responses=ERROR_RESPONSES)
network_router = APIRouter(prefix="/v1/network", tags=["monitoring"], responses=ERROR_RESPONSES)

MAX_PAGE_SIZE = 100
MAX_PAGE = 10_000

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Tasks per page")]
Page = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page number, from 1 (newest first)")]


def _offset(limit: int, page: int) -> int:
    return (page - 1) * limit


class SubmissionBreakdown(BaseModel):
    hotkey: str = Field(description="The miner's hotkey")
    uid: int | None
    repo: str = Field(description="The training repo the miner announced for this task")
    commit_hash: str = Field(description="The commit of that repo that was trained")
    status: str = Field(description="pending, dispatching, training, trained or failed")
    error: str | None = Field(description="Why the submission failed or was found invalid")
    is_valid: bool | None = Field(description="The pre-evaluation verdict on the trained model; null until checked")
    test_loss: float | None = Field(description="Loss on the held-out rows; null until evaluated (or not finite)")
    score: float | None = Field(description="The submission's score in this task")
    trained_model_repository: str | None = Field(description="Where the trained model was delivered")


class TaskBreakdown(BaseModel):
    task_id: UUID
    status: TaskStatus
    base_test_loss: float | None = Field(description="The base model's loss on the held-out rows, for comparison")
    trained_model_repository: str | None = Field(description="The best submission's model, once the task succeeded")
    submissions: list[SubmissionBreakdown]


class DeleteTaskResponse(BaseModel):
    success: bool = True
    task_id: UUID
    status: TaskStatus = Field(description="The task's status after the deletion (failure when it was unfinished)")
    refunded: float = Field(description="USD given back to the balance (0 when nothing was refunded)")
    deleted_at: datetime


class NetworkStatus(BaseModel):
    tasks_by_status: dict[str, int] = Field(description="Tasks of every customer, by status")
    active_tasks: int = Field(description="Tasks not yet success or failure")
    miners: int = Field(
        description="Registered nodes without a validator permit (miners; trainer hosts registered on the subnet too)"
    )
    trainers: int = Field(description="Trainer hosts this validator sends training jobs to")
    jobs_training: int = Field(description="Training jobs dispatched to trainer hosts and not yet finished")
    max_contestants_per_task: int = Field(description="At most this many miners' repos train for one task")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@router.get("", response_model=list[TaskDetails])
async def list_own_tasks(account_id: AccountId, conn: DbConn, limit: Limit = 100, page: Page = 1) -> list[TaskDetails]:
    """Your tasks (deleted ones excepted), newest first."""
    tasks = await tasks_db.list_account_tasks(conn, account_id=account_id, limit=limit, offset=_offset(limit, page))
    return [task_details(task) for task in tasks]


@router.get("/account/{account_id}", response_model=list[TaskDetails])
async def list_account_tasks(
    account_id: Annotated[UUID, Path(description="Your own account id")],
    caller: AccountId,
    conn: DbConn,
    limit: Limit = 100,
    page: Page = 1,
) -> list[TaskDetails]:
    """The tasks of `account_id`, which must be your own account (any other id reads as 404)."""
    if account_id != caller:
        raise ApiError(404, f"account {account_id} not found")
    tasks = await tasks_db.list_account_tasks(conn, account_id=caller, limit=limit, offset=_offset(limit, page))
    return [task_details(task) for task in tasks]


@router.get("/organic/completed", response_model=list[TaskDetails])
async def list_completed_tasks(
    account_id: AccountId,
    conn: DbConn,
    hours: Annotated[
        float | None, Query(gt=0, le=24 * 3650, allow_inf_nan=False, description="Finished in the last N hours")
    ] = None,
    task_type: Annotated[TaskType | None, Query(description="Only tasks of this type")] = None,
    search_model_name: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="Base model or result model name contains this (any case)"),
    ] = None,
    limit: Limit = 100,
    page: Page = 1,
) -> list[TaskDetails]:
    """Your successful tasks, latest finished first."""
    if search_model_name is not None and "\x00" in search_model_name:
        raise ApiError(422, "search_model_name: must not contain NUL characters", code="validation_error")
    tasks = await tasks_db.list_completed_account_tasks(
        conn,
        account_id=account_id,
        limit=limit,
        offset=_offset(limit, page),
        hours=hours,
        task_type=task_type.value if task_type is not None else None,
        model_name=search_model_name,
    )
    return [task_details(task) for task in tasks]


@router.get("/breakdown/{task_id}", response_model=TaskBreakdown)
async def read_breakdown(task_id: UUID, account_id: AccountId, conn: DbConn) -> TaskBreakdown:
    """Every submission of your task: the miner's hotkey, its status, test loss, score and trained model."""
    task = await tasks_db.get_account_task(conn, task_id=task_id, account_id=account_id)
    if task is None:
        raise ApiError(404, f"task {task_id} not found")
    contestants = await contestants_db.list_contestants(conn, task_id=task_id)
    return TaskBreakdown(
        task_id=task.task_id,
        status=task.status,
        base_test_loss=_finite(task.base_test_loss),
        trained_model_repository=task.trained_model_repository,
        submissions=[
            SubmissionBreakdown(
                hotkey=item.hotkey,
                uid=item.uid,
                repo=item.repo_url,
                commit_hash=item.commit_hash,
                status=str(item.status),
                error=item.error or item.invalid_reason,
                is_valid=item.is_valid,
                test_loss=_finite(item.test_loss),
                score=_finite(item.score),
                trained_model_repository=item.output_repository,
            )
            for item in contestants
        ],
    )


@router.delete("/delete/{task_id}", response_model=DeleteTaskResponse)
async def delete_task(task_id: UUID, account_id: AccountId, conn: DbConn) -> DeleteTaskResponse:
    """Delete your task: it is hidden from then on, and ended when unfinished. A task deleted before its training
    started is refunded in full; once training has started it is not (docs/api.md, "Deleting a task")."""
    async with conn.transaction():
        deleted = await tasks_db.delete_account_task(conn, task_id=task_id, account_id=account_id)
        if deleted is None:
            raise ApiError(404, f"task {task_id} not found")
        # One refund per task (the ledger's unique index): a task already refunded when it failed is not paid twice.
        refunded = None
        if deleted.task.termination_at is None:
            refunded = await ledger_db.refund_task(conn, task_id=task_id)
        if refunded is not None:
            await tasks_db.add_event(
                conn, task_id=task_id, status=deleted.task.status, message=f"refunded ${refunded:.2f}: deleted"
            )
    logger.info(
        "task %s deleted by account %s (%s, refunded $%s)",
        task_id,
        account_id,
        "ended" if deleted.ended else "hidden",
        refunded or 0,
    )
    return DeleteTaskResponse(
        task_id=task_id,
        status=deleted.task.status,
        refunded=float(refunded or Decimal(0)),
        deleted_at=deleted.task.deleted_at or deleted.task.updated_at,
    )


@network_router.get("/status", response_model=NetworkStatus)
async def read_network_status(request: Request, conn: DbConn) -> NetworkStatus:
    """Public: how busy the network is (no account data)."""
    settings = request.app.state.context.settings
    by_status = await tasks_db.count_tasks_by_status(conn)
    nodes = await nodes_db.list_nodes(conn, registered_only=True)
    jobs_training = await contestants_db.count_jobs_training(conn)
    return NetworkStatus(
        tasks_by_status={status.value: by_status.get(status.value, 0) for status in TaskStatus},
        active_tasks=sum(count for status, count in by_status.items() if not TaskStatus(status).is_terminal),
        miners=sum(1 for node in nodes if not node.validator_permit),
        trainers=len(settings.trainers),
        jobs_training=jobs_training,
        max_contestants_per_task=settings.max_contestants,
    )
