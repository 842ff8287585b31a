"""The Observe page in the real browser, on a component built from tests/fixtures/apps/echo and running on the
local data plane behind the real gateway: its log grows without a reload (htmx polling with a cursor), a search
finds a line, a request's trace opens as a waterfall with both hops, markup in a log line is shown as text, and
the page passes axe-core. With CELLPLANE_SCREENSHOTS=1 the page is photographed for docs/console.md."""

from __future__ import annotations

import http.client
import os
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from browserkit import axe
from buildkit import BuildServer
from consolekit import ConsoleUser, make_user, session_client, signed_in
from dataplanekit import AgentProcess, build_app, deploy, logs, poll, start_agent, wait_state

P = "look"
PAGE = f"/console/orgs/default/projects/{P}/components/front/observe"
MARKUP = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"CELLPLANE_ALERT_INTERVAL": "0.5"}


@pytest.fixture(scope="module")
def agent(build_server: BuildServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = start_agent(build_server.server, tmp_path_factory.mktemp("dp") / "data", build_server.cache,
                          "--metrics-interval", "1")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cell(build_server: BuildServer, agent: AgentProcess) -> dict[str, Any]:
    """look/front (Public) calls look/back (Project) through the cell."""
    c = build_server.client
    build_app(c, P, "back", {"type": "service", "endpoints": [
        {"name": "api", "port": 8080, "visibility": ["Project"]}]})
    build_app(c, P, "front", {"type": "service", "endpoints": [
        {"name": "api", "port": 8080, "visibility": ["Public"]}], "dependencies": [
        {"name": "back", "component": "back", "endpoint": "api"}]})
    deploy(c, P, "back")
    deploy(c, P, "front")
    wait_state(c, P, "back")
    wait_state(c, P, "front")
    return {"client": c, "front": f"{agent.gateway()['external']}/{P}/front/v1"}


@pytest.fixture(scope="module")
def developer(build_server: BuildServer, cell: dict[str, Any]) -> ConsoleUser:
    return make_user(build_server.server, "dora", role="developer")


def call(cell: dict[str, Any], path: str) -> None:
    """A request to front through the gateway, its path sent as it is (http.client quotes nothing)."""
    url = urlparse(cell["front"])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.request("GET", url.path + path)
        conn.getresponse().read()
    finally:
        conn.close()


def wait_for_line(cell: dict[str, Any], text: str) -> None:
    poll(lambda: logs(cell["client"], P, "front", grep=text), bool, timeout=30)


def test_the_log_grows_without_a_reload(page: Any, build_server: BuildServer, cell: dict[str, Any],
                                        developer: ConsoleUser) -> None:
    call(cell, "/first-" + secrets.token_hex(4))
    signed_in(page, build_server.server, developer, PAGE)
    assert page.get_by_role("heading", name="Logs").is_visible()
    loaded = page.evaluate("() => performance.getEntriesByType('navigation').length")
    marker = "later-" + secrets.token_hex(4)
    call(cell, "/" + marker)
    page.get_by_role("log").get_by_text(marker).wait_for(timeout=20_000)
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == loaded
    assert page.url.endswith(PAGE)  # the same page, not a reload to another URL


def test_a_search_finds_a_line(page: Any, build_server: BuildServer, cell: dict[str, Any],
                               developer: ConsoleUser) -> None:
    needle = "needle-" + secrets.token_hex(4)
    call(cell, "/" + needle)
    call(cell, "/hay")
    wait_for_line(cell, needle)
    signed_in(page, build_server.server, developer, PAGE)
    page.get_by_label("Text").fill(needle)
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**grep=" + needle + "*")
    lines = page.get_by_role("log").locator("li")
    assert lines.count() >= 1
    assert all(needle in text for text in lines.all_inner_texts())
    assert "cellplane logs front --env development --grep " + needle in page.locator(".cli code").first.inner_text()


def test_a_trace_opens_as_a_waterfall_with_both_hops(page: Any, build_server: BuildServer, cell: dict[str, Any],
                                                     developer: ConsoleUser) -> None:
    call(cell, "/call?env=CHOREO_BACK_SERVICEURL")
    c = cell["client"]

    def traces() -> list[dict[str, Any]]:
        r = c.get(f"/organizations/default/projects/{P}/components/front/traces",
                  params={"environment": "development"})
        return [t for t in r.json()["items"] if len(t["spans"]) >= 2]

    trace = poll(traces, bool, timeout=30)[0]
    signed_in(page, build_server.server, developer, PAGE)
    page.get_by_role("link", name=trace["traceId"][:8]).first.click()
    page.wait_for_url("**/observe/traces/" + trace["traceId"] + "*")
    rows = page.locator(".waterfall .span-row")
    assert rows.count() == 2
    assert f"{P}/front" in rows.nth(0).inner_text() and f"{P}/back" in rows.nth(1).inner_text()
    assert page.locator(".waterfall .spans > li > ol > li").count() == 1  # back nested under front
    assert page.locator(".waterfall svg.span-bar").count() == 2
    assert _serious(axe(page)) == []


def test_markup_in_a_log_line_is_shown_as_text(page: Any, build_server: BuildServer, cell: dict[str, Any],
                                               developer: ConsoleUser) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    call(cell, "/" + MARKUP.replace(" ", "%20"))
    wait_for_line(cell, "onerror")
    signed_in(page, build_server.server, developer, PAGE)
    assert page.get_by_role("log").get_by_text("onerror=alert(1)", exact=False).first.is_visible()
    assert page.locator("main img").count() == 0
    late = "/" + MARKUP.replace(" ", "%20") + "-late"
    call(cell, late)
    page.get_by_role("log").get_by_text("-late", exact=False).first.wait_for(timeout=20_000)
    assert page.locator("main img").count() == 0
    assert dialogs == []


def test_the_observe_page_has_no_serious_accessibility_violation(page: Any, build_server: BuildServer,
                                                                   cell: dict[str, Any],
                                                                   developer: ConsoleUser) -> None:
    call(cell, "/")
    signed_in(page, build_server.server, developer, PAGE)
    assert _serious(axe(page)) == []
    if os.environ.get("CELLPLANE_SCREENSHOTS") == "1":
        root = Path(__file__).resolve().parent.parent
        (root / "docs/console").mkdir(exist_ok=True)
        page.screenshot(path=str(root / "docs/console/observe.png"), full_page=True)


def test_the_tail_fragment_answers_only_new_lines_with_the_next_cursor(build_server: BuildServer,
                                                                      cell: dict[str, Any],
                                                                      developer: ConsoleUser) -> None:
    client = session_client(build_server.server, developer)
    items = logs(cell["client"], P, "front")
    last = items[-1]["id"]
    r = client.get(PAGE + "/logs", params={"env": "development", "after": last}, headers={"HX-Request": "true"})
    assert r.status_code == 204
    marker = "tail-" + secrets.token_hex(4)
    call(cell, "/" + marker)
    wait_for_line(cell, marker)
    r = client.get(PAGE + "/logs", params={"env": "development", "after": last}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and marker in r.text
    assert 'hx-swap-oob="true"' in r.text and f"after={last}" not in r.text
    unsigned = httpx.get(build_server.server.url + PAGE, follow_redirects=False)
    assert unsigned.status_code == 303


def _serious(violations: list[dict[str, Any]]) -> list[str]:
    return [f"{v['id']}: {v.get('help')}" for v in violations if v.get("impact") in ("serious", "critical")]




def test_the_connections_tab_names_the_target_its_state_and_the_injected_variables(
        page: Any, build_server: BuildServer, cell: dict[str, Any], developer: ConsoleUser) -> None:
    base = f"/console/orgs/default/projects/{P}/components"
    signed_in(page, build_server.server, developer, base + "/front/connections")
    row = page.get_by_role("row", name="back")
    text = row.inner_text()
    assert f"{P}/back" in text and "api" in text and "Project" in text
    assert "resolved" in text and "via cell" in text
    assert "CHOREO_BACK_SERVICEURL" in text
    assert _serious(axe(page)) == []
    page.goto(build_server.server.url + base + "/back/connections")
    page.get_by_role("link", name="front").wait_for()


class Hook(BaseHTTPRequestHandler):
    """An alert webhook that takes every notification."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_firing_alert_shows_its_state_and_its_firing(page: Any, build_server: BuildServer, cell: dict[str, Any],
                                                      developer: ConsoleUser) -> None:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        c = cell["client"]
        r = c.post(f"/organizations/default/projects/{P}/components/front/alerts", json={
            "name": "too-many-errors", "environment": "development", "metric": "error-rate", "threshold": 20,
            "window": "10s", "for": "1s", "webhook": f"http://127.0.0.1:{hook.server_address[1]}/"})
        assert r.status_code == 201, r.text
        rule = r.json()["id"]

        def firing() -> bool:
            for _ in range(10):
                call(cell, "/status?code=500")
            return c.get(f"/organizations/default/alerts/{rule}").json()["state"] == "firing"

        poll(lambda: firing(), bool, timeout=40, every=0.3)
        signed_in(page, build_server.server, developer, PAGE)
        row = page.get_by_role("row", name="too-many-errors")
        assert "firing" in row.inner_text()
        assert page.get_by_role("heading", name="Latest firings of too-many-errors").is_visible()
        assert _serious(axe(page)) == []
    finally:
        hook.shutdown()
        hook.server_close()


def test_the_pages_fit_a_narrow_screen(page: Any, build_server: BuildServer, cell: dict[str, Any],
                                       developer: ConsoleUser) -> None:
    """At 360 px wide nothing widens the page (tables scroll inside their own box) and axe still passes."""
    page.set_viewport_size({"width": 360, "height": 800})
    base = f"/console/orgs/default/projects/{P}/components/front"
    signed_in(page, build_server.server, developer, PAGE)
    for path in (PAGE, base + "/connections", base + "/config", base + "/test"):
        page.goto(build_server.server.url + path)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 360, path
        assert _serious(axe(page)) == [], path
