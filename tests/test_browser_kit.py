"""The browser kit itself (tests/browserkit.py): Debian's Chromium through Playwright sees what the control plane
serves, and axe-core finds an accessibility violation where there is one and none where there is not."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import browserkit
from browserkit import axe
from liveserver import LiveServer

PAGES = {
    "/unlabelled": (
        '<!doctype html><html lang="en"><head><title>Unlabelled</title></head><body><main>'
        '<h1>Sign in</h1><form><input type="text" name="user"><button type="submit">Go</button></form>'
        "</main></body></html>"
    ),
    "/labelled": (
        '<!doctype html><html lang="en"><head><title>Labelled</title></head><body><main>'
        '<h1>Sign in</h1><form><label for="user">User name</label><input id="user" type="text" name="user">'
        '<button type="submit">Go</button></form></main></body></html>'
    ),
}


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        # as strict as the console's will be: axe is injected through the DevTools protocol, not a <script>
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'self'")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pages_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _shown_json(page: Any) -> Any:
    """The JSON document as the browser shows it (Chromium renders a JSON response as text in a <pre>)."""
    return json.loads(page.evaluate("() => document.body.innerText"))


def test_browser_opens_what_the_control_plane_serves(shared_live_server: LiveServer, browser: Any) -> None:
    started = time.perf_counter()
    context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {shared_live_server.admin_token}"})
    page = context.new_page()
    context_s = time.perf_counter() - started
    try:
        response = page.goto(shared_live_server.api + "/version")
        assert response is not None and response.status == 200, response and response.status
        assert response.header_value("content-type") == "application/json"
        version = _shown_json(page)
        assert version["database"] == "sqlite" and version["version"]

        response = page.goto(shared_live_server.url + "/openapi.json")
        assert response is not None and response.status == 200
        spec = _shown_json(page)
        assert spec["openapi"].startswith("3.") and "/api/v1/version" in spec["paths"]
        goto_s = time.perf_counter() - started - context_s
    finally:
        context.close()
    # Without the token the API refuses the browser as it refuses any client.
    plain = browser.new_context()
    try:
        page = plain.new_page()
        response = page.goto(shared_live_server.api + "/organizations")
        assert response is not None and response.status == 401
    finally:
        plain.close()
    print(f"\nbrowser: started in {browserkit.STATS['start_s']:.2f} s (driver {browserkit.STATS['driver_s']:.2f} s, "
          f"chromium {browserkit.STATS['launch_s']:.2f} s); a context and page {context_s * 1000:.0f} ms; "
          f"two pages loaded {goto_s * 1000:.0f} ms")


def test_axe_finds_the_unlabelled_input(page: Any, pages_url: str) -> None:
    page.goto(pages_url + "/unlabelled")
    started = time.perf_counter()
    violations = axe(page)
    first_s = time.perf_counter() - started
    ids = {v["id"] for v in violations}
    assert "label" in ids, violations
    (label,) = [v for v in violations if v["id"] == "label"]
    assert label["impact"] == "critical"
    assert [n["target"] for n in label["nodes"]] == [["input"]]
    page.goto(pages_url + "/labelled")
    started = time.perf_counter()
    assert axe(page) == []
    next_s = time.perf_counter() - started
    print(f"\naxe: first check {first_s * 1000:.0f} ms (reading, injecting axe.min.js), next {next_s * 1000:.0f} ms; "
          f"a page fixture {browserkit.STATS['page_s'] * 1000:.0f} ms")


def test_axe_checks_a_page_updated_in_place(page: Any, pages_url: str) -> None:
    """axe checks the DOM as it is now (after a partial update), not the HTML as loaded."""
    page.goto(pages_url + "/labelled")
    assert axe(page) == []
    page.evaluate("() => document.querySelector('form').insertAdjacentHTML('beforeend', '<select></select>')")
    assert {v["id"] for v in axe(page)} >= {"select-name"}
