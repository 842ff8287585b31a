"""The Build and Deploy tabs' forms with JavaScript off and with a POST held in flight, in the real browser, with a
real control plane, real builds and a real local data plane: with JavaScript off a build is started from the Build
tab's form (POST, 303 to its page), deployed from the Deploy tab's (POST, 303 back to the card) and rolled back
to its first release after a configuration change made a second; with htmx a held
deploy shows its button disabled and "Deploying build #1…" while the cards are aria-busy, then the cards are
swapped in place, the live region announces it and the focus is back on the button."""

from __future__ import annotations

from typing import Any

import pytest

from buildkit import APPS, BuildServer, component, git_repo
from consolekit import ConsoleUser, make_user, signed_in
from dataplanekit import AgentProcess, service

API = "/organizations/default/projects/gloss/components/api"
BASE = "/console/orgs/default/projects/gloss/components/api"


@pytest.fixture(scope="module")
def dev(build_server: BuildServer, dataplane: AgentProcess, tmp_path_factory: pytest.TempPathFactory) -> ConsoleUser:
    repo = git_repo(tmp_path_factory.mktemp("src"), APPS / "echo")
    component(build_server.client, "gloss", "api", {"source": {"repository": f"file://{repo}", "branch": "main"},
                                                    **service()})
    return make_user(build_server.server, "gwen", role="developer")


def test_build_and_deploy_forms_work_with_javascript_off_and_show_a_held_deploy_in_flight(
        browser: Any, build_server: BuildServer, dev: ConsoleUser) -> None:
    from playwright.sync_api import expect
    server, c = build_server.server, build_server.client
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        signed_in(page, server, dev, BASE + "/build")
        page.get_by_role("button", name="Start build").click()
        page.wait_for_url(f"{server.url}{BASE}/builds/*")
        build_id = page.url.rsplit("/", 1)[1]
        for _ in range(600):  # no htmx: the page is reloaded by hand until the build has ended
            state = c.get(f"/organizations/default/builds/{build_id}").json()["state"]
            if state not in ("queued", "running"):
                break
            page.wait_for_timeout(500)
        assert state == "succeeded", state
        page.goto(server.url + BASE + "/deploy")
        page.locator("#deploy-development").click()
        page.wait_for_url(f"{server.url}{BASE}/deploy#env-development")
        first = c.get(f"{API}/deployments/development").json()
        assert first["build"]["number"] == 1
        assert page.locator(".busy").first.is_hidden()
        # a configuration change makes a second release there; the rollback form brings the first one back
        r = c.put(f"{API}/config/COLOR", params={"env": "development"}, json={"value": "red"})
        assert r.status_code in (200, 201), r.text
        second = c.get(f"{API}/deployments/development").json()
        assert second["release"] != first["release"], second
        page.goto(server.url + BASE + "/deploy")
        page.locator("#to-development").select_option(first["release"])
        page.locator("#rollback-development").click()
        page.wait_for_url(f"{server.url}{BASE}/deploy#env-development")
        assert c.get(f"{API}/deployments/development").json()["release"] == first["release"]
    finally:
        context.close()

    page = browser.new_context().new_page()
    try:
        signed_in(page, server, dev, BASE + "/deploy")
        page.wait_for_function("() => window.htmx !== undefined")
        held: list[Any] = []
        page.route("**/deploy/staging", lambda route: held.append(route))
        button = page.locator("#deploy-staging")
        button.click()
        expect(button).to_be_disabled()
        busy = page.locator("#env-staging .busy")
        expect(busy).to_be_visible()
        expect(busy).to_have_text("Deploying build #1…")
        expect(page.locator("#envs")).to_have_attribute("aria-busy", "true")
        held[0].continue_()
        expect(page.locator("#flash")).to_have_text("Deploying build #1 to staging")
        expect(page.locator("#deploy-staging")).to_be_focused()
        assert page.url == server.url + BASE + "/deploy"
        assert c.get(f"{API}/deployments/staging").json()["build"]["number"] == 1
        # into production a deploy is a request for approval: the live region says so
        page.locator("#deploy-production").click()
        expect(page.locator("#flash")).to_have_text("Deploying build #1 to production: waiting for approval")
    finally:
        page.context.close()
