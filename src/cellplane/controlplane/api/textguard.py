"""Refuse text no database can store, and bodies too large to buffer, before any route sees it.

PostgreSQL rejects NUL characters in text (and in JSON), and an unpaired surrogate (``"\\ud800"`` in
JSON) cannot be encoded as UTF-8 at all: either one would otherwise surface as a 500 from the
database driver. They are refused here, once, for the path, the query string and JSON bodies.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellplane.controlplane.api.errors import error_response
from cellplane.errors import CellplaneError, FieldProblem, InvalidError

PROBLEM = "must not contain NUL characters or unpaired surrogates"
MAX_BODY = 16 * 2**20  # bodies are buffered here: bound what one request may hold in memory


def unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_unstorable(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if unstorable(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _body_unstorable(body: bytes) -> bool:
    if b"\\u" not in body:  # in valid JSON, NUL and lone surrogates can only be written as \u escapes
        return False
    try:
        return _json_unstorable(json.loads(body))
    except (ValueError, RecursionError):
        return False  # not JSON: the route's own parsing reports it


class TextGuard:
    """``stream_types``: content types whose bodies are binary uploads, streamed to the route unread
    (the route bounds their size itself)."""

    def __init__(self, app: ASGIApp, stream_types: tuple[str, ...] = ()) -> None:
        self.app = app
        self.stream_types = tuple(t.encode() for t in stream_types)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = None
        if unstorable(scope.get("path", "")):
            where = "path"
        elif b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            where = "query"
        if where is None and self._streamed(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more and where is None:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_BODY:
                error = CellplaneError(f"the request body is larger than {MAX_BODY // 2**20} MiB",
                                       [FieldProblem("body", "too large")], "too-large", 413)
                await error_response(error)(scope, receive, send)
                return
        body = b"".join(chunks)
        if where is None and _body_unstorable(body):
            where = "body"
        if where is not None:
            error = InvalidError(f"the request's {where} {PROBLEM}", [FieldProblem(where, PROBLEM)])
            await error_response(error)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _streamed(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                return value.split(b";", 1)[0].strip().lower() in self.stream_types
        return False
