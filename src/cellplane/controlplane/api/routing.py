"""The API's routers, and how the app takes their routes.

Every module's router carries the API's prefix and its documented error responses itself, and the app takes the
routes of every router into its own list instead of including the routers. FastAPI matches a request against each
level of included routers again as it descends (once to find the router, once more inside it), which cost about a
quarter of the CPU of a simple GET; one flat list of routes is matched once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI

from cellplane.controlplane.api.errors import ERROR_RESPONSES

API_PREFIX = "/api/v1"


def api_router(**kwargs: Any) -> APIRouter:
    """A router whose routes are under ``API_PREFIX`` and document the API's errors."""
    return APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES, **kwargs)


def add_routes(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Every route of ``routers``, in order, on the app itself."""
    for router in routers:
        app.router.routes.extend(router.routes)
