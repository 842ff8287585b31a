"""The console's Deploy tab in a real browser, with a real control plane and a real local data plane: a developer
deploys the latest build to development and its URL answers; promotes to staging after the confirmation page has
shown the release diff (a new artifact); requests production, which another user approves through the API, and
the card follows until production serves; rolls staging back to the earlier release. A viewer sees no action and
a forged POST is refused by the API; a crash-looping deployment shows its reason and its last log lines; the pages
pass axe-core. With CELLPLANE_SCREENSHOTS=1 the Deploy tab and the overview are photographed for docs/console.md."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from browserkit import axe
from buildkit import APPS, BuildServer, component, git, git_repo, start, wait
from consolekit import make_user, session_client, signed_in
from dataplanekit import AgentProcess, build_app, deploy, service, wait_state

ROOT = Path(__file__).resolve().parent.parent
ORG = "/organizations/default"
API = f"{ORG}/projects/shop/components/api"
DEPLOY = "/console/orgs/default/projects/shop/components/api/deploy"


@pytest.fixture(scope="module")
def shop(build_server: BuildServer, dataplane: AgentProcess,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """api built twice from a git repository (a commit in between, so two artifacts), build #1 running in
    staging; a developer, a viewer and an approver."""
    c = build_server.client
    repo = git_repo(tmp_path_factory.mktemp("src"), APPS / "echo")
    component(c, "shop", "api", {"source": {"repository": f"file://{repo}", "branch": "main"}, **service()})
    first = wait(c, start(c, "shop", "api"))
    assert first["state"] == "succeeded", first
    old = deploy(c, "shop", "api", "staging", build=first["id"])
    (repo / "VERSION").write_text("2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "two")
    second = wait(c, start(c, "shop", "api"))
    assert second["state"] == "succeeded" and second["artifact"] != first["artifact"], second
    server = build_server.server
    return {"first": first, "second": second, "old_release": old["release"],
            "dev": make_user(server, "dana", role="developer"), "viewer": make_user(server, "vic", role="viewer"),
            "approver": make_user(server, "alice", role="approver")}


def _serious(violations: list[dict[str, Any]]) -> list[str]:
    return [f"{v['id']}: {v.get('help')}" for v in violations if v.get("impact") in ("serious", "critical")]


def _settled(page: Any, env: str, release: str | None = None, timeout: float = 120) -> str:
    """Wait (without reloading) until the card of ``env`` says ready, and ``release`` when given; its text."""
    state = page.locator(f"#env-{env}-state")
    deadline = time.monotonic() + timeout
    while True:
        # one read of the element as it is now (it is swapped every second)
        text, badge = state.evaluate("e => [e.innerText, (e.querySelector('.badge') || {}).innerText || '']")
        if badge == "ready" and "rolling out" not in text and (release is None or release in text):
            return text
        assert time.monotonic() < deadline, text
        page.wait_for_timeout(250)


def _url(card_text: str) -> str:
    found = re.search(r"external\s+(http://\S+)", card_text)
    assert found, card_text
    return found.group(1)


def test_deploy_promote_approve_and_roll_back_in_the_browser(page: Any, build_server: BuildServer,
                                                             shop: dict[str, Any]) -> None:
    c, second = build_server.client, shop["second"]
    signed_in(page, build_server.server, shop["dev"], DEPLOY)
    titles = [t.inner_text() for t in page.locator(".env h2").all()]
    assert [t.split()[0] for t in titles] == ["development", "staging", "production"]
    assert _serious(axe(page)) == []

    # deploy the latest build (#2) to development: the card follows the rollout and shows the URL, which answers
    dev_card = page.locator("#env-development")
    assert "cellplane deploy api --env development -p shop" in dev_card.locator(".cli").inner_text()
    dev_card.get_by_role("button", name=f"Deploy build #{second['number']}").click()
    # htmx swaps the cards in place (no navigation) and the live region says what was done
    page.locator("#flash", has_text=f"Deploying build #{second['number']} to development").wait_for()
    text = _settled(page, "development")
    dev_release = c.get(f"{API}/deployments/development").json()["release"]
    assert dev_release in text
    answer = httpx.get(_url(text) + "/", timeout=10).json()
    assert answer["release"] == dev_release

    # promote to staging: the confirmation page shows the artifact changing from build #1's to build #2's
    page.locator("#env-staging").get_by_role("link", name="Promote from development…").click()
    page.wait_for_url(re.compile(".*/deploy/staging/promote.*"))
    diff = page.get_by_role("region", name="What changes in staging").inner_text()
    assert shop["first"]["artifact"] in diff and second["artifact"] in diff, diff
    assert "cellplane promote api --from development --to staging -p shop" in page.locator(".cli").inner_text()
    assert _serious(axe(page)) == []
    page.get_by_role("button", name="Promote to staging").click()
    page.wait_for_url(re.compile(".*/deploy(#.*)?$"))
    staging = c.get(f"{API}/deployments/staging").json()
    assert staging["artifact"] == second["artifact"] and staging["requestedBy"] == "dana"
    # the card polls while the rollout is under way; a focused link inside keeps the focus across the swaps
    state = page.locator("#env-staging-state")
    assert state.get_attribute("hx-trigger") == "every 1s"
    page.locator("#env-staging-build").focus()
    state.evaluate("e => { e.dataset.first = 'yes' }")
    text = _settled(page, "staging", staging["release"])
    assert state.get_attribute("data-first") is None and state.get_attribute("hx-trigger") is None  # replaced
    assert page.evaluate("document.activeElement.id") == "env-staging-build"
    assert httpx.get(_url(text) + "/", timeout=10).json()["release"] == staging["release"]

    # production needs approval: the request shows with a link to the inbox; another user approves it
    page.locator("#env-production").get_by_role("link", name="Promote from staging…").click()
    page.get_by_role("button", name="Request promotion to production").click()
    page.wait_for_url(re.compile(".*/deploy(#.*)?$"))
    prod = page.locator("#env-production-state")
    link = prod.get_by_role("link", name=re.compile("in the approvals inbox"))
    approval = link.get_attribute("href").rsplit("/", 1)[1]
    assert link.get_attribute("href") == f"/console/orgs/default/approvals/{approval}"
    assert "pending" in prod.inner_text()
    _shoot(page, "deploy")
    approver = build_server.server.client(shop["approver"].token)
    r = approver.post(f"{ORG}/approvals/{approval}/approve", json={})
    assert r.status_code == 201 and r.json()["action"] == "created", r.text
    text = _settled(page, "production")  # the card polls while the request is pending, then follows the rollout
    assert "approved by alice" in text
    production = c.get(f"{API}/deployments/production").json()
    assert httpx.get(_url(text) + "/", timeout=10).json()["release"] == production["release"]

    # roll staging back to build #1's release
    card = page.locator("#env-staging")
    card.get_by_label("Roll back to").select_option(shop["old_release"])
    card.get_by_role("button", name="Roll back").click()
    page.locator("#flash", has_text=f"Rolling back staging to release {shop['old_release']}").wait_for()
    back = c.get(f"{API}/deployments/staging").json()
    assert back["release"] == shop["old_release"] and back["artifact"] == shop["first"]["artifact"]
    text = _settled(page, "staging", shop["old_release"])
    assert httpx.get(_url(text) + "/", timeout=10).json()["release"] == shop["old_release"]
    assert _serious(axe(page)) == []

    # the overview lists each environment's URLs, the latest build and the releases
    page.goto(build_server.server.url + DEPLOY.removesuffix("/deploy"))
    urls = page.get_by_role("region", name="URLs per environment").inner_text()
    for env in ("development", "staging", "production"):
        url = c.get(f"{API}/deployments/{env}").json()["endpoints"][0]["urls"]["external"]
        assert url in urls
    releases = page.get_by_role("region", name="Releases").inner_text()
    assert shop["old_release"] in releases and "rollback" in releases
    assert _serious(axe(page)) == []
    _shoot(page, "component")

    # on a narrow screen (360 px, as a phone; or 720 px at 200 % zoom) nothing makes the page scroll sideways
    page.set_viewport_size({"width": 360, "height": 800})
    for path in ("", "/deploy", "/build", f"/builds/{second['id']}"):
        page.goto(build_server.server.url + DEPLOY.removesuffix("/deploy") + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, (path, page.evaluate(
            "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > 360)"
            ".map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
            ".slice(0, 12)"))


def _shoot(page: Any, name: str) -> None:
    if os.environ.get("CELLPLANE_SCREENSHOTS") == "1":
        (ROOT / "docs/console").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / f"docs/console/{name}.png"), full_page=True)


def test_a_viewer_sees_no_action_and_a_forged_deploy_is_refused(build_server: BuildServer,
                                                                shop: dict[str, Any]) -> None:
    c = session_client(build_server.server, shop["viewer"])
    page = c.get(DEPLOY)
    assert page.status_code == 200 and "staging" in page.text
    main = page.text.split("<main", 1)[1]
    assert "<form" not in main and "Promote from" not in main
    before = build_server.client.get(f"{API}/releases").json()["items"]
    forged = c.form(DEPLOY + "/development")
    assert forged.status_code == 403 and "deployments:create" in forged.text, forged.text
    assert c.form(DEPLOY + "/staging/rollback", {"to": shop["old_release"]}).status_code == 403
    assert c.form(DEPLOY + "/staging/promote", {"from": "development"}).status_code == 403
    assert build_server.client.get(f"{API}/releases").json()["items"] == before


def test_a_crash_looping_deployment_shows_its_reason_and_last_lines(build_server: BuildServer,
                                                                    shop: dict[str, Any]) -> None:
    c = build_server.client
    build_app(c, "shop", "quitter", service(configuration={"env": [{"name": "EXIT_CODE", "value": "4"}]}),
              app="task")
    deploy(c, "shop", "quitter")
    wait_state(c, "shop", "quitter", ("crash-loop",), timeout=90)
    client = session_client(build_server.server, shop["dev"])
    r = client.get("/console/orgs/default/projects/shop/components/quitter/deploy")
    assert r.status_code == 200
    card = r.text.split('id="env-development"', 1)[1].split("</section>", 1)[0]
    assert "crash-loop" in card and "exited with 4" in card and "task done, exit 4" in card, card
    # settled: the state fragment tells htmx to stop polling
    fragment = client.get("/console/orgs/default/projects/shop/components/quitter/deploy/development/state",
                          headers={"HX-Request": "true"})
    assert fragment.status_code == 286 and "hx-trigger" not in fragment.text


def test_a_refused_deploy_shows_the_apis_reason_on_its_card(build_server: BuildServer, shop: dict[str, Any]) -> None:
    component(build_server.client, "shop", "fresh", service())
    client = session_client(build_server.server, shop["dev"])
    r = client.form("/console/orgs/default/projects/shop/components/fresh/deploy/development")
    assert r.status_code == 409, r.text
    card = r.text.split('id="env-development"', 1)[1].split("</section>", 1)[0]
    assert 'role="alert"' in card and "build" in card.split('role="alert"', 1)[1]
    assert "No succeeded build to deploy yet" in r.text
