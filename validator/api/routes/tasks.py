"""Customer tasks: create an instruct-text task and read its details."""

from __future__ import annotations

import logging
import secrets
import uuid
from uuid import UUID

from fastapi import APIRouter, Request

from core.tasks import NewTaskRequestInstructText, NewTaskResponse, TaskDetails, TaskType
from validator.api.deps import AccountId, DbConn
from validator.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from validator.api.routes.prices import text_quote
from validator.db import ledger as ledger_db, tasks as tasks_db
from validator.db.tasks import TaskRow

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=ERROR_RESPONSES)


def task_details(task: TaskRow) -> TaskDetails:
    return TaskDetails(
        id=task.task_id,
        account_id=task.account_id,
        status=task.status,
        created_at=task.created_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        hours_to_complete=task.hours_to_complete,
        task_type=task.task_type,
        result_model_name=task.result_model_name,
        trained_model_repository=task.trained_model_repository,
        base_model_repository=task.model_repo,
        ds_repo=task.ds_repo,
        error=task.error,
    )


def insufficient_balance(error: ledger_db.InsufficientBalance) -> ApiError:
    return ApiError(
        402,
        f"insufficient balance: {error}. Add funds by sending TAO to your account's deposit address (its "
        "public_key from POST /account-get-public-key); the balance is credited once the transfer is seen on chain",
    )


@router.post("/create", response_model=NewTaskResponse, responses={402: {"model": ErrorResponse}})
async def create_task_instruct_text(
    body: NewTaskRequestInstructText, account_id: AccountId, conn: DbConn, request: Request
) -> NewTaskResponse:
    """Create an instruct-text fine-tuning task and charge its price (`POST /v1/tasks/text/check_price`); poll
    `GET /v1/tasks/{task_id}` for its progress."""
    settings = request.app.state.context.settings
    price = None if settings.free_tasks else (await text_quote(request, body.model_repo, body.hours_to_complete))
    task_id = uuid.uuid4()
    async with conn.transaction():
        if price is not None:
            # Charged before the insert, in its transaction: the account row stays locked until the commit.
            try:
                await ledger_db.charge_for_task(conn, account_id=account_id, task_id=task_id, price_usd=price.price_usd)
            except ledger_db.InsufficientBalance as error:
                raise insufficient_balance(error) from None
        task = await tasks_db.insert_task(
            conn,
            task_id=task_id,
            account_id=account_id,
            task_type=TaskType.INSTRUCT_TEXT.value,
            model_repo=body.model_repo,
            ds_repo=body.ds_repo,
            file_format=body.file_format.value,
            hours_to_complete=body.hours_to_complete,
            request=body.model_dump(mode="json"),
            result_model_name=body.result_model_name,
            # Each task's own seed picks its held-out rows, so they cannot be rebuilt from the public dataset.
            split_seed=secrets.randbits(62),
        )
    logger.info(
        "task %s created (%s, %s) for account %s, charged $%s",
        task.task_id,
        task.task_type,
        task.model_repo,
        account_id,
        price.price_usd if price is not None else 0,
    )
    return NewTaskResponse(success=True, task_id=task.task_id, created_at=task.created_at, account_id=account_id)


@router.get("/{task_id}", response_model=TaskDetails)
async def read_task(task_id: UUID, account_id: AccountId, conn: DbConn) -> TaskDetails:
    """The task's status and, once finished, its result or failure reason."""
    task = await tasks_db.get_account_task(conn, task_id=task_id, account_id=account_id)
    if task is None:
        raise ApiError(404, f"task {task_id} not found")
    return task_details(task)
