"""Single sign-on pages: ``/console/sso/{org}/{provider}`` starts a sign-in at an organization's OpenID Connect
provider, ``/console/sso/callback`` finishes it (``sso`` holds the protocol, ``identityproviders.sign_in`` what the
account signs in as) and starts a console session recording the provider.

``/console/sso/signed-out/{org}/{provider}`` is where sign-out sends a session the provider started: signed out
here, with a link to sign out at the provider too when its discovery document names an end_session_endpoint (the
sign-in page otherwise).

A refusal shows the sign-in page with one sentence (``sso.SsoRefused``), status 400 (a sign-in that does not match),
403 (an account that may not sign in), 404 (no such provider) or 502 (the provider did not answer); each is audited
as ``user.sign-in`` ``failed`` or ``denied``, with the detail the page leaves out. The pending sign-in's cookie goes
either way. Both routes are GETs (links and the provider's redirect): they change nothing before the callback has
proved the browser that started the sign-in is the one finishing it (the sealed cookie's state).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from cellplane.console import assets, pages_auth, render, security, sessions, sso
from cellplane.console.viewer import platform, settings
from cellplane.controlplane import audit
from cellplane.controlplane import identityproviders as idp
from cellplane.controlplane.platform import Platform
from cellplane.store.tables import IdentityProviderRow

router = APIRouter()


@dataclass(frozen=True)
class _SignedIn:
    user_id: int
    user: str


def _copy(row: IdentityProviderRow) -> IdentityProviderRow:
    """A detached copy of the row, for use after its session has ended (no lazy load, no flush)."""
    return IdentityProviderRow(id=row.id, organization=row.organization, name=row.name, issuer=row.issuer,
                               client_id=row.client_id, client_secret=row.client_secret, scopes=list(row.scopes),
                               groups_claim=row.groups_claim, group_roles=list(row.group_roles),
                               create_users=row.create_users, disabled=row.disabled)


def _provider(p: Platform, org: str, name: str) -> IdentityProviderRow:
    with p.store.read() as s:
        row = idp.find(s, org, name) if len(org) <= 63 and len(name) <= 63 else None
        if row is None:
            raise sso.SsoRefused(f"There is no identity provider '{name}' in organization '{org}'.", status=404)
        if row.disabled:
            raise sso.SsoRefused(f"{name} is disabled: sign in another way, or ask an administrator of the "
                                 "organization.", status=403)
        return _copy(row)


def _record(p: Platform, row: IdentityProviderRow | None, org: str, actor: str, outcome: str, message: str) -> None:
    with p.store.transaction() as s:
        audit.record(s, actor, "user.sign-in", outcome, "IdentityProvider", org, "", row.name if row else "",
                     message)


def _sign_in(p: Platform, provider_id: int, claims: dict[str, Any]) -> _SignedIn:
    """What the verified account signs in as, in one transaction (``identityproviders.sign_in``, audited). Two first
    sign-ins racing for one name (or one account) collide on a unique constraint: the loser tries once more, and
    then finds the winner's user by its link or takes the next free name."""
    for attempt in (1, 2):
        try:
            with p.store.transaction() as s:
                row = s.get(IdentityProviderRow, provider_id)
                if row is None:
                    raise sso.SsoRefused("The identity provider was removed during the sign-in: sign in again.")
                signed = idp.sign_in(s, row, str(claims.get("sub") or ""), claims)
                return _SignedIn(signed.user.id, signed.user.name)
        except idp.SignInRefused as e:
            raise sso.SsoRefused(e.message[0].upper() + e.message[1:] + ".", e.message, status=403) from None
        except IntegrityError:
            if attempt == 2:
                raise sso.SsoRefused("Another sign-in of the same account was under way: sign in again.",
                                     "a concurrent sign-in wrote the same user or link first") from None
    raise AssertionError("unreachable")


def _refused(request: Request, e: sso.SsoRefused, next_path: str = pages_auth.HOME) -> Response:
    """The sign-in page with the refusal's one sentence (and the pre-session CSRF cookie its form needs)."""
    p = platform(request)
    expected = security.expected_csrf(p.token_key, request.cookies)
    fresh = None
    if expected is None:
        fresh = expected = secrets.token_urlsafe(24)
    response = pages_auth._form(request, expected, next_path, error=e.message, status=e.status)
    if fresh is not None:
        pages_auth._cookie(response, request, security.CSRF_COOKIE, fresh)
    response.delete_cookie(sso.COOKIE, path=sso.COOKIE_PATH)
    return response


@router.get("/console/sso/{org}/{provider}", include_in_schema=False)
async def start(request: Request, org: str, provider: str, next: str | None = None) -> Response:
    p = platform(request)
    row = None
    try:
        row = await run_in_threadpool(_provider, p, org, provider)
        redirect_uri = str(request.base_url).rstrip("/") + sso.CALLBACK
        url, pending = await sso.start(row, redirect_uri, pages_auth.safe_next(next))
    except sso.SsoRefused as e:
        if row is not None:
            await run_in_threadpool(_record, p, row, org, f"oidc:{org}/{provider}", "failed", e.audit)
        return _refused(request, e, pages_auth.safe_next(next))
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(sso.COOKIE, sso.seal(p.token_key, pending), max_age=sso.PENDING_SECONDS,
                        path=sso.COOKIE_PATH, httponly=True, samesite="lax", secure=request.url.scheme == "https")
    return response


@router.get("/console/sso/callback", include_in_schema=False)
async def callback(request: Request) -> Response:
    p = platform(request)
    params = {k: v for k, v in request.query_params.items() if len(v) <= 4096}
    pending = row = None
    try:
        pending = sso.unseal(p.token_key, request.cookies.get(sso.COOKIE))
        row = await run_in_threadpool(_provider, p, pending.org, pending.provider)
        code = sso.check_callback(pending, params, row.issuer)
        secret = await run_in_threadpool(idp.client_secret, p.keyring, row)
        claims = await sso.finish(row, secret, pending, code)
        signed = await run_in_threadpool(_sign_in, p, row.id, claims)
    except sso.SsoRefused as e:
        if pending is not None:
            await run_in_threadpool(_record, p, row, pending.org, f"oidc:{pending.org}/{pending.provider}",
                                    "denied" if e.status == 403 else "failed", e.audit)
        return _refused(request, e, pending.next if pending is not None else pages_auth.HOME)
    token = await run_in_threadpool(sessions.start, p.store, p.token_key, signed.user_id, settings(request),
                                    idp.session_provider(row))
    response = RedirectResponse(pending.next, status_code=303)
    response.set_cookie(sessions.COOKIE, token, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    response.delete_cookie(sso.COOKIE, path=sso.COOKIE_PATH)
    response.delete_cookie(security.CSRF_COOKIE, path="/")
    return response


@router.get(sso.SIGNED_OUT + "/{org}/{provider}", include_in_schema=False)
async def signed_out(request: Request, org: str, provider: str) -> Response:
    p = platform(request)
    try:
        row = await run_in_threadpool(_provider, p, org, provider)
    except sso.SsoRefused:  # deleted since: nothing to offer
        return RedirectResponse("/console/sign-in", status_code=303)
    url = await sso.end_session_url(row)
    if url is None:
        return RedirectResponse("/console/sign-in", status_code=303)
    html = render.render("auth/signed_out.html", viewer=None, csrf="", htmx=assets.htmx_present(),
                         ensure_assets=assets.ENSURE, path=request.url.path, breadcrumbs=[], provider=row.name,
                         organization=row.organization, end_session_url=url)
    return HTMLResponse(html)
