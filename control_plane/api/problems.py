"""Every API error as an RFC 9457 problem document (`application/problem+json`).

Handlers turn HTTP exceptions, request validation errors, database conflicts and unexpected
failures into `{"type", "title", "status", "detail", "errors"?}`. Submitted values are never
echoed back or logged: a rejected request may carry a password or a token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_plane import approvals, crud

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://lockgate.dev/problems/"

log = logging.getLogger("lockgate.api")


def problem_type(slug: str) -> str:
    """The type URI of a Lockgate-specific problem, e.g. `invalid-cedar`."""
    return PROBLEM_BASE + slug


class Problem(StarletteHTTPException):
    """An HTTP error with a problem type and optional itemised `errors`."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str = "about:blank",
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.type = type
        self.title = title
        self.errors = errors


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    type: str = "about:blank",
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response; the title defaults to the status code's reason phrase."""
    body: dict[str, Any] = {
        "type": type,
        "title": title or _phrase(status),
        "status": status,
        "detail": detail if detail is not None else _phrase(status),
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, Problem):
        return problem_response(
            exc.status_code,
            str(exc.detail),
            type=exc.type,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
        )
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(exc.status_code, detail, headers=exc.headers)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors without `input`/`ctx`, which may hold a submitted secret."""
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    first = errors[0] if errors else None
    detail = "the request is not valid"
    if first:
        where = ".".join(str(part) for part in first["loc"])
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
    return problem_response(
        422,
        detail,
        type=problem_type("validation"),
        title="Request validation failed",
        errors=errors,
    )


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IntegrityError)
    # The driver's message names the constraint; the statement parameters are left out.
    log.info(
        "conflict on %s %s: %s",
        request.method,
        request.url.path,
        type(exc.orig).__name__,
        extra={"method": request.method, "path": request.url.path},
    )
    return problem_response(
        409,
        "the request conflicts with existing data (a name already in use, or a missing reference)",
        type=problem_type("conflict"),
    )


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(409, str(exc), type=problem_type("conflict"))


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        422, str(exc), type=problem_type("validation"), title="Request validation failed"
    )


_REFUSAL_TYPES = {403: "forbidden", 404: "not-found", 409: "conflict", 422: "validation"}


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, approvals.Refused)
    return problem_response(
        exc.status, str(exc), type=problem_type(_REFUSAL_TYPES.get(exc.status, "refused"))
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"method": request.method, "path": request.url.path},
    )
    return problem_response(500, "an unexpected error occurred; see the control plane's log")


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on `app`."""
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(crud.Conflict, _conflict)
    app.add_exception_handler(crud.Invalid, _invalid)
    app.add_exception_handler(approvals.Refused, _refused)
    app.add_exception_handler(Exception, _unhandled)
