"""The one way pages read and change anything: an in-process call into the control plane's own API.

``Api`` builds an ASGI request for ``/api/v1<path>`` and hands it to the same FastAPI app, with the signed-in
user's Principal in the scope (``deps.SCOPE_PRINCIPAL``, a key no client can set). The request goes through the
same routes, service functions, permission checks, audit and error messages as the REST API and the CLI; only the
socket, HTTP parsing and the bearer token lookup are skipped. Cost: one API request (no network, no thread hop of
our own), JSON encoded by the route and decoded here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.types import ASGIApp, Message

from cellplane.controlplane.api.deps import SCOPE_PRINCIPAL
from cellplane.controlplane.api.routing import API_PREFIX
from cellplane.controlplane.rbac import Principal

log = logging.getLogger("cellplane.console")


@dataclass
class ApiProblem(Exception):
    """A non-2xx answer of the API: its status and its JSON error (code, message, field problems)."""

    status: int
    code: str
    message: str
    fields: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


class Api:
    def __init__(self, app: ASGIApp, principal: Principal) -> None:
        self.app = app
        self.principal = principal

    async def get(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1<path>``; JSON decoded. Non-2xx: ApiProblem."""
        return await self.send("GET", path, None, **params)

    async def send(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """``method`` on ``/api/v1<path>`` with ``body`` as JSON (None: no body); the answer's JSON (None when
        empty). Query parameters whose value is None are left out. Non-2xx: ApiProblem."""
        status, raw = await self.call(method, path, body, **params)
        data = orjson.loads(raw) if raw else None
        if status >= 300:
            raise problem(status, data)
        return data

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> tuple[int, bytes]:
        """The raw answer (status, body) of one in-process request."""
        payload = b"" if body is None else orjson.dumps(body)
        query = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
        full = API_PREFIX + path
        headers = [(b"host", b"console.internal"), (b"accept", b"application/json")]
        if body is not None:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method.upper(),
            "scheme": "http", "path": full, "raw_path": full.encode(), "root_path": "", "query_string": query.encode(),
            "headers": headers, "client": ("127.0.0.1", 0), "server": ("console.internal", 80),
            SCOPE_PRINCIPAL: self.principal,
        }
        sent = False
        finished = asyncio.Event()

        async def receive() -> Message:
            # after the body, "disconnect" only once the answer is complete: a StreamingResponse listens for it
            # while it streams and would stop at once (an artifact's download came back empty)
            nonlocal sent
            if sent:
                await finished.wait()
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        status = 500
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    finished.set()

        try:
            await self.app(scope, receive, send)
        except Exception:  # Starlette sends its 500, then raises again for the server to log: logged, then ours
            log.exception("the API failed on %s %s called by the console", method.upper(), full)
            failed = "the control plane failed on this request; its log says why"
            return 500, orjson.dumps({"error": {"code": "internal", "message": failed, "details": []}})
        return status, b"".join(chunks)


def problem(status: int, data: Any) -> ApiProblem:
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ApiProblem(status, "error", f"the API answered {status}")
    fields = [(str(d.get("field", "")), str(d.get("problem", ""))) for d in error.get("details") or []]
    return ApiProblem(status, str(error.get("code", "error")), str(error.get("message", "")), fields)
