"""The approvals inbox in the real browser, with a real build, a real data plane and real deployments: a developer
asks to change production, an approver opens the link to the request, reads the release diff against what runs
there, approves, and the deployment proceeds; the requester and a viewer are shown no decision and their forged
POSTs get the API's refusal; a rejection says why; every organization page passes axe-core (no serious or critical
violation, wide and 360 px narrow). With CELLPLANE_SCREENSHOTS=1 the projects page and the inbox are
photographed for docs/console.md.

The tests run in file order: the second leaves a pending request that the third refuses, then rejects."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from browserkit import axe
from buildkit import BuildServer
from consolekit import ConsoleUser, make_user, session_client, signed_in
from dataplanekit import AgentProcess, build_app, deploy, deployment, service, wait_state

ROOT = Path(__file__).resolve().parent.parent
API_ORG = "/organizations/default"
COMP = f"{API_ORG}/projects/gate/components/api"
BASE = "/console/orgs/default"
PAGES = ("", "/members", "/environments", "/pipeline", "/approvals", "/audit")


@pytest.fixture(scope="module")
def people(build_server: BuildServer, dataplane: AgentProcess) -> dict[str, ConsoleUser]:
    """gate/api running in development, staging and production (approved by the admin), and three people."""
    server, c = build_server.server, build_server.client
    people = {"developer": make_user(server, "dora", role="developer"),
              "approver": make_user(server, "abe", role="approver", environment="production"),
              "viewer": make_user(server, "vic", role="viewer")}
    build_app(c, "gate", "api", service(8080))
    deploy(c, "gate", "api")
    deploy(c, "gate", "api", "staging")
    r = server.client(people["developer"].token).post(f"{COMP}/promotions", json={"from": "staging",
                                                                                  "to": "production"})
    assert r.status_code == 202, r.text
    r = c.post(f"{API_ORG}/approvals/{r.json()['approval']['id']}/approve")
    assert r.status_code == 201, r.text
    wait_state(c, "gate", "api", env="production")
    return people


def ask(build_server: BuildServer, people: dict[str, ConsoleUser], mode: str) -> dict[str, Any]:
    """The developer asks to run production with MODE=``mode``: the pending approval request."""
    c = build_server.client
    r = c.put(f"{COMP}/config/MODE", json={"value": mode}, params={"env": "production"})
    assert r.status_code in (200, 201), r.text
    developer = build_server.server.client(people["developer"].token)
    r = developer.post(f"{COMP}/deployments", json={"environment": "production"})
    assert r.status_code == 202, r.text
    return r.json()["approval"]


def _serious(violations: list[dict[str, Any]]) -> list[str]:
    return [f"{v['id']}: {v.get('help')} {[n.get('target') for n in v.get('nodes', [])][:3]}"
            for v in violations if v.get("impact") in ("serious", "critical")]


def test_an_approver_approves_from_the_link_after_reading_the_diff_and_the_deployment_proceeds(
        page: Any, build_server: BuildServer, people: dict[str, ConsoleUser]) -> None:
    c = build_server.client
    running = deployment(c, "gate", "api", "production")["release"]
    request = ask(build_server, people, "strict")
    link = f"{BASE}/approvals/{request['id']}"

    signed_in(page, build_server.server, people["approver"], link)
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == f"api to production: approval {request['id']}"
    diff = page.locator("table.diff")
    assert running in diff.inner_text() and request["release"] in diff.inner_text()
    row = diff.locator("tbody tr", has_text="configuration MODE")
    assert "strict" in row.inner_text() and "(added)" in row.inner_text()
    assert "dora" in page.locator("dl.facts").inner_text()
    assert _serious(axe(page)) == []

    page.get_by_role("button", name="Approve api in production").click()
    page.wait_for_url(build_server.server.url + link)
    facts = page.locator("dl.facts").inner_text()
    assert "approved by abe" in facts
    assert page.get_by_role("button", name="Approve api in production").count() == 0
    # the page follows the rollout (htmx polling of what runs there) without being reloaded
    page.evaluate("window.keptSinceApproval = true")
    live = page.locator(f"#running-{request['id']}")
    deadline = time.monotonic() + 120
    while not (request["release"] in (text := live.inner_text()) and "ready" in text and "rolling out" not in text):
        assert time.monotonic() < deadline, text
        page.wait_for_timeout(200)
    assert page.evaluate("window.keptSinceApproval") is True
    proceeded = wait_state(c, "gate", "api", env="production")
    assert proceeded["release"] == request["release"] and proceeded["requestedBy"] == "dora"
    assert live.get_attribute("hx-get") is None  # settled: no more polling

    page.goto(build_server.server.url + f"{BASE}/audit?action=approval")
    table = page.locator("main table").inner_text()
    assert re.search(r"abe\s+approval\.approve\s+Component/gate/api\s+succeeded", table), table


def test_every_organization_page_has_no_serious_accessibility_violation(
        page: Any, build_server: BuildServer, people: dict[str, ConsoleUser]) -> None:
    pending = ask(build_server, people, "lenient")
    admin = make_user(build_server.server, "ada", role=None, superuser=True)
    signed_in(page, build_server.server, admin)
    shots = os.environ.get("CELLPLANE_SCREENSHOTS") == "1"
    for path in (*PAGES, f"/approvals/{pending['id']}"):
        page.goto(build_server.server.url + BASE + path)
        assert page.locator("h1").count() == 1 and page.locator("main .cli").count() >= 1, path
        assert _serious(axe(page)) == [], path
        tabs = page.get_by_role("navigation", name="Organization")
        assert "1 pending" in tabs.get_by_role("link", name=re.compile("Approvals")).inner_text()
        if path == "/environments":
            assert "connected" in page.locator("main table").nth(1).inner_text()
        if shots and path in ("", "/approvals"):
            (ROOT / "docs/console").mkdir(exist_ok=True)
            name = "organization.png" if path == "" else "approvals.png"
            page.screenshot(path=str(ROOT / "docs/console" / name), full_page=True)
    page.set_viewport_size({"width": 360, "height": 800})  # a narrow screen: tables scroll in their own region
    for path in (*PAGES, f"/approvals/{pending['id']}"):
        page.goto(build_server.server.url + BASE + path)
        assert _serious(axe(page)) == [], f"{path} at 360 px"
        wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > 360 && !e.closest('.table-wrap'))
            .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, (path, wide[:6])


def test_the_requester_and_a_viewer_cannot_decide_and_a_rejection_says_why(
        build_server: BuildServer, people: dict[str, ConsoleUser]) -> None:
    server, c = build_server.server, build_server.client
    pending = c.get(f"{API_ORG}/approvals").json()["items"]
    assert len(pending) == 1
    request = pending[0]
    approve = f"{BASE}/approvals/{request['id']}/approve"

    dora = session_client(server, people["developer"])
    own = dora.get(f"{BASE}/approvals/{request['id']}").text
    assert "You requested it" in own and "Approve api" not in own
    r = dora.form(approve)
    assert r.status_code == 403 and "deployments:approve" in r.text  # a developer may not approve at all

    vic = session_client(server, people["viewer"])
    inbox = vic.get(f"{BASE}/approvals").text
    assert request["id"] in inbox and "Approve api" not in inbox and "Reject" not in inbox
    r = vic.form(approve, {"back": "inbox"})
    assert r.status_code == 403 and "deployments:approve" in r.text and 'role="alert"' in r.text
    assert c.get(f"{API_ORG}/approvals/{request['id']}").json()["state"] == "pending"

    abe = session_client(server, people["approver"])
    reject = f"{BASE}/approvals/{request['id']}/reject"
    r = abe.form(reject, {"reason": "", "back": "inbox"})
    assert r.status_code == 422 and 'role="alert"' in r.text
    r = abe.form(reject, {"reason": "freeze <b>until</b> Monday", "back": "inbox"})
    assert r.status_code == 303
    decided = abe.get(f"{BASE}/approvals").text
    assert "freeze &lt;b&gt;until&lt;/b&gt; Monday" in decided and "Nothing waits for approval" in decided
    assert deployment(c, "gate", "api", "production")["release"] != request["release"]
    follow = abe.get(f"{BASE}/approvals/{request['id']}/running")
    assert follow.status_code == 286 and "hx-get" not in follow.text  # nothing to follow: htmx stops polling
