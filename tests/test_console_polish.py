"""The component pages' actions with and without JavaScript, against a real control plane in the real browser: while
a form's POST is in flight (held by Playwright's router) its button is disabled, its busy text shows and the region
it will replace is aria-busy; with htmx the Configuration tab's tables are swapped in place, the live region says what
happened and the focus is back on the button used; a refusal swaps the form with the API's message and the field
marked; with JavaScript off every form (set, replace, unset) still works by POST and redirect. Over HTTP: an htmx
action answers the page with its result in the live region, a plain one a 303, and the Build tab's start answers
htmx with HX-Redirect."""

from __future__ import annotations

import html
from typing import Any

import pytest

from browserkit import axe
from consolekit import ConsoleClient, ConsoleUser, make_user, session_client, signed_in
from liveserver import LiveServer, doc

P = "polish"
BASE = f"/console/orgs/default/projects/{P}/components/web"
API = f"/organizations/default/projects/{P}/components/web"
HTMX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def dev_user(live_server: LiveServer) -> ConsoleUser:
    r = live_server.client().post("/apply", json={"documents": [
        doc("Project", P, organization="default"),
        doc("Component", "web", {"type": "service", "endpoints": [{"name": "api", "port": 8080}],
                                 "source": {"repository": "https://example.invalid/web.git"},
                                 "configuration": {"env": [{"name": "GREETING", "value": "hello"}]}},
            organization="default", project=P)]})
    assert r.status_code == 200, r.text
    return make_user(live_server, "polly", role="developer")


@pytest.fixture(scope="module")
def dev(live_server: LiveServer, dev_user: ConsoleUser) -> ConsoleClient:
    return session_client(live_server, dev_user)


def config_items(live_server: LiveServer, env: str = "development") -> dict[str, Any]:
    r = live_server.client().get(API + "/config", params={"env": env})
    assert r.status_code == 200, r.text
    return {i["key"]: i for i in r.json()["items"]}


def test_an_htmx_change_answers_the_page_with_its_result_and_a_plain_one_a_redirect(live_server: LiveServer,
                                                                                    dev: ConsoleClient) -> None:
    data = {"env": "development", "key": "HX_ONE", "value": "one", "scope": "env"}
    r = dev.form(BASE + "/config/set", data, headers=HTMX)
    assert r.status_code == 200, r.text
    assert 'id="config-live"' in r.text and "<code>one</code>" in r.text
    assert '<div id="flash" role="status" aria-live="polite">HX_ONE set in development</div>' in r.text
    plain = dev.form(BASE + "/config/set", {**data, "value": "two"})
    assert plain.status_code == 303 and plain.headers["location"] == BASE + "/config?env=development"
    assert config_items(live_server)["HX_ONE"]["value"] == "two"
    r = dev.form(BASE + "/config/unset", {"env": "development", "key": "HX_ONE", "scope": "env"}, headers=HTMX)
    assert r.status_code == 200 and "HX_ONE unset in development" in r.text
    assert "HX_ONE" not in config_items(live_server)
    refused = dev.form(BASE + "/config/set", {"env": "development", "key": "bad key", "value": "x"}, headers=HTMX)
    assert refused.status_code == 422 and 'aria-invalid="true"' in refused.text
    assert '<div id="flash" role="status" aria-live="polite"></div>' in refused.text


def test_starting_a_build_with_htmx_navigates_by_hx_redirect_and_a_refusal_shows_the_form(dev: ConsoleClient) -> None:
    refused = dev.form(BASE + "/build", {"ref": "-bad ref-"}, headers=HTMX)
    assert refused.status_code in (400, 409, 422), refused.text
    assert 'id="start-build"' in refused.text and 'role="alert"' in refused.text
    assert "hx-disabled-elt" in refused.text and "Starting the build…" in html.unescape(refused.text)


def test_a_form_in_flight_has_its_button_disabled_and_says_so_then_swaps_in_place(
        page: Any, live_server: LiveServer, dev_user: ConsoleUser) -> None:
    from playwright.sync_api import expect
    signed_in(page, live_server, dev_user, BASE + "/config")
    page.wait_for_function("() => window.htmx !== undefined")
    held: list[Any] = []
    page.route("**/config/set", lambda route: held.append(route))
    form = page.locator("form", has=page.get_by_role("button", name="Set variable"))
    form.get_by_label("Name", exact=True).fill("API_URL")
    form.get_by_label("Value", exact=True).fill("http://api.example")
    button = page.locator("#set-variable")
    button.click()
    expect(button).to_be_disabled()
    expect(form.locator(".busy")).to_be_visible()
    expect(form.locator(".busy")).to_have_text("Setting the variable…")
    expect(page.locator("#config-live")).to_have_attribute("aria-busy", "true")
    assert len(held) == 1
    held[0].continue_()
    row = page.get_by_role("row", name="API_URL")
    row.wait_for()
    assert row.get_by_role("cell").nth(0).inner_text() == "http://api.example"
    expect(page.locator("#flash")).to_have_text("API_URL set in development")
    expect(page.locator("#set-variable")).to_be_focused()
    expect(page.locator("#set-variable")).to_be_enabled()
    assert page.locator("#config-live").get_attribute("aria-busy") is None
    assert page.url == live_server.url + BASE + "/config"  # no navigation: swapped in place
    page.unroute("**/config/set")
    assert [v for v in axe(page) if v.get("impact") in ("serious", "critical")] == []
    # a row's own form: unset, swapped in place, the focus on the region (its button is gone)
    page.locator("#unset-API_URL").click()
    expect(page.locator("#flash")).to_have_text("API_URL unset in development")
    expect(page.get_by_role("row", name="API_URL")).to_have_count(0)
    expect(page.locator("#config-live")).to_be_focused()
    # a refusal: the form again with the API's message, the field marked, the focus back on the button
    form = page.locator("form", has=page.get_by_role("button", name="Set variable"))
    form.get_by_label("Name", exact=True).fill("not a key")
    page.locator("#set-variable").click()
    expect(page.locator("#variable-key")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#config-live [role=alert]").first).to_be_visible()
    expect(page.locator("#set-variable")).to_be_focused()


def test_every_configuration_form_works_with_javascript_off(browser: Any, live_server: LiveServer,
                                                             dev_user: ConsoleUser) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        signed_in(page, live_server, dev_user, BASE + "/config")
        form = page.locator("form", has=page.get_by_role("button", name="Set variable"))
        form.get_by_label("Name", exact=True).fill("NOJS")
        form.get_by_label("Value", exact=True).fill("plain-post")
        form.get_by_role("button", name="Set variable").click()
        page.wait_for_url(live_server.url + BASE + "/config?env=development")
        assert config_items(live_server)["NOJS"]["value"] == "plain-post"
        secret = page.locator("form", has=page.get_by_role("button", name="Set secret"))
        secret.get_by_label("Name", exact=True).fill("NOJS_SECRET")
        secret.get_by_label("Value", exact=True).fill("s3cret-nojs")
        secret.get_by_role("button", name="Set secret").click()
        page.wait_for_load_state()
        page.get_by_label("Replace NOJS_SECRET").fill("s3cret-replaced")
        page.locator("#set-NOJS_SECRET").click()
        page.wait_for_load_state()
        assert config_items(live_server)["NOJS_SECRET"]["version"] == 2
        assert "s3cret" not in page.content()
        page.locator("#unset-NOJS").click()
        page.wait_for_load_state()
        assert "NOJS" not in config_items(live_server)
        assert page.locator(".busy").first.is_hidden()
    finally:
        context.close()


def test_the_overview_lists_environments_in_the_pipelines_order_not_by_name() -> None:
    from cellplane.console.pages_component import in_pipeline_order
    pipeline = {"spec": {"promotionPaths": [
        {"source": "development", "targets": [{"name": "staging"}]},
        {"source": "staging", "targets": [{"name": "production", "requiresApproval": True}]}]}}
    deployments = [{"environment": e, "endpoints": []} for e in ("staging", "sandbox", "production", "development")]
    assert [d["environment"] for d in in_pipeline_order(pipeline, deployments)] == [
        "development", "staging", "production", "sandbox"]
    assert [d["environment"] for d in in_pipeline_order(None, deployments)] == [
        "development", "production", "sandbox", "staging"]


def test_the_overview_reads_the_pipeline_of_its_project(live_server: LiveServer, dev: ConsoleClient) -> None:
    r = dev.get(BASE)
    assert r.status_code == 200, r.text
    assert "URLs per environment" in r.text


def test_connections_name_callers_from_other_projects_only_to_who_may_read_them(live_server: LiveServer,
                                                                               dev: ConsoleClient) -> None:
    admin = live_server.client()
    r = admin.post("/apply", json={"documents": [
        doc("Project", "polish-far", organization="default"),
        doc("Component", "caller", {"type": "service", "endpoints": [{"name": "api", "port": 8080}],
                                    "dependencies": [{"name": "web-api", "project": P, "component": "web",
                                                      "endpoint": "api"}]},
            organization="default", project="polish-far")]})
    assert r.status_code == 200, r.text
    text = html.unescape(dev.get(BASE + "/connections").text)
    assert "Who calls it from other projects" in text
    assert "polish-far/caller" in text and "connection <code>web-api</code> to api" in text
    assert "/console/orgs/default/projects/polish-far/components/caller/connections?env=development" in text
    # someone who may read only this project's components is not told about the other project's caller
    local = make_user(live_server, "paula", role="viewer", project=P)
    only_here = session_client(live_server, local)
    text = html.unescape(only_here.get(BASE + "/connections").text)
    assert "Who calls it from other projects" in text and "polish-far" not in text


def test_a_refused_deploy_with_htmx_answers_the_cards_with_the_apis_reason_on_its_card(dev: ConsoleClient) -> None:
    r = dev.form(BASE + "/deploy/development", headers=HTMX)
    assert r.status_code == 409, r.text
    text = html.unescape(r.text)
    card = text[text.index('id="env-development"'):text.index('id="env-staging"')]
    assert 'role="alert"' in card and 'id="envs"' in text
    assert '<div id="flash" role="status" aria-live="polite"></div>' in text
    plain = dev.form(BASE + "/deploy/development/rollback", {"to": "nope"})
    assert plain.status_code in (404, 409, 422), plain.text
    promote = dev.form(BASE + "/deploy/staging/promote", {"from": "development"}, headers=HTMX)
    assert promote.status_code == 409 and "HX-Redirect" not in promote.headers
