"""Signing in and out with a user name and a password (``/console/sign-in``, ``POST /console/sign-out``).

The sign-in form is protected against CSRF before any session exists by a pre-session cookie (double submit,
``security.CSRF_COOKIE``). A wrong name or password gets the form again with one message that does not say which
(and an unknown name costs the same argon2 work as a wrong password); after 10 failures in 5 minutes a user name is
refused for a while (``Throttle``). Sign-in is audited.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from cellplane.console import assets, render, security, sessions, sso
from cellplane.console.viewer import platform, settings
from cellplane.controlplane import audit, passwords
from cellplane.controlplane.platform import Platform
from cellplane.store.tables import UserRow

router = APIRouter()
HOME = "/console/"
WRONG = "The user name or the password is not right."


class Throttle:
    """Failed sign-ins per user name, in this process's memory: after ``limit`` failures within ``window`` seconds
    the name is refused (without checking the password, so without argon2's cost) until the oldest failure is that
    old. Guessing one user's password then takes at least window/limit seconds a try. Bounded: past ``MAX_NAMES``
    names the record starts again."""

    MAX_NAMES = 10_000

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def wait(self, name: str) -> float:
        """Seconds until ``name`` may try again (0: now)."""
        recent = [t for t in self._failures.get(name, ()) if time.monotonic() - t < self.window]
        if recent:
            self._failures[name] = recent
        else:
            self._failures.pop(name, None)
        return self.window - (time.monotonic() - recent[0]) if len(recent) >= self.limit else 0.0

    def failed(self, name: str) -> None:
        if len(self._failures) >= self.MAX_NAMES:
            self._failures.clear()
        self._failures.setdefault(name, []).append(time.monotonic())

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)


THROTTLE = Throttle()


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path of this server only (never another site: no //, no scheme)."""
    if not value or not value.startswith("/console/") or value.startswith("//") or "\\" in value:
        return HOME
    return value


def _form(request: Request, csrf: str, next_path: str, username: str = "", error: str | None = None,
          status: int = 200) -> HTMLResponse:
    html = render.render("auth/sign_in.html", viewer=None, csrf=csrf, htmx=assets.htmx_present(),
                         ensure_assets=assets.ENSURE, path=request.url.path, breadcrumbs=[], next=next_path,
                         username=username, error=error, sso_providers=sso.sign_in_providers(platform(request).store))
    return HTMLResponse(html, status_code=status)


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


@router.get("/console/sign-in", include_in_schema=False)
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    p = platform(request)
    token = request.cookies.get(sessions.COOKIE)
    if sessions.looks_like_session(token) and await run_in_threadpool(sessions.principal, p.store, p.token_key, token,
                                                                       settings(request)) is not None:
        return RedirectResponse(safe_next(next), status_code=303)  # signed in already
    expected = security.expected_csrf(p.token_key, request.cookies)
    fresh = None
    if expected is None:
        fresh = expected = secrets.token_urlsafe(24)
    response = _form(request, expected, safe_next(next))
    if fresh is not None:
        _cookie(response, request, security.CSRF_COOKIE, fresh)
    return response


def _check(p: Platform, username: str, password: str) -> int | None:
    """The id of the enabled user with this name and password (None: not so). Audited either way for a real user."""
    with p.store.read() as s:
        user = s.scalar(select(UserRow).where(UserRow.name == username)) if len(username) <= 63 else None
        found = (user.id, user.name, user.password_hash, user.disabled) if user is not None else None
    ok = passwords.verify(found[2] if found else None, password)
    if found is None:
        return None
    user_id, name, _, disabled = found
    with p.store.transaction() as s:
        if ok and not disabled:
            audit.record(s, name, "session.start", "succeeded", "User", name=name, message="signed in to the console")
            return user_id
        audit.record(s, name, "session.start", "denied", "User", name=name,
                     message="the user is disabled" if ok else "wrong password")
    return None


@router.post("/console/sign-in", include_in_schema=False)
async def sign_in(request: Request, username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
                  next: Annotated[str, Form()] = HOME) -> Response:
    p = platform(request)
    username = username.strip()[:200]
    expected = security.expected_csrf(p.token_key, request.cookies) or ""
    wait = THROTTLE.wait(username)
    if wait > 0:
        return _form(request, expected, safe_next(next), username=username[:63], status=429,
                     error=f"Too many failed sign-ins for this user name; try again in {math.ceil(wait)} seconds.")
    user_id = await run_in_threadpool(_check, p, username, password) if username and password else None
    if user_id is None:
        THROTTLE.failed(username)
        return _form(request, expected, safe_next(next), username=username[:63], error=WRONG, status=401)
    THROTTLE.succeeded(username)
    token = await run_in_threadpool(sessions.start, p.store, p.token_key, user_id, settings(request))
    response = RedirectResponse(safe_next(next), status_code=303)
    _cookie(response, request, sessions.COOKIE, token)
    response.delete_cookie(security.CSRF_COOKIE, path="/")
    return response


@router.post("/console/sign-out", include_in_schema=False)
async def sign_out(request: Request) -> Response:
    p = platform(request)
    token = request.cookies.get(sessions.COOKIE)
    provider = None
    if sessions.looks_like_session(token):
        assert token is not None
        provider = await run_in_threadpool(sessions.end, p.store, p.token_key, token)
    # a session of single sign-on: a page that offers to sign out at the provider too (pages_sso)
    after = sso.signed_out_path(provider) if provider else "/console/sign-in"
    response = RedirectResponse(after, status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response
