"""The console's security headers and its CSRF check over real HTTP; the pinned htmx is what the console serves."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from browserkit import _in_ci
from cellplane.console import assets
from cellplane.console.security import CSP
from consolekit import ConsoleUser, make_user, session_client
from liveserver import LiveServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dev(live_server: LiveServer) -> ConsoleUser:
    return make_user(live_server, "grace", role="developer")


@pytest.fixture
def anonymous(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=False) as c:
        yield c


def test_every_console_response_carries_the_csp_and_pages_are_not_cached(anonymous: httpx.Client) -> None:
    for path, status in (("/console/sign-in", 200), ("/console/", 303), ("/console/static/console.css", 200),
                         ("/console/no-such-page", 404)):
        r = anonymous.get(path)
        assert r.status_code == status, path
        assert r.headers["content-security-policy"] == CSP, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert (r.headers.get("cache-control") == "no-store") == (not path.startswith("/console/static/")), path
    assert "content-security-policy" not in anonymous.get("/api/v1/version").headers


def test_the_session_cookie_is_httponly_and_samesite_lax(live_server: LiveServer, dev: ConsoleUser) -> None:
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as c:
        form = c.get("/console/sign-in").text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = c.post("/console/sign-in", data={"csrf": csrf, "username": dev.name, "password": dev.password})
    assert r.status_code == 303
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("cellplane_session="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags


def test_a_signed_in_post_without_or_with_a_wrong_csrf_token_or_from_another_origin_is_refused(
        live_server: LiveServer, dev: ConsoleUser) -> None:
    client = session_client(live_server, dev)
    assert client.post("/console/sign-out").status_code == 403
    assert client.post("/console/sign-out", data={"csrf": "0" * 64}).status_code == 403
    assert client.post("/console/sign-out", headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    assert client.post("/console/sign-out", data={"csrf": client.csrf},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/console/").status_code == 200  # still signed in: nothing happened
    r = client.post("/console/sign-out", headers={"X-CSRF-Token": client.csrf})
    assert r.status_code == 303
    assert client.get("/console/").status_code == 303


def test_the_console_serves_the_pinned_htmx(anonymous: httpx.Client) -> None:
    pinned = json.loads((ROOT / "tools/console/package.json").read_text())["dependencies"]["htmx.org"]
    assert pinned == assets.HTMX_VERSION
    lock = json.loads((ROOT / "tools/console/package-lock.json").read_text())
    assert lock["packages"]["node_modules/htmx.org"]["version"] == pinned
    r = anonymous.get("/console/static/vendor/htmx.min.js")
    if not assets.htmx_present():
        assert r.status_code == 404 and assets.ENSURE in r.text
        missing = f"htmx is not installed; run {assets.ENSURE}"
        if _in_ci():
            pytest.fail(missing)
        pytest.skip(missing)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert b"htmx" in r.content


def test_a_viewers_forged_post_is_refused_with_the_apis_own_message_and_changes_nothing(
        live_server: LiveServer) -> None:
    viewer = make_user(live_server, "vic", role="viewer")
    client = session_client(live_server, viewer)
    assert "New organization" not in client.get("/console/").text  # no form for what the API would refuse
    r = client.form("/console/", {"name": "forged-org", "displayName": "Forged"})
    api = live_server.client(viewer.token).post("/organizations", json={
        "apiVersion": "cellplane.dev/v1alpha1", "kind": "Organization", "metadata": {"name": "forged-org"}})
    assert r.status_code == api.status_code == 403
    assert html.escape(api.json()["error"]["message"], quote=True) in r.text
    assert 'role="alert"' in r.text
    assert live_server.client().get("/organizations/forged-org").status_code == 404


def test_an_administrator_creates_an_organization_and_a_bad_name_gets_the_form_back_with_the_field_marked(
        live_server: LiveServer) -> None:
    boss = make_user(live_server, "boss", role=None, superuser=True)
    client = session_client(live_server, boss)
    r = client.form("/console/", {"name": "Not A Label", "displayName": "x"})
    assert r.status_code == 422
    assert 'aria-invalid="true"' in r.text and 'value="Not A Label"' in r.text
    r = client.form("/console/", {"name": "made-in-console", "displayName": "Made here"})
    assert r.status_code == 303 and r.headers["location"] == "/console/orgs/made-in-console"
    assert live_server.client().get("/organizations/made-in-console").json()["spec"]["displayName"] == "Made here"
