"""The console's security middleware (pure ASGI; requests outside ``/console`` pass through after one string test).

* Headers on every console response: a strict Content-Security-Policy (no inline script or style, nothing from
  other origins), nosniff, Referrer-Policy same-origin; ``Cache-Control: no-store`` on pages (not on static files).
* CSRF on every unsafe method under ``/console``: the token (header ``X-CSRF-Token`` for htmx, else form field
  ``csrf``) must equal the session's (HMAC of the session token, ``sessions.csrf_token``), or before sign-in the
  pre-session cookie's (double submit); an ``Origin`` header, when sent, must be this server's. Otherwise 403 and
  the request never reaches a page. A form's body is read here once (buffered, at most ``MAX_FORM``) and handed on.
"""

from __future__ import annotations

import contextlib
import hmac
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellplane.console import render, sessions

PREFIX = "/console"
STATIC = "/console/static/"
CSRF_COOKIE = "cellplane_csrf"
CSRF_FIELD = "csrf"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM = 16 * 1024 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin")]
NO_STORE = (b"cache-control", b"no-store")


def cookies_of(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope["headers"]:
        if name == b"cookie":
            with contextlib.suppress(Exception):  # a malformed cookie header is no cookie
                jar.load(value.decode("latin-1"))
    return {k: m.value for k, m in jar.items()}


def expected_csrf(key: bytes, cookies: dict[str, str]) -> str | None:
    """The CSRF token a form of this browser must carry: the session's, or before sign-in the pre-session cookie."""
    session = cookies.get(sessions.COOKIE)
    if sessions.looks_like_session(session):
        assert session is not None
        return sessions.csrf_token(key, session)
    pre = cookies.get(CSRF_COOKIE)
    return pre if pre and 20 <= len(pre) <= 100 else None


def _origin_ok(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"").decode("latin-1")
    return origin.decode("latin-1") == f"{scope.get('scheme', 'http')}://{host}"


class ConsoleSecurity:
    def __init__(self, app: ASGIApp, key: bytes) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(STATIC)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS, *(() if static else (NO_STORE,))]
            await send(message)

        if scope["method"] in SAFE:
            await self.app(scope, receive, send_with_headers)
            return
        body, more = await _read(receive)
        if more or not _origin_ok(scope) or not await self._token_ok(scope, body):
            await _refuse(send_with_headers)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send_with_headers)

    async def _token_ok(self, scope: Scope, body: bytes) -> bool:
        expected = expected_csrf(self.key, cookies_of(scope))
        if expected is None:
            return False
        headers = dict(scope["headers"])
        given = headers.get(b"x-csrf-token", b"").decode("latin-1")
        if not given:
            given = await _form_field(scope, headers.get(b"content-type", b"").decode("latin-1"), body)
        return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


async def _read(receive: Receive) -> tuple[bytes, bool]:
    """The whole body (and True when it is larger than MAX_FORM: refused)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > MAX_FORM:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


async def _form_field(scope: Scope, content_type: str, body: bytes) -> str:
    if content_type.startswith("application/x-www-form-urlencoded"):
        values = parse_qs(body.decode("latin-1"), max_num_fields=1000).get(CSRF_FIELD)
        return values[0] if values else ""
    if content_type.startswith("multipart/form-data"):
        sent = False

        async def once() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, once).form()
        except Exception:  # an unreadable form carries no token
            return ""
        value: Any = form.get(CSRF_FIELD)
        await form.close()
        return value if isinstance(value, str) else ""
    return ""


async def _refuse(send: Send) -> None:
    page = render.render("refused.html", message="This form has expired or was not sent by this console's own page "
                         "(its security token is missing or wrong). Reload the page and try again.").encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(page)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": page})
