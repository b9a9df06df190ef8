"""One error body for every API error: `{"error": {"code": ..., "message": ..., "details": [...]}}`.

Validation errors name the field in the message ("hours_to_complete: Input should be greater than 0"); unexpected
errors are logged with their traceback and answered with a generic message, never with internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_balance",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}
INTERNAL_ERROR_MESSAGE = "internal error; the operator can find the cause in the logs"
# Where a validation error came from; the field path after it is what the caller can fix.
_LOCATIONS = {"body", "query", "path", "header", "cookie"}


class ErrorDetail(BaseModel):
    field: str | None = Field(default=None, description="Dotted path of the offending field, when there is one")
    message: str
    type: str | None = None


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorInfo


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (401, 404, 422, 500)}


class ApiError(Exception):
    def __init__(self, status_code: int, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code or CODES_BY_STATUS.get(status_code, "error")


def error_response(
    status_code: int, code: str, message: str, details: list[ErrorDetail] | None = None, headers: Any = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(code=code, message=message, details=details or []))
    return JSONResponse(status_code=status_code, content=body.model_dump(mode="json"), headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str | None:
    parts = list(loc)
    if parts and parts[0] in _LOCATIONS:
        location = parts.pop(0)
        if not parts or all(isinstance(part, int) for part in parts):
            return str(location)
    return ".".join(str(part) for part in parts) or None


def validation_details(errors: list[dict[str, Any]]) -> list[ErrorDetail]:
    details = []
    for error in errors:
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error")
            message = f"the body is not valid JSON ({reason})" if reason else "the body is not valid JSON"
        details.append(
            ErrorDetail(field=_field_path(tuple(error.get("loc", ()))), message=message, type=error.get("type"))
        )
    return details


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    details = validation_details(list(error.errors()))
    message = "; ".join(f"{detail.field}: {detail.message}" if detail.field else detail.message for detail in details)
    return error_response(422, "validation_error", message or "invalid request", details)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    message = error.detail if isinstance(error.detail, str) else "request failed"
    code = CODES_BY_STATUS.get(error.status_code, "error")
    return error_response(error.status_code, code, message, headers=getattr(error, "headers", None))


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error.status_code, error.code, error.message)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error in %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(Exception, _unexpected_error)
