"""Signing in to the console and out again, over real HTTP and in the real browser, against a real control plane;
pages need a session; a page's API call carries the API's own refusal."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from consolekit import SIGN_IN, ConsoleUser, make_user, session_client, sign_in_form, signed_in
from liveserver import LiveServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dev(live_server: LiveServer) -> ConsoleUser:
    return make_user(live_server, "ada", role="developer")


@pytest.fixture
def anonymous(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=False) as c:
        yield c


def test_the_root_leads_to_the_console_and_a_page_without_a_session_to_the_sign_in_form(
        anonymous: httpx.Client) -> None:
    r = anonymous.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/console/"
    r = anonymous.get("/console/")
    assert r.status_code == 303
    assert r.headers["location"] == f"{SIGN_IN}?next=/console/"
    r = anonymous.get("/console/", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["hx-redirect"] == f"{SIGN_IN}?next=/console/"
    # a forged session cookie is no session
    anonymous.cookies.set("cellplane_session", "cps_" + "x" * 43)
    assert anonymous.get("/console/").status_code == 303


def test_signing_in_shows_the_organizations_the_user_sees_and_signing_out_ends_the_session(
        live_server: LiveServer, dev: ConsoleUser) -> None:
    client = session_client(live_server, dev)
    cookie = client.cookies.get("cellplane_session")
    assert cookie
    page = client.get("/console/")
    assert page.status_code == 200
    assert "Signed in as <strong>ada</strong>" in page.text
    assert 'href="/console/orgs/default"' in page.text
    r = client.form("/console/sign-out")
    assert r.status_code == 303 and r.headers["location"] == SIGN_IN
    # the session is gone on the server, not only from this client's jar
    with httpx.Client(base_url=live_server.url, cookies={"cellplane_session": cookie}) as replay:
        assert replay.get("/console/", follow_redirects=False).status_code == 303
    events = live_server.client().get("/audit", params={"user": "ada"}).json()["items"]
    assert any(e["action"] == "session.start" and e["outcome"] == "succeeded" for e in events)


def test_a_wrong_password_gets_the_form_again_with_one_clear_message_and_no_session(
        anonymous: httpx.Client, dev: ConsoleUser) -> None:
    csrf = sign_in_form(anonymous)
    for name, password in ((dev.name, dev.password + "x"), ("nobody-here", dev.password)):
        r = anonymous.post(SIGN_IN, data={"csrf": csrf, "username": name, "password": password})
        assert r.status_code == 401
        assert "The user name or the password is not right." in r.text
        assert '<form method="post" action="/console/sign-in"' in r.text
        assert dev.password not in r.text
        assert "cellplane_session" not in r.headers.get("set-cookie", "")
    assert anonymous.get("/console/").status_code == 303


def test_the_sign_in_form_needs_its_csrf_cookie_and_goes_back_to_the_page_asked_for_only_on_this_site(
        anonymous: httpx.Client, dev: ConsoleUser) -> None:
    r = anonymous.post(SIGN_IN, data={"username": dev.name, "password": dev.password})
    assert r.status_code == 403 and "security token" in r.text
    csrf = sign_in_form(anonymous)
    r = anonymous.post(SIGN_IN, data={"csrf": csrf, "username": dev.name, "password": dev.password,
                                      "next": "//evil.example/console/"})
    assert r.status_code == 303 and r.headers["location"] == "/console/"


def test_a_user_signs_in_and_out_in_the_browser(page: object, live_server: LiveServer, dev: ConsoleUser) -> None:
    p = signed_in(page, live_server, dev)
    assert p.get_by_role("heading", name="Organizations").is_visible()
    if os.environ.get("CELLPLANE_SCREENSHOTS") == "1":
        p.screenshot(path=str(ROOT / "docs/console/organizations.png"))
    p.get_by_role("button", name="Sign out").click()
    p.wait_for_url(live_server.url + SIGN_IN)
    p.goto(live_server.url + "/console/")
    assert p.url.startswith(live_server.url + SIGN_IN)


def test_after_ten_failed_sign_ins_a_user_name_is_refused_for_a_while_even_with_the_right_password(
        anonymous: httpx.Client, live_server: LiveServer, dev: ConsoleUser) -> None:
    tess = make_user(live_server, "tess", role="viewer")
    csrf = sign_in_form(anonymous)
    for _ in range(10):
        r = anonymous.post(SIGN_IN, data={"csrf": csrf, "username": tess.name, "password": "a-wrong-password"})
        assert r.status_code == 401
    r = anonymous.post(SIGN_IN, data={"csrf": csrf, "username": tess.name, "password": tess.password})
    assert r.status_code == 429
    assert "Too many failed sign-ins for this user name; try again in" in r.text
    r = anonymous.post(SIGN_IN, data={"csrf": csrf, "username": dev.name, "password": dev.password})
    assert r.status_code == 303  # another name is not held back


def test_the_sign_in_page_sends_a_signed_in_user_on(live_server: LiveServer, dev: ConsoleUser) -> None:
    client = session_client(live_server, dev)
    r = client.get(SIGN_IN + "?next=/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/"
