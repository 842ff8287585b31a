"""The Test tab against a component built from tests/fixtures/apps/echo plus an OpenAPI contract written by the test,
running on the local data plane behind the real gateway: the contract's operations show grouped by tag with their
parameters, body schema and responses; a try-it goes through the console's same-origin proxy to the real endpoint
and shows its status and body with the equivalent curl; the proxy refuses any URL that is not the component's
endpoint and sends nothing; axe-core finds no serious violation. With CELLPLANE_SCREENSHOTS=1 the page is
photographed for docs/console.md."""

from __future__ import annotations

import html
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from browserkit import axe
from buildkit import APPS, BuildServer, component, failed_why, upload, wait
from cellplane.console.pages_test import Refused, target_url
from consolekit import ConsoleUser, make_user, session_client, signed_in
from dataplanekit import AgentProcess, deploy, start_agent, wait_state

P = "trial"
PAGE = f"/console/orgs/default/projects/{P}/components/echo/test"
CONTRACT = """\
openapi: 3.0.3
info: {title: Echo API, version: "1.0"}
paths:
  /:
    get:
      tags: [about]
      summary: Who answers
      responses: {"200": {description: the app's name and release}}
  /status:
    get:
      tags: [checks]
      summary: Answer with a chosen status
      parameters:
        - {name: code, in: query, required: true, description: the HTTP status to answer, schema: {type: integer}}
      responses: {default: {description: that status}}
  /things/{name}:
    parameters: [{$ref: "#/components/parameters/Name"}]
    get:
      tags: [things]
      summary: A thing by name
      responses: {"200": {description: the path it received}}
    post:
      tags: [things]
      summary: Make a thing
      requestBody:
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Thing"}
      responses: {"201": {description: made}}
components:
  parameters:
    Name: {name: name, in: path, required: true, description: the thing's name, schema: {type: string}}
  schemas:
    Thing: {type: object, properties: {label: {type: string, description: <b>bold</b> words}}}
"""


class Recorder:
    """A real HTTP server that counts the requests it gets (the proxy must never reach it)."""

    def __init__(self) -> None:
        self.hits = 0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def deployed(build_server: BuildServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    agent: AgentProcess = start_agent(build_server.server, tmp_path_factory.mktemp("dp") / "data", build_server.cache)
    try:
        source = tmp_path_factory.mktemp("src") / "echo"
        shutil.copytree(APPS / "echo", source)
        (source / "openapi.yaml").write_text(CONTRACT)
        c = build_server.client
        component(c, P, "echo", {"type": "service", "endpoints": [
            {"name": "api", "port": 8080, "visibility": ["Public"], "contract": "openapi.yaml"}]})
        info = wait(c, upload(c, P, "echo", source))
        assert info["state"] == "succeeded", failed_why(c, info)
        component(c, P, "inner", {"type": "service", "endpoints": [
            {"name": "api", "port": 8080, "visibility": ["Organization"]}]})
        info = wait(c, upload(c, P, "inner", APPS / "echo"))
        assert info["state"] == "succeeded", failed_why(c, info)
        deploy(c, P, "echo")
        deploy(c, P, "inner")
        wait_state(c, P, "echo")
        wait_state(c, P, "inner")
        yield {"external": agent.gateway()["external"],
               "user": make_user(build_server.server, "tess", role="developer")}
    finally:
        agent.stop()


def test_the_contract_shows_and_a_try_goes_through_the_proxy_to_the_endpoint(
        page: Any, build_server: BuildServer, deployed: dict[str, Any]) -> None:
    user: ConsoleUser = deployed["user"]
    signed_in(page, build_server.server, user, PAGE)
    assert page.get_by_role("heading", name="Endpoint api: Echo API").is_visible()
    for tag in ("about", "checks", "things"):
        assert page.get_by_role("heading", name=tag, exact=True).is_visible()
    page.get_by_text("Make a thing").click()
    assert "<b>bold</b> words" in page.locator("details[open] pre").first.inner_text()  # the schema, as text
    assert page.locator("main b").count() == 0
    page.get_by_text("Answer with a chosen status").click()
    page.get_by_label("code (query, required)").fill("418")
    page.get_by_role("button", name="Send GET /status").click()
    result = page.locator("details[open] .try-result").last
    result.get_by_text("418", exact=False).first.wait_for(timeout=15_000)
    text = result.inner_text()
    assert '"status": "418"' in text
    assert f"curl -sS -i -X GET '{deployed['external']}/{P}/echo/v1/status?code=418'" in text
    assert page.url.endswith(PAGE)  # a fragment, not a new page
    assert [v for v in axe(page) if v.get("impact") in ("serious", "critical")] == []
    if os.environ.get("CELLPLANE_SCREENSHOTS") == "1":
        root = Path(__file__).resolve().parent.parent
        (root / "docs/console").mkdir(exist_ok=True)
        page.screenshot(path=str(root / "docs/console/test.png"), full_page=True)


def test_a_path_parameter_is_sent_encoded_below_the_endpoint(build_server: BuildServer,
                                                             deployed: dict[str, Any]) -> None:
    client = session_client(build_server.server, deployed["user"])
    r = client.form(PAGE.replace("/test", "/test/development/try"),
                    {"endpoint": "api", "method": "GET", "path": "/things/{name}", "path.name": "a b/c"})
    assert r.status_code == 200, r.text
    assert f"{deployed['external']}/{P}/echo/v1/things/a%20b%2Fc</code>" in r.text and "200 OK" in r.text
    assert "/things/a%20b%2Fc" in html.unescape(r.text.split('class="answer"')[1])


def test_the_proxy_refuses_any_url_that_is_not_the_components_endpoint(build_server: BuildServer,
                                                                       deployed: dict[str, Any]) -> None:
    elsewhere = Recorder()
    try:
        client = session_client(build_server.server, deployed["user"])
        try_url = PAGE.replace("/test", "/test/development/try")
        attempts = [
            {"endpoint": "api", "path": f"//{elsewhere.address}/"},
            {"endpoint": "api", "path": f"http://{elsewhere.address}/"},
            {"endpoint": "api", "path": f"/x?next=http://{elsewhere.address}/"},
            {"endpoint": "api", "path": "/../../other/thing/v1/"},
            {"endpoint": "api", "path": "/%2e%2e/%2e%2e/"},
            {"endpoint": "api", "path": "/\\\\" + elsewhere.address},
            {"endpoint": "api", "path": "/a\r\nHost: " + elsewhere.address},
            {"endpoint": "nope", "path": "/"},
            {"endpoint": "api", "url": f"http://{elsewhere.address}/", "path": "/", "method": "CONNECT"},
        ]
        for fields in attempts:
            r = client.form(try_url, {"method": "GET", **fields})
            assert r.status_code == 422, (fields, r.text)
            assert "Not sent" in r.text
        r = client.form(PAGE.replace("/test", "/test/staging/try"), {"endpoint": "api", "path": "/"})
        assert r.status_code == 422 and "is not an endpoint of echo deployed in staging" in r.text
        assert elsewhere.hits == 0
    finally:
        elsewhere.close()


@pytest.mark.parametrize("path", ["//evil/", "http://evil/", "/../x", "/a/../../x", "/%2E%2e/", "/a\\b", "/a b",
                                  "/a#b", "x"])
def test_target_url_keeps_to_the_endpoint(path: str) -> None:
    with pytest.raises(Refused):
        target_url("http://127.0.0.1:9/p/c/v1", path, [])


def test_target_url_appends_the_path_and_query() -> None:
    assert target_url("http://127.0.0.1:9/p/c/v1", "/a/b", [("q", "x y")]) == "http://127.0.0.1:9/p/c/v1/a/b?q=x+y"
    assert target_url("http://127.0.0.1:9/p/c/v1", "/?k=1", [("q", "2")]) == "http://127.0.0.1:9/p/c/v1/?k=1&q=2"


def test_a_non_public_endpoint_gets_the_callers_own_key_which_is_never_shown_back(
        build_server: BuildServer, deployed: dict[str, Any]) -> None:
    client = session_client(build_server.server, deployed["user"])
    inner = f"/console/orgs/default/projects/{P}/components/inner/test"
    page = client.get(inner + "?env=development").text
    assert 'name="api_key"' in page and "internal listener" in page
    bare = client.form(inner + "/development/try", {"endpoint": "api", "method": "GET", "path": "/"})
    key = "cpk-not-a-key-" + os.urandom(4).hex()
    keyed = client.form(inner + "/development/try", {"endpoint": "api", "method": "GET", "path": "/",
                                                     "api_key": key})
    # the gateway's internal listener answered both: without a key, and with the (unknown) key it was given
    assert "no connection credentials for trial/inner/api" in html.unescape(bare.text)
    assert "the API key is not a connection credential in development" in html.unescape(keyed.text)
    assert key not in keyed.text
    assert '"Choreo-API-Key: $API_KEY"' in html.unescape(keyed.text)


def test_a_viewer_reads_the_contract_but_gets_no_try_form_and_a_forged_try_is_refused(
        build_server: BuildServer, deployed: dict[str, Any]) -> None:
    recorder = Recorder()
    try:
        viewer_user = make_user(build_server.server, "vick", role="viewer")
        client = session_client(build_server.server, viewer_user)
        page = client.get(PAGE)
        assert page.status_code == 200, page.text
        assert "Make a thing" in page.text  # the contract is read
        assert "/test/development/try" not in page.text and "endpoints:invoke" in page.text
        r = client.form(PAGE.replace("/test", "/test/development/try"),
                        {"endpoint": "api", "method": "GET", "path": "/status", "url": f"http://{recorder.address}/"})
        assert r.status_code == 403, r.text
        assert "permission &#39;endpoints:invoke&#39; is required on project" in r.text
        assert recorder.hits == 0
    finally:
        recorder.close()
