"""Single sign-on end to end: a real control plane (its own, started by liveserver) and a real OpenID Connect provider
(panva's oidc-provider, tests/oidckit.py), over real HTTP (httpx following the provider's login form, as a browser
would) and in the real browser (Debian's Chromium through Playwright): the sign-in page lists the organization's
providers, a sign-in through one creates the user with its group's role and starts a console session, and every
refusal shows the sign-in page with one sentence and starts no session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select

from browserkit import axe
from cellplane.store import Store, sqlite_url
from cellplane.store.tables import SessionRow
from liveserver import LiveServer
from oidckit import Account, Client, OidcProvider, sign_in_at_provider

ROOT = Path(__file__).resolve().parent.parent
ORG = "acme"
CALLBACK = "/console/sso/callback"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def provider(live_server: LiveServer) -> Iterator[OidcProvider]:
    redirect = [live_server.url + CALLBACK]
    accounts = [Account("ada", PASSWORD, groups=["acme-viewers"]), Account("grace", PASSWORD, groups=["acme-devs"]),
                Account("mallory", PASSWORD, groups=["acme-admins"])]
    with OidcProvider([Client("cellplane", "corp-secret", redirect), Client("closed", "closed-secret", redirect)],
                      accounts) as op:
        yield op


@pytest.fixture(scope="module")
def admin(live_server: LiveServer, provider: OidcProvider) -> httpx.Client:
    """The admin's API client, with organization acme (project shop) and its three providers: corp (creates
    users; groups acme-viewers and acme-devs map to viewer and to developer on shop), closed (creates none) and
    down (an issuer where nothing answers)."""
    api = live_server.client()
    assert api.post("/organizations", json={"metadata": {"name": ORG}, "spec": {}}).status_code == 201
    assert api.post(f"/organizations/{ORG}/projects", json={"metadata": {"name": "shop"}, "spec": {}}
                    ).status_code == 201
    base = f"/organizations/{ORG}/identity-providers"
    corp = {"issuer": provider.issuer, "clientId": "cellplane", "clientSecret": "corp-secret",
            "scopes": ["openid", "email", "profile", "groups"], "createUsers": True,
            "groupRoles": [{"group": "acme-viewers", "role": "viewer"},
                           {"group": "acme-devs", "role": "developer", "project": "shop"}]}
    for name, body in (("corp", corp), ("closed", {**corp, "clientId": "closed", "clientSecret": "closed-secret",
                                                  "createUsers": False}),
                       ("down", {**corp, "issuer": "http://127.0.0.1:9"})):
        response = api.put(f"{base}/{name}", json=body)
        assert response.status_code == 201, response.text
    return api


@pytest.fixture
def browser_client(live_server: LiveServer, admin: httpx.Client) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=False) as client:
        yield client


def _start(client: httpx.Client, provider: str, next_path: str = "/console/") -> httpx.Response:
    return client.get(f"/console/sso/{ORG}/{provider}", params={"next": next_path})


def _through_provider(client: httpx.Client, provider: str, user: str, next_path: str = "/console/"
                      ) -> tuple[httpx.Response, str]:
    """Start at the console, sign in at the provider; returns the console's answer to the callback, and its URL."""
    started = _start(client, provider, next_path)
    assert started.status_code == 303, started.text
    back = sign_in_at_provider(client, started.headers["location"], user, PASSWORD)
    callback = back.headers["location"]
    assert callback.startswith(str(client.base_url) + CALLBACK + "?"), callback
    return client.get(callback), callback


def _events(admin: httpx.Client, actor: str) -> list[dict[str, Any]]:
    return [e for e in admin.get("/audit", params={"actor": actor}).json()["items"] if e["action"] == "user.sign-in"]


def test_the_sign_in_page_lists_the_organizations_providers(browser_client: httpx.Client) -> None:
    page = browser_client.get("/console/sign-in", params={"next": "/console/orgs/acme"})
    assert page.status_code == 200
    for name in ("corp", "closed", "down"):
        assert f'href="/console/sso/acme/{name}?next=/console/orgs/acme">Sign in with {name}</a>' in page.text


def test_a_provider_added_or_deleted_shows_on_the_sign_in_page_at_once(browser_client: httpx.Client,
                                                                      admin: httpx.Client) -> None:
    base = f"/organizations/{ORG}/identity-providers"
    assert "Sign in with late" not in browser_client.get("/console/sign-in").text  # the list is kept now
    body = {"issuer": "https://late.example.com", "clientId": "late"}
    assert admin.put(f"{base}/late", json=body).status_code == 201
    assert "Sign in with late" in browser_client.get("/console/sign-in").text
    assert admin.delete(f"{base}/late").status_code == 200
    assert "Sign in with late" not in browser_client.get("/console/sign-in").text


def test_a_first_sign_in_creates_the_user_with_the_groups_role_and_a_session(
        live_server: LiveServer, browser_client: httpx.Client, admin: httpx.Client) -> None:
    started = _start(browser_client, "corp", "/console/?from=sso")
    assert started.status_code == 303
    cookie = started.headers["set-cookie"]
    assert cookie.startswith("cellplane_sso=") and "HttpOnly" in cookie and "Path=/console/sso" in cookie
    assert "SameSite=lax" in cookie and "Max-Age=600" in cookie
    query = parse_qs(urlsplit(started.headers["location"]).query)
    assert query["redirect_uri"] == [live_server.url + CALLBACK] and query["code_challenge_method"] == ["S256"]
    back = sign_in_at_provider(browser_client, started.headers["location"], "grace", PASSWORD)
    answer = browser_client.get(back.headers["location"])
    assert answer.status_code == 303 and answer.headers["location"] == "/console/?from=sso", answer.text
    session = browser_client.cookies.get("cellplane_session")
    assert session and session.startswith("cps_")
    home = browser_client.get("/console/")
    assert home.status_code == 200 and "Signed in as <strong>grace</strong>" in home.text
    store = Store(sqlite_url(live_server.data_dir))
    try:
        with store.read() as s:
            assert s.scalars(select(SessionRow.provider)).all() == ["oidc:acme/corp"]  # the session says how
    finally:
        store.dispose()
    assert 'href="/console/orgs/acme"' in home.text
    bindings = [b for b in admin.get(f"/organizations/{ORG}/rolebindings").json()["items"] if b["user"] == "grace"]
    assert [(b["role"], b["project"]) for b in bindings] == [("developer", "shop")]
    user = next(u for u in admin.get("/users").json()["items"] if u["name"] == "grace")
    assert user["email"] == "grace@example.com"
    events = _events(admin, "grace")
    assert events[0]["outcome"] == "succeeded" and events[0]["organization"] == ORG
    assert "through identity provider acme/corp (user created)" in events[0]["message"]
    # a second sign-in finds the same user through the link
    with httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=False) as again:
        answer, _ = _through_provider(again, "corp", "grace")
        assert answer.status_code == 303
        assert "Signed in as <strong>grace</strong>" in again.get("/console/").text
    assert [u["name"] for u in admin.get("/users").json()["items"]].count("grace") == 1


def test_an_account_no_user_is_linked_to_is_refused_where_the_provider_creates_none(
        browser_client: httpx.Client, admin: httpx.Client) -> None:
    answer, _ = _through_provider(browser_client, "closed", "mallory")
    assert answer.status_code == 403
    assert "No Cellplane user is linked to this account of closed, and closed does not create users" in answer.text
    assert 'role="alert"' in answer.text and "Sign in with corp" in answer.text
    assert browser_client.cookies.get("cellplane_session") is None
    assert "mallory" not in [u["name"] for u in admin.get("/users").json()["items"]]
    refused = _events(admin, "oidc:acme/closed")
    assert refused and refused[0]["outcome"] == "denied" and refused[0]["message"].startswith("no Cellplane user")


def test_a_callback_that_does_not_match_the_sign_in_started_here_is_refused(
        live_server: LiveServer, browser_client: httpx.Client) -> None:
    started = _start(browser_client, "corp")
    back = sign_in_at_provider(browser_client, started.headers["location"], "ada", PASSWORD)
    query = {k: v[0] for k, v in parse_qs(urlsplit(back.headers["location"]).query).items()}
    forged = browser_client.get(CALLBACK + "?" + urlencode({**query, "state": "another"}))
    assert forged.status_code == 400 and "state mismatch" in forged.text
    assert browser_client.cookies.get("cellplane_session") is None
    # the code in another browser, which started nothing: no pending sign-in to match
    with httpx.Client(base_url=live_server.url, timeout=30) as elsewhere:
        stolen = elsewhere.get(CALLBACK + "?" + urlencode(query))
        assert stolen.status_code == 400 and "not started here" in stolen.text
        assert elsewhere.cookies.get("cellplane_session") is None
    denied = browser_client.get(CALLBACK, params={"error": "access_denied", "state": "x"})
    assert denied.status_code == 400 and "not started here" in denied.text


def test_a_provider_that_does_not_answer_or_does_not_exist_is_said_on_the_sign_in_page(
        browser_client: httpx.Client, admin: httpx.Client) -> None:
    down = _start(browser_client, "down")
    assert down.status_code == 502 and "down did not answer; try again later." in down.text
    assert _events(admin, "oidc:acme/down")[0]["outcome"] == "failed"
    missing = _start(browser_client, "nowhere")
    assert missing.status_code == 404 and "There is no identity provider &#39;nowhere&#39;" in missing.text
    elsewhere = _start(browser_client, "corp", "https://evil.example/")
    assert elsewhere.status_code == 303  # the next page is checked: a sign-in ends on this console only
    back = sign_in_at_provider(browser_client, elsewhere.headers["location"], "ada", PASSWORD)
    assert browser_client.get(back.headers["location"]).headers["location"] == "/console/"


def test_signing_in_with_the_provider_in_the_browser(live_server: LiveServer, admin: httpx.Client, page: Any
                                                     ) -> None:
    page.goto(live_server.url + "/console/sso/acme/down")  # a refusal: the sign-in page with its one sentence
    assert page.get_by_role("alert").inner_text() == "down did not answer; try again later."
    assert [v["id"] for v in axe(page) if v["impact"] in ("serious", "critical")] == []
    page.goto(live_server.url + "/console/sign-in?next=/console/")
    serious = [v["id"] for v in axe(page) if v["impact"] in ("serious", "critical")]
    assert serious == []
    if os.environ.get("CELLPLANE_SCREENSHOTS") == "1":
        page.screenshot(path=str(ROOT / "docs" / "console" / "sign-in-sso.png"), full_page=True)
    page.get_by_role("link", name="Sign in with corp").click()
    page.wait_for_url("**/interaction/**")
    assert "Test provider" in page.content()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live_server.url + "/console/")
    assert page.get_by_text("Signed in as").inner_text().endswith("ada")
    # a viewer of acme: the organization is listed, and no platform administrator's form is offered
    assert page.get_by_role("link", name="acme").count() == 1
    assert page.get_by_role("button", name="Create organization").count() == 0
    roles = [b["role"] for b in admin.get(f"/organizations/{ORG}/rolebindings").json()["items"] if b["user"] == "ada"]
    assert roles == ["viewer"]
