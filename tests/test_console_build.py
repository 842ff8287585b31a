"""The console's Build tab in a real browser against a real control plane: a developer starts a build of a
component from its git repository (a local fixture), watches its log grow line by line (htmx polling of the log
fragment) until the build ends and the artifact's digest appears; markup in a build's log is shown as text; a
viewer sees no button and a forged POST is refused by the API; the component's pages pass axe-core. With
CELLPLANE_SCREENSHOTS=1 the build page is photographed for docs/console.md."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from browserkit import axe
from buildkit import APPS, BuildServer, component, git_repo, start, wait
from consolekit import ConsoleUser, make_user, session_client, signed_in
from dataplanekit import service

ROOT = Path(__file__).resolve().parent.parent
COMPONENT = "/console/orgs/default/projects/shop/components/api"
XSS = "<script>alert(1)</script>"
SLOW = "seq 1 30 | sed 's/^/line /'; for i in 1 2 3 4; do echo counting $i; sleep 0.7; done"


@pytest.fixture(scope="module")
def shop(build_server: BuildServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Project shop: api (the echo app from a git repository, its build command printing a line a little
    apart) and evil (whose build prints markup); a developer and a viewer."""
    c = build_server.client
    repo = git_repo(tmp_path_factory.mktemp("src"), APPS / "echo")
    source = {"repository": f"file://{repo}", "branch": "main"}
    component(c, "shop", "api", {"source": source, "build": {"command": SLOW}, **service()})
    component(c, "shop", "evil", {"source": source, "build": {"command": f"echo '{XSS}'"}, **service()})
    component(c, "shop", "broken", {"source": source, "build": {"command": "echo preparing; echo boom >&2; exit 3"},
                                    **service()})
    broken = wait(c, start(c, "shop", "broken"))
    assert broken["state"] == "failed", broken
    evil = wait(c, start(c, "shop", "evil"))
    assert evil["state"] == "succeeded", evil
    return {"dev": make_user(build_server.server, "dana", role="developer"),
            "viewer": make_user(build_server.server, "vic", role="viewer"), "evil": evil,
            "broken": broken}


def _serious(violations: list[dict[str, Any]]) -> list[str]:
    return [f"{v['id']}: {v.get('help')}" for v in violations if v.get("impact") in ("serious", "critical")]


def _shoot(page: Any, name: str) -> None:
    if os.environ.get("CELLPLANE_SCREENSHOTS") == "1":
        (ROOT / "docs/console").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / f"docs/console/{name}.png"), full_page=True)


def test_a_developer_starts_a_build_and_watches_its_log_grow_until_the_artifact(
        page: Any, build_server: BuildServer, shop: dict[str, Any]) -> None:
    dev: ConsoleUser = shop["dev"]
    signed_in(page, build_server.server, dev, COMPONENT + "/build")
    assert page.get_by_role("link", name="Build").get_attribute("aria-current") == "page"
    assert "cellplane build start api -p shop --follow" in page.locator(".cli").first.inner_text()
    assert _serious(axe(page)) == []
    page.get_by_role("button", name="Start build").click()
    page.wait_for_url(re.compile(r".*/builds/b-[0-9a-f]+$"))
    build_id = page.url.rsplit("/", 1)[1]
    log = page.get_by_role("log")
    assert log.get_attribute("aria-live") == "polite"
    seen = [log.locator(".line").count()]
    deadline = time.monotonic() + 120
    while "the log is complete" not in page.locator("#log-poller").inner_text():
        assert time.monotonic() < deadline, page.content()
        seen.append(log.locator(".line").count())
        page.wait_for_timeout(250)
    final = log.locator(".line").count()
    info = build_server.client.get(f"/organizations/default/builds/{build_id}").json()
    assert info["state"] == "succeeded" and info["requestedBy"] == "dana"
    # the log grew while the page was open, without reloading it, and holds every line exactly once
    assert len({n for n in seen if 0 < n < final}) >= 2, seen
    text = log.inner_text()
    assert [f"counting {i}" for i in range(1, 5)] == re.findall(r"counting \d", text)
    lines = build_server.client.get(f"/organizations/default/builds/{build_id}/logs",
                                    params={"after": -1, "limit": 1000}).json()["items"]
    assert final == len(lines)
    summary = page.locator("#build-summary")
    assert info["artifact"] in summary.inner_text() and "succeeded" in summary.inner_text()
    assert "package" in summary.locator(".steps").inner_text()
    # a log longer than its box stays scrolled to its newest line as lines come
    box = log.evaluate("e => { const r = e.getBoundingClientRect(); const l = e.querySelector('.line:last-child')"
                       ".getBoundingClientRect(); return [e.scrollHeight, e.clientHeight, l.top >= r.top - 1 &&"
                       " l.bottom <= r.bottom + 1] }")
    assert box[0] > box[1] and box[2], box
    assert _serious(axe(page)) == []
    _shoot(page, "build")

    page.goto(build_server.server.url + COMPONENT)
    assert page.get_by_role("heading", name="Latest build").is_visible()
    assert page.get_by_role("link", name=re.compile(r"Build #\d+")).is_visible()
    assert _serious(axe(page)) == []


def test_markup_in_a_build_log_is_shown_as_text_and_never_runs(page: Any, build_server: BuildServer,
                                                               shop: dict[str, Any]) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    evil = shop["evil"]
    signed_in(page, build_server.server, shop["viewer"],
              f"/console/orgs/default/projects/shop/components/evil/builds/{evil['id']}")
    assert XSS in page.get_by_role("log").inner_text()
    assert page.locator("main script").count() == 0 and dialogs == []


def test_a_viewer_sees_no_build_button_and_a_forged_post_is_refused(build_server: BuildServer,
                                                                   shop: dict[str, Any]) -> None:
    c = session_client(build_server.server, shop["viewer"])
    before = build_server.client.get("/organizations/default/projects/shop/components/api/builds").json()["items"]
    page = c.get(COMPONENT + "/build")
    assert page.status_code == 200 and "Start build" not in page.text and "<form" not in page.text.split("<main")[1]
    forged = c.form(COMPONENT + "/build")
    assert forged.status_code == 403 and "builds:create" in forged.text, forged.text
    after = build_server.client.get("/organizations/default/projects/shop/components/api/builds").json()["items"]
    assert len(after) == len(before)
    assert c.get(COMPONENT + "/builds/b-000000000000").status_code == 404
    assert c.get("/console/orgs/default/projects/shop/components/nothing").status_code == 404


def test_a_failed_build_shows_its_reason_and_its_last_lines(build_server: BuildServer, shop: dict[str, Any]) -> None:
    broken = shop["broken"]
    client = session_client(build_server.server, shop["viewer"])
    r = client.get(f"/console/orgs/default/projects/shop/components/broken/builds/{broken['id']}")
    assert r.status_code == 200
    summary = r.text.split('id="build-summary"', 1)[1].split('id="log-heading"', 1)[0]
    alert = summary.split('role="alert"', 1)[1].split("</div>", 1)[0]
    assert broken["error"] and broken["error"].split()[0] in alert, (broken["error"], alert)
    assert "boom" in alert.split("last-lines", 1)[1]
    assert "the log is complete" in r.text and "hx-trigger" not in r.text  # nothing left to poll
    fragment = client.get(f"/console/orgs/default/projects/shop/components/broken/builds/{broken['id']}/log",
                          params={"after": 10_000}, headers={"HX-Request": "true"})
    assert fragment.status_code == 286


def test_a_poll_that_the_api_refuses_stops_with_its_reason(build_server: BuildServer, shop: dict[str, Any]) -> None:
    client = session_client(build_server.server, shop["viewer"])
    r = client.get(COMPONENT + "/builds/b-000000000000/log", params={"after": 3}, headers={"HX-Request": "true"})
    assert r.status_code == 286 and 'id="log-poller"' in r.text and 'role="alert"' in r.text
    assert "b-000000000000" in r.text and "<html" not in r.text
    r = client.get(COMPONENT + "/deploy/nowhere/state", headers={"HX-Request": "true"})
    assert r.status_code == 286 and 'id="env-nowhere-state"' in r.text and "not on this project" in r.text
