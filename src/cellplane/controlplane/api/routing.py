"""The API's routers, and how the app takes their routes.

Every module's router carries the API's prefix and its documented error responses itself, and the app takes the
routes of every router into its own list instead of including the routers. FastAPI matches a request against each
level of included routers again as it descends (once to find the router, once more inside it), which cost about a
quarter of the CPU of a simple GET; one flat list of routes is matched once.

A query parameter that a route checks itself (to report its absence at the field path it has always had,
``environment`` rather than FastAPI's ``query.environment``) is declared with ``checked_required()``: optional to
FastAPI, required in the OpenAPI document (``add_routes`` makes the app's document say so).

A route written as a plain function (the store's work is blocking) runs in the worker threads, as FastAPI runs it;
but FastAPI then also validates its answer against the response model in a worker thread, a second hand-off per
request that queues behind every request waiting for a thread. ``ApiRouter`` gives such a route a coroutine
that runs the function in a worker thread and validates the answer on the event loop, as for any coroutine
route: one hand-off, one wait.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from cellplane.controlplane.api.declare import Call, Declared, Documented, Rule, Scope, SessionKind, Subject
from cellplane.controlplane.api.errors import ERROR_RESPONSES

API_PREFIX = "/api/v1"
F = TypeVar("F", bound=Callable[..., Any])
REQUIRED_MARK = "x-cellplane-required"  # on a parameter's schema while the document is built, never in it


class ApiRouter(APIRouter):
    def mutation(self, method: str, path: str, permission: Rule, scope: Scope, *, action: str | None = None,
                 subject: Subject = Subject(), body: Documented | type[BaseModel] | None = None,
                 before: Callable[[Call[Any]], None] | None = None, message: Callable[[Call[Any]], str] | None = None,
                 dry_run: Callable[[Call[Any]], bool] | None = None, **route: Any) -> Callable[[F], F]:
        """A route declared with its permission and scope, its audit action and its body (``declare``): the
        decorated function is the action, called with a ``Call`` and the route's path and query parameters."""
        declared = Declared(permission, scope, action, subject, body, before, message, dry_run)

        def register(function: F) -> F:
            self.add_api_route(path, declared.endpoint(function), methods=[method], **route)
            return function

        return register

    def read(self, path: str, permission: Rule, scope: Scope, *, session: SessionKind | None = "transaction",
             before: Callable[[Call[Any]], None] | None = None, **route: Any) -> Callable[[F], F]:
        """A GET route declared with its permission and scope (``declare``): nothing audited, no body; the decorated
        function is the action, called with a ``Call`` (its ``session`` open as declared) and the route's path and
        query parameters."""
        declared = Declared(permission, scope, before=before, session=session)

        def register(function: F) -> F:
            self.add_api_route(path, declared.endpoint(function), methods=["GET"], **route)
            return function

        return register

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint) and not inspect.isgeneratorfunction(endpoint):
            endpoint = _in_thread(endpoint)
        super().add_api_route(path, endpoint, **kwargs)


def _in_thread(function: Callable[..., Any]) -> Callable[..., Any]:
    # functools.wraps keeps the signature and the module FastAPI reads the parameters and their annotations from
    @functools.wraps(function)
    async def route(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(function, *args, **kwargs)

    return route


def api_router(**kwargs: Any) -> ApiRouter:
    """A router whose routes are under ``API_PREFIX`` and document the API's errors."""
    return ApiRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES, **kwargs)


def checked_required(description: str, schema: dict[str, Any] | None = None, **query: Any) -> Any:
    """A query parameter the route requires and checks itself: ``None`` when absent, required in the document.
    ``query`` is what FastAPI checks (``max_length``, ...), ``schema`` what the document adds to it."""
    return Query(None, description=description, json_schema_extra={**(schema or {}), REQUIRED_MARK: True}, **query)


def add_routes(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Every route of ``routers``, in order, on the app itself; the app's OpenAPI document marks the parameters
    declared with ``checked_required`` as required."""
    for router in routers:
        app.router.routes.extend(router.routes)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _mark_required(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _mark_required(document: dict[str, Any]) -> dict[str, Any]:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("schema", {}).pop(REQUIRED_MARK, False):
                    parameter["required"] = True
    return document
