"""The request's signed-in user, as a FastAPI dependency: ``v: Viewer = Depends(viewer)``.

Not signed in (no cookie, an unknown or expired session, a disabled user): ``SignInRequired``, which the console
answers with a 303 to the sign-in page (``?next=`` the page asked for), or for an htmx request a 401 with an
``HX-Redirect`` header. The session is looked up in a worker thread (``sessions.principal``: one read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cellplane.console import assets, render, sessions
from cellplane.console.apicall import Api, ApiProblem
from cellplane.controlplane.platform import Platform
from cellplane.controlplane.rbac import Principal, Target

SIGN_IN = "/console/sign-in"


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def settings(request: Request) -> sessions.SessionSettings:
    return request.app.state.console_sessions


def platform(request: Request) -> Platform:
    return request.app.state.platform


@dataclass
class Viewer:
    request: Request
    principal: Principal
    api: Api
    csrf: str

    @property
    def user(self) -> str:
        return self.principal.user

    def can(self, permission: str, org: str, project: str = "", environment: str = "") -> bool:
        """Whether the API would allow ``permission`` there (the same rbac check; the API still checks)."""
        return self.principal.can(permission, Target(org, project, environment))

    def context(self, **extra: Any) -> dict[str, Any]:
        return {"viewer": self, "csrf": self.csrf, "htmx": assets.htmx_present(), "ensure_assets": assets.ENSURE,
                "path": self.request.url.path, "breadcrumbs": [], **extra}

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(render.render(template, **self.context(**context)), status_code=status)

    def problem(self, e: ApiProblem, template: str | None = None, **context: Any) -> HTMLResponse:
        """The API's refusal as a page (or ``template`` with ``problem`` set), with the API's status."""
        return self.render(template or "problem.html", status=e.status, problem=e, **context)


def next_of(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


async def viewer(request: Request) -> Viewer:
    token = request.cookies.get(sessions.COOKIE)
    p = platform(request)
    who = None
    if sessions.looks_like_session(token):
        who = await run_in_threadpool(sessions.principal, p.store, p.token_key, token, settings(request))
    if who is None or token is None:
        raise SignInRequired(next_of(request))
    return Viewer(request, who, Api(request.app, who), sessions.csrf_token(p.token_key, token))


def sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    target = f"{SIGN_IN}?next={quote(exc.next_path, safe='/')}"
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
