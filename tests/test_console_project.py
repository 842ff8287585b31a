"""The project page and the new-component page in the real browser (Debian's Chromium through Playwright), against a
real control plane: the components-by-environments table, the cell diagram and its text alternative, clicking a
component's box, switching the diagram's environment, creating a component from a local Git repository (file://)
and from a descriptor, the API's message for a bad one, the empty state; axe on each page.

With CELLPLANE_SCREENSHOTS=1 the page is saved as docs/console/project.png (never otherwise: runs keep the tree clean).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from browserkit import ROOT, axe
from consolekit import ConsoleUser, make_user, session_client, signed_in
from liveserver import LiveServer

ORG, P = "default", "shop"
PAGE = f"/console/orgs/{ORG}/projects/{P}"
DESCRIPTOR = """\
schemaVersion: 1.2
endpoints:
  - name: web
    service:
      basePath: /greet
      port: 8080
    type: REST
    networkVisibilities: [Public]
"""


def _serious(page: Any) -> list[tuple[str, str]]:
    return [(v["id"], v["impact"]) for v in axe(page) if v["impact"] in ("serious", "critical")]


def _post(admin: httpx.Client, path: str, body: dict[str, Any]) -> Any:
    r = admin.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def dev(live_server: LiveServer) -> ConsoleUser:
    """A developer of the default organization, and the project shop: front (Public) calls store (Project)."""
    admin = live_server.client()
    _post(admin, f"/organizations/{ORG}/projects", {"metadata": {"name": P}, "spec": {}})
    _post(admin, f"/organizations/{ORG}/projects", {"metadata": {"name": "empty"}, "spec": {}})
    base = f"/organizations/{ORG}/projects/{P}/components"
    _post(admin, base, {"metadata": {"name": "store"}, "spec": {"type": "service", "endpoints": [
        {"name": "api", "port": 8080, "visibility": ["Project"]}]}})
    _post(admin, base, {"metadata": {"name": "front"}, "spec": {"type": "web-app", "endpoints": [
        {"name": "web", "port": 8080, "visibility": ["Public"]}],
        "dependencies": [{"name": "store", "component": "store"}]}})
    return make_user(live_server, "pat", role="developer")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Git repository with a Choreo descriptor in greeter/ (committed on main)."""
    root = tmp_path_factory.mktemp("git") / "shop"
    (root / "greeter" / ".choreo").mkdir(parents=True)
    (root / "greeter" / ".choreo" / "component.yaml").write_text(DESCRIPTOR)
    (root / "greeter" / "app.py").write_text("print('hello')\n")

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(root), *args],
                       check=True, capture_output=True)

    git("init", "--quiet", "-b", "main")
    git("add", ".")
    git("commit", "--quiet", "-m", "greeter")
    return root


def test_the_project_page_shows_components_by_environment_and_the_cell(
        page: Any, live_server: LiveServer, dev: ConsoleUser) -> None:
    signed_in(page, live_server, dev, PAGE)
    assert page.get_by_role("heading", level=1).inner_text() == f"Project {P}"
    table = page.locator("table.matrix")
    heads = table.locator("thead th").all_inner_texts()
    assert heads == ["Component", "Type", "development", "staging", "production"]  # the pipeline's order
    rows = table.locator("tbody tr")
    assert rows.locator("th").all_inner_texts() == ["front", "store"]
    assert rows.nth(0).locator("td").all_inner_texts() == ["web-app"] + ["not deployed"] * 3
    diagram = page.locator("svg.cell-diagram")
    assert diagram.locator("title").first.text_content() == f"Cell diagram of project {P} in development"
    assert diagram.locator("a").count() == 2
    assert page.get_by_text("cellplane describe project shop --env development").is_visible()
    page.locator("details.cell-text-wrap summary").click()
    flows = page.locator("table.cell-flows tbody tr").all_inner_texts()
    assert any(re.match(r"front\s+store\s+inside the cell", row) for row in flows), flows
    assert _serious(page) == []
    if os.environ.get("CELLPLANE_SCREENSHOTS") == "1":
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(ROOT / "docs" / "console" / "project.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 740})  # a narrow screen: wide parts scroll in their own box
    wide = page.evaluate("() => [...document.querySelectorAll('body *')].filter(e => !e.closest("
                         "'.table-wrap, .diagram-scroll') && e.getBoundingClientRect().right > 361)"
                         ".map(e => e.outerHTML.slice(0, 80))")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360, wide


def test_a_box_of_the_diagram_is_a_link_to_its_component_page(
        page: Any, live_server: LiveServer, dev: ConsoleUser) -> None:
    signed_in(page, live_server, dev, PAGE)
    box = page.locator("svg.cell-diagram a", has=page.locator("title", has_text="Component front"))
    box.click()
    page.wait_for_url(live_server.url + PAGE + "/components/front")
    page.go_back()
    page.wait_for_url(live_server.url + PAGE)
    store = page.locator("svg.cell-diagram a", has=page.locator("title", has_text="Component store"))
    store.focus()  # reachable from the keyboard too
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + PAGE + "/components/store")


def test_the_diagram_follows_the_environment_chosen(page: Any, live_server: LiveServer, dev: ConsoleUser) -> None:
    signed_in(page, live_server, dev, PAGE)
    page.get_by_label("Environment").select_option("staging")
    page.get_by_role("button", name="Show").click()
    page.locator("svg.cell-diagram title", has_text="in staging").wait_for(state="attached")
    if page.evaluate("() => typeof window.htmx === 'object'"):  # only the diagram was swapped
        assert page.url == live_server.url + PAGE
        assert page.get_by_role("button", name="Show").is_visible()
    else:  # the plain form: the page again, for that environment
        assert page.url == live_server.url + PAGE + "?environment=staging"
    assert _serious(page) == []


def test_a_component_is_created_from_a_local_git_repository(
        page: Any, live_server: LiveServer, dev: ConsoleUser, repo: Path) -> None:
    signed_in(page, live_server, dev, PAGE + "/new")
    assert _serious(page) == []
    page.get_by_label("Component name").fill("greeter")
    page.get_by_label("Repository URL").fill(f"file://{repo}")
    page.get_by_label("Branch").fill("main")
    page.get_by_label("Path in the repository").fill("greeter")
    page.get_by_role("button", name="Create from the repository").click()
    page.wait_for_url(re.compile(re.escape(live_server.url + PAGE) + r"\?created=greeter$"))
    assert "Component greeter created." in page.locator("p.notice").inner_text()
    assert "greeter" in page.locator("table.matrix tbody th").all_inner_texts()
    spec = live_server.client().get(f"/organizations/{ORG}/projects/{P}/components/greeter").json()["spec"]
    assert [(e["name"], e["port"], e["basePath"]) for e in spec["endpoints"]] == [("web", 8080, "/greet")]
    assert spec["source"] == {"repository": f"file://{repo}", "branch": "main", "path": "greeter"}


def test_a_bad_repository_path_is_shown_at_its_field(page: Any, live_server: LiveServer, dev: ConsoleUser,
                                                      repo: Path) -> None:
    signed_in(page, live_server, dev, PAGE + "/new")
    page.get_by_label("Component name").fill("lost")
    page.get_by_label("Repository URL").fill(f"file://{repo}")
    page.get_by_label("Path in the repository").fill("no/such/dir")
    page.get_by_role("button", name="Create from the repository").click()
    path = page.get_by_label("Path in the repository")
    path.wait_for()
    assert path.get_attribute("aria-invalid") == "true"
    assert page.get_by_role("alert").count() == 1
    assert page.get_by_label("Component name").input_value() == "lost"  # what was typed is kept
    assert _serious(page) == []


def test_a_component_is_created_from_a_descriptor_and_a_bad_one_shows_the_apis_message(
        page: Any, live_server: LiveServer, dev: ConsoleUser) -> None:
    signed_in(page, live_server, dev, PAGE + "/new")
    box = page.get_by_label("Component document (YAML)")
    box.fill("metadata:\n  name: broken\nspec:\n  type: service\n  endpoints:\n    - name: api\n      port: lots\n")
    page.get_by_role("button", name="Create from the descriptor").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "spec.endpoints[0].port" in alert.inner_text()
    assert page.get_by_label("Component document (YAML)").get_attribute("aria-invalid") == "true"
    assert _serious(page) == []
    page.get_by_label("Component document (YAML)").fill(
        "metadata:\n  name: pinger\nspec:\n  type: service\n  endpoints:\n    - name: api\n      port: 9000\n")
    page.get_by_role("button", name="Create from the descriptor").click()
    page.wait_for_url(re.compile(r"\?created=pinger$"))
    assert "pinger" in page.locator("table.matrix tbody th").all_inner_texts()


def test_the_descriptor_must_be_yaml(live_server: LiveServer, dev: ConsoleUser) -> None:
    client = session_client(live_server, dev)
    r = client.form(PAGE + "/new/descriptor", {"descriptor": "metadata: [unclosed"})
    assert r.status_code == 422
    assert "the descriptor is not YAML (line 1" in r.text
    r = client.form(PAGE + "/new/descriptor", {"descriptor": "<script>alert(1)</script>"})
    assert r.status_code == 422 and "<script>alert(1)" not in r.text  # kept in the form, as text


def test_an_empty_project_says_how_to_create_a_component(page: Any, live_server: LiveServer,
                                                          dev: ConsoleUser) -> None:
    signed_in(page, live_server, dev, f"/console/orgs/{ORG}/projects/empty")
    assert page.get_by_text("No components yet: create one").is_visible()
    assert page.get_by_role("link", name="Create a component").get_attribute("href") == (
        f"/console/orgs/{ORG}/projects/empty/new")
    assert page.get_by_text("cellplane create component NAME --project empty --source GIT_URL").is_visible()
    assert _serious(page) == []


def test_a_project_that_does_not_exist_is_a_404_with_the_apis_message(live_server: LiveServer,
                                                                       dev: ConsoleUser) -> None:
    client = session_client(live_server, dev)
    r = client.get(f"/console/orgs/{ORG}/projects/nope")
    assert r.status_code == 404 and "Project &#39;default/nope&#39; not found" in r.text


def test_a_viewer_sees_no_create_button_and_a_forged_create_is_refused_by_the_api(
        page: Any, live_server: LiveServer, dev: ConsoleUser) -> None:
    watcher = make_user(live_server, "vic", role="viewer")
    signed_in(page, live_server, watcher, PAGE)
    assert page.locator("table.matrix").is_visible()
    assert page.get_by_role("link", name="Create a component").count() == 0
    client = session_client(live_server, watcher)
    r = client.form(PAGE + "/new/git", {"name": "sneaky", "repository": "https://git.example.invalid/x.git"})
    assert r.status_code == 403 and 'role="alert"' in r.text
    r = client.form(PAGE + "/new/descriptor", {"descriptor": "metadata:\n  name: sneaky\nspec: {}\n"})
    assert r.status_code == 403
    assert live_server.client().get(f"/organizations/{ORG}/projects/{P}/components/sneaky").status_code == 404


def test_markup_in_a_projects_names_is_shown_as_text(live_server: LiveServer, dev: ConsoleUser) -> None:
    evil = '<img src=x onerror="alert(1)">'
    _post(live_server.client(), f"/organizations/{ORG}/projects",
          {"metadata": {"name": "marked"}, "spec": {"displayName": evil, "description": "<script>alert(2)</script>"}})
    r = session_client(live_server, dev).get(f"/console/orgs/{ORG}/projects/marked")
    assert r.status_code == 200
    assert "<img src=x" not in r.text and "<script>alert(2)" not in r.text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in r.text
