"""One error shape for every response: ``{"error": {"code", "message", "details": [{field, problem}]}}``."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from cellplane.errors import CellplaneError, FieldProblem, loc_to_path

log = logging.getLogger("cellplane.api")

HTTP_CODES = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
              405: "method-not-allowed", 406: "not-acceptable", 409: "conflict", 413: "too-large",
              415: "unsupported-media-type", 422: "invalid", 429: "too-many-requests"}


class ErrorDetail(BaseModel):
    field: str
    problem: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail]


class ErrorBody(BaseModel):
    error: ErrorInfo


# Documented on every /api/v1 operation (it also replaces FastAPI's default 422 schema, which this API never sends).
ERROR_RESPONSES: dict[int | str, dict] = {"4XX": {"model": ErrorBody, "description": "the request was refused"}}


def error_response(error: CellplaneError) -> JSONResponse:
    return JSONResponse(error.as_dict(), status_code=error.status)


def _validation_problems(exc: RequestValidationError) -> list[FieldProblem]:
    out = []
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        if loc and loc[0] == "body":
            loc = loc[1:]
        if e.get("type") == "json_invalid":  # its loc is ("body", <character offset>), not a field
            reason = (e.get("ctx") or {}).get("error")
            out.append(FieldProblem("body", f"not valid JSON: {reason}" if reason else "not valid JSON"))
            continue
        msg = {"missing": "required", "extra_forbidden": "unknown field"}.get(e.get("type", ""),
                                                                           e.get("msg", "invalid"))
        out.append(FieldProblem(loc_to_path(loc) or "body", msg))
    return out


def _allowed_methods(request: Request) -> str:
    """Every documented method at this path: Starlette's 405 names only those of the first route that matched."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        parts = re.split(r"(\{[^/}]+\})", template)
        pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
        if re.fullmatch(pattern, request.url.path):
            methods |= {m.upper() for m in operations}
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    @app.exception_handler(CellplaneError)
    async def _cellplane(_: Request, exc: CellplaneError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(CellplaneError("the request is not valid", _validation_problems(exc), "invalid", 422))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and message == "Not Found":
            message = "no such API path"
        response = error_response(CellplaneError(message, [], code, exc.status_code))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request) or response.headers.get("Allow", "")
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(CellplaneError("internal error; the control plane's log has the details",
                                             [], "internal", 500))
