"""The control plane's API called in this process: no server, no sockets (httpx's and schemathesis's ASGI transports).

For matrices of policy and validation, where a live server adds nothing but time. Tests that prove behaviour across
processes (agents, builds, the gateway, restarts) keep a real server (``liveserver``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from cellplane.controlplane.api.routing import API_PREFIX


class AppClient:
    """Requests to ``app`` through httpx's ASGI transport, on one event loop (``runner``), as ``token``'s holder.

    ``raising=False`` answers an exception in the app with the 500 a server would send, rather than raising it.
    """

    def __init__(self, app: ASGIApp, runner: asyncio.Runner, token: str, raising: bool = True) -> None:
        self.app, self.runner, self.token, self.raising = app, runner, token, raising

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=self.raising)
            async with httpx.AsyncClient(transport=transport, base_url="http://api" + API_PREFIX,
                                         headers={"Authorization": f"Bearer {self.token}"}) as client:
                return await client.request(method, path, **kwargs)

        return self.runner.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)


def without_lifespan(app: ASGIApp) -> ASGIApp:
    """``app`` with its lifespan acknowledged but not run: no build workers, no telemetry loop, and none of the
    process-wide settings a server's startup makes (switch interval, collector thresholds) leak into the test run.
    The API itself (the platform, its store, the routes) is made by ``create_app`` and needs no startup."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    return wrapped
