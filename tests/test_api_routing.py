"""How the API's routers run plain-function routes (cellplane.controlplane.api.routing)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from cellplane.controlplane.api.routing import API_PREFIX, add_routes, api_router


class Answer(BaseModel):
    value: int


def _app(router_factory: Any) -> tuple[FastAPI, dict[str, Any]]:
    seen: dict[str, Any] = {}
    router = router_factory()

    @router.get("/answer/{value}", response_model=Answer)
    def answer(value: int) -> dict[str, Any]:
        seen["thread"] = threading.get_ident()
        return {"value": value, "internal": "never shown"}

    app = FastAPI()
    add_routes(app, [router])
    return app, seen


def _call(app: FastAPI, path: str, monkeypatch: pytest.MonkeyPatch) -> tuple[httpx.Response, int, int]:
    """The answer, the number of hand-offs to a worker thread it took, and the event loop's thread."""
    real = anyio.to_thread.run_sync
    handed = 0

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal handed
        handed += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)

    async def go() -> tuple[httpx.Response, int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return await client.get(path), threading.get_ident()

    response, loop_thread = asyncio.run(go())
    return response, handed, loop_thread


def test_a_plain_route_runs_in_a_worker_thread_with_one_hand_off(monkeypatch: pytest.MonkeyPatch) -> None:
    app, seen = _app(api_router)
    response, handed, loop_thread = _call(app, f"{API_PREFIX}/answer/42", monkeypatch)
    assert response.status_code == 200
    assert response.json() == {"value": 42}  # validated against the response model: the rest is dropped
    assert seen["thread"] != loop_thread  # the blocking work never runs on the event loop
    assert handed == 1  # FastAPI alone hands the answer's validation to a worker thread as well (2)


def test_bad_path_parameters_of_a_plain_route_are_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    app, seen = _app(api_router)
    response, handed, _ = _call(app, f"{API_PREFIX}/answer/forty-two", monkeypatch)
    assert response.status_code == 422
    assert "thread" not in seen and handed == 0
