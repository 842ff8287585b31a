"""The Configuration tab over HTTP and in the real browser, against a real control plane: a secret set through
the form is never in any page's HTML nor in the API's answers; a plain value shows; a viewer gets no form and a
forged POST gets the API's own refusal with nothing changed; a refused value is never put back into the form;
axe-core finds no serious violation. With CELLPLANE_SCREENSHOTS=1 the page is photographed for docs/console.md."""

from __future__ import annotations

import html
import os
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from browserkit import axe
from consolekit import ConsoleClient, ConsoleUser, make_user, session_client, signed_in
from liveserver import LiveServer, doc

P = "conf"
BASE = f"/console/orgs/default/projects/{P}/components/web"
API = f"/organizations/default/projects/{P}/components/web"
SECRET = "s3cret-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def users(live_server: LiveServer) -> dict[str, ConsoleUser]:
    admin = live_server.client()
    r = admin.post("/apply", json={"documents": [
        doc("Project", P, organization="default"),
        doc("Component", "web", {"type": "service", "endpoints": [{"name": "api", "port": 8080}],
                                 "configuration": {"env": [{"name": "GREETING", "value": "hello"},
                                                           {"name": "DB_PASSWORD", "secret": True}]}},
            organization="default", project=P)]})
    assert r.status_code == 200, r.text
    return {"dev": make_user(live_server, "cora", role="developer"),
            "viewer": make_user(live_server, "vic", role="viewer")}


@pytest.fixture(scope="module")
def dev(live_server: LiveServer, users: dict[str, ConsoleUser]) -> ConsoleClient:
    return session_client(live_server, users["dev"])


def config_items(live_server: LiveServer, env: str = "development") -> dict[str, dict[str, Any]]:
    r = live_server.client().get(API + "/config", params={"env": env})
    assert r.status_code == 200, r.text
    return {i["key"]: i for i in r.json()["items"]}


def test_a_secret_set_through_the_form_is_never_shown_again(live_server: LiveServer, dev: ConsoleClient,
                                                             users: dict[str, ConsoleUser]) -> None:
    r = dev.form(BASE + "/config/set", {"env": "development", "key": "API_KEY", "value": SECRET, "secret": "1",
                                        "scope": "env"})
    assert r.status_code == 303, r.text
    assert config_items(live_server)["API_KEY"]["secret"] is True
    pages = [BASE + "/config?env=development", BASE + "/config?env=staging", BASE + "/connections",
             BASE + "/observe", BASE + "/config"]
    for path in pages:
        page = dev.get(path)
        assert page.status_code == 200, (path, page.text)
        assert SECRET not in page.text, path
    text = dev.get(BASE + "/config?env=development").text
    assert "API_KEY" in text and "write-only" in text and "********" not in text
    token = users["dev"].token
    api = httpx.Client(base_url=live_server.api, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    for path, params in ((API + "/config", {"env": "development"}), (API + "/config", {}), (API, {}),
                         ("/audit", {"organization": "default"})):
        answer = api.get(path, params=params)
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text, path
    api.close()
    # replacing it takes a new value, still never shown
    replaced = "r3placed-" + secrets.token_hex(8)
    r = dev.form(BASE + "/config/set", {"env": "development", "key": "API_KEY", "value": replaced, "secret": "1"})
    assert r.status_code == 303
    assert replaced not in dev.get(BASE + "/config?env=development").text
    assert config_items(live_server)["API_KEY"]["version"] == 2


def test_a_refused_value_is_not_put_back_into_the_form(dev: ConsoleClient) -> None:
    value = "never-echoed-" + secrets.token_hex(6)
    r = dev.form(BASE + "/config/set", {"env": "development", "key": "bad key!", "value": value, "secret": "1"})
    assert r.status_code == 422, r.text
    assert 'role="alert"' in r.text and 'aria-invalid="true"' in r.text
    assert value not in r.text


def test_a_plain_value_can_be_set_and_unset_for_every_environment(live_server: LiveServer,
                                                                   dev: ConsoleClient) -> None:
    r = dev.form(BASE + "/config/set", {"env": "development", "key": "COLOR", "value": "teal", "scope": "all"})
    assert r.status_code == 303, r.text
    assert config_items(live_server, "staging")["COLOR"]["value"] == "teal"
    assert "teal" in dev.get(BASE + "/config?env=staging").text
    r = dev.form(BASE + "/config/unset", {"env": "staging", "key": "COLOR", "scope": "all"})
    assert r.status_code == 303, r.text
    assert "COLOR" not in config_items(live_server, "staging")


def test_a_viewer_gets_no_form_and_a_forged_post_is_refused(live_server: LiveServer,
                                                            users: dict[str, ConsoleUser]) -> None:
    viewer = session_client(live_server, users["viewer"])
    text = viewer.get(BASE + "/config?env=development").text
    assert "GREETING" in text and "hello" in text
    assert 'action="' + BASE + '/config/set"' not in text and 'name="value"' not in text
    r = viewer.form(BASE + "/config/set", {"env": "development", "key": "GREETING", "value": "forged"})
    assert r.status_code == 403
    api = live_server.client(users["viewer"].token).put(API + "/config/GREETING", params={"env": "development"},
                                                         json={"value": "forged"})
    assert api.status_code == 403
    assert api.json()["error"]["message"] in html.unescape(r.text)
    assert config_items(live_server)["GREETING"]["value"] == "hello"


def test_the_configuration_page_in_the_browser(page: Any, live_server: LiveServer,
                                               users: dict[str, ConsoleUser]) -> None:
    signed_in(page, live_server, users["dev"], BASE + "/config")
    form = page.locator("form", has=page.get_by_role("button", name="Set variable"))
    form.get_by_label("Name", exact=True).fill("FEATURE_FLAG")
    form.get_by_label("Value", exact=True).fill("switched-on")
    form.get_by_role("button", name="Set variable").click()
    row = page.get_by_role("row", name="FEATURE_FLAG")
    row.wait_for()
    assert row.get_by_role("cell").nth(0).inner_text() == "switched-on"
    assert "cellplane config get web --env development -p conf" in page.locator(".cli code").first.inner_text()
    assert [v for v in axe(page) if v.get("impact") in ("serious", "critical")] == []
    if os.environ.get("CELLPLANE_SCREENSHOTS") == "1":
        root = Path(__file__).resolve().parent.parent
        (root / "docs/console").mkdir(exist_ok=True)
        page.screenshot(path=str(root / "docs/console/config.png"), full_page=True)


def test_pages_of_a_component_not_deployed_say_what_to_do(dev: ConsoleClient) -> None:
    observe = html.unescape(dev.get(BASE + "/observe?env=development").text)
    assert "web is not deployed in development: deploy it" in observe
    assert "No log lines yet." in observe and "No traces yet." in observe
    test = html.unescape(dev.get(BASE + "/test?env=development").text)
    assert "No deployment in development yet." in test
    connections = html.unescape(dev.get(BASE + "/connections").text)
    assert "No connections yet." in connections
    missing = dev.get(f"/console/orgs/default/projects/{P}/components/nope/observe")
    assert missing.status_code == 404 and "nope" in html.unescape(missing.text)
