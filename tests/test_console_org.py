"""The organization's pages over plain signed-in HTTP against a real control plane: creating a project through the
form (and a bad name refused with the API's message, nothing created), granting and revoking a role, a viewer
shown no create/grant/revoke control and refused a forged POST with the API's own message, environments and data
planes, the pipeline as stages, the audit log with its filters and paging, an unknown organization's 404."""

from __future__ import annotations

import re

import pytest

from consolekit import ConsoleClient, ConsoleUser, make_user, session_client
from liveserver import LiveServer, doc

ORG = "acme"
BASE = f"/console/orgs/{ORG}"


@pytest.fixture(scope="module")
def people(live_server: LiveServer) -> dict[str, ConsoleUser]:
    admin = live_server.client()
    r = admin.post("/organizations", json=doc("Organization", ORG, {"displayName": "Acme Corp"}))
    assert r.status_code == 201, r.text
    return {"owner": make_user(live_server, "olga", role="admin", org=ORG),
            "viewer": make_user(live_server, "vera", role="viewer", org=ORG)}


@pytest.fixture(scope="module")
def owner(live_server: LiveServer, people: dict[str, ConsoleUser]) -> ConsoleClient:
    return session_client(live_server, people["owner"])


@pytest.fixture(scope="module")
def viewer(live_server: LiveServer, people: dict[str, ConsoleUser]) -> ConsoleClient:
    return session_client(live_server, people["viewer"])


def main(html: str) -> str:
    """The page's <main> only (the header holds the sign-out button)."""
    found = re.search(r"(?s)<main[^>]*>(.*)</main>", html)
    assert found, html
    return found.group(1)


def test_creating_a_project_through_the_form_lists_it_with_its_components(live_server: LiveServer,
                                                                          owner: ConsoleClient) -> None:
    page = owner.get(BASE)
    assert page.status_code == 200 and "No projects in acme yet" in page.text
    assert "cellplane create project NAME --org acme" in page.text
    r = owner.form(f"{BASE}/projects", {"name": "shop", "displayName": "The shop", "description": "sells things"})
    assert r.status_code == 303 and r.headers["location"] == f"{BASE}/projects/shop"
    api = live_server.client()
    assert api.get(f"/organizations/{ORG}/projects/shop").json()["spec"]["description"] == "sells things"
    r = api.post("/apply", json={"documents": [doc("Component", "cart", {}, organization=ORG, project="shop")]})
    assert r.status_code == 200, r.text
    listed = main(owner.get(BASE).text)
    row = re.search(r'(?s)<tr>\s*<td><a href="/console/orgs/acme/projects/shop">The shop</a>.*?</tr>', listed)
    assert row, listed
    assert "sells things" in row.group(0) and "<td>1</td>" in row.group(0)


def test_a_bad_project_name_shows_the_apis_message_on_the_field_and_creates_nothing(live_server: LiveServer,
                                                                                   owner: ConsoleClient) -> None:
    api = live_server.client()
    before = api.get(f"/organizations/{ORG}/projects").json()["items"]
    r = owner.form(f"{BASE}/projects", {"name": "Bad_Name", "displayName": "kept"})
    assert r.status_code == 422
    page = main(r.text)
    assert "Project &#39;Bad_Name&#39; is not valid" in page
    assert 'role="alert"' in page and "<code>metadata.name</code>" in page
    assert re.search(r'<input id="f-name" name="name" type="text" value="Bad_Name" required aria-invalid="true"', page)
    assert 'id="f-name-error">&#39;Bad_Name&#39; is not a valid name' in page
    assert 'value="kept"' in page  # what was typed stays
    assert api.get(f"/organizations/{ORG}/projects").json()["items"] == before


def test_granting_and_revoking_a_role_through_the_members_page(live_server: LiveServer,
                                                               owner: ConsoleClient) -> None:
    api = live_server.client()
    assert api.post("/users", json={"name": "gus"}).status_code == 201
    r = owner.form(f"{BASE}/members", {"user": "gus", "role": "approver", "environment": "production"})
    assert r.status_code == 303 and r.headers["location"] == f"{BASE}/members"
    bindings = [b for b in api.get(f"/organizations/{ORG}/rolebindings").json()["items"] if b["user"] == "gus"]
    assert [(b["role"], b["environment"]) for b in bindings] == [("approver", "production")]
    page = main(owner.get(f"{BASE}/members").text)
    assert "environment <code>production</code>" in page and f"cellplane revoke {bindings[0]['id']}" in page

    refused = owner.form(f"{BASE}/members", {"user": "nobody-here", "role": "viewer"})
    assert refused.status_code == 404 and "user &#39;nobody-here&#39; not found" in refused.text

    r = owner.form(f"{BASE}/members/{bindings[0]['id']}/revoke")
    assert r.status_code == 303
    assert [b for b in api.get(f"/organizations/{ORG}/rolebindings").json()["items"] if b["user"] == "gus"] == []


def test_a_viewer_sees_no_create_grant_or_revoke_and_a_forged_post_gets_the_apis_refusal(
        live_server: LiveServer, viewer: ConsoleClient) -> None:
    projects = main(viewer.get(BASE).text)
    assert "Create project" not in projects and 'action="/console/orgs/acme/projects"' not in projects
    members = main(viewer.get(f"{BASE}/members").text)
    assert "vera" in members and "Grant role" not in members and "Revoke" not in members

    r = viewer.form(f"{BASE}/projects", {"name": "sneaky"})
    assert r.status_code == 403
    assert "permission &#39;projects:create&#39; is required" in r.text
    assert live_server.client().get(f"/organizations/{ORG}/projects/sneaky").status_code == 404
    r = viewer.form(f"{BASE}/members", {"user": "vera", "role": "admin"})
    assert r.status_code == 403 and "rolebindings:create" in r.text
    roles = {b["role"] for b in live_server.client().get(f"/organizations/{ORG}/rolebindings").json()["items"]
             if b["user"] == "vera"}
    assert roles == {"viewer"}


def test_environments_data_planes_and_the_pipeline_show_what_the_api_holds(live_server: LiveServer,
                                                                         owner: ConsoleClient) -> None:
    api = live_server.client()
    docs = [doc("DataPlane", "edge", {"displayName": "Edge"}, organization=ORG),
            doc("Environment", "dev", {"dataPlane": "edge"}, organization=ORG),
            doc("Environment", "qa", {"requiresApproval": True}, organization=ORG),
            doc("Environment", "prod", {"production": True, "dataPlane": "edge"}, organization=ORG),
            doc("DeploymentPipeline", "fast", {"promotionPaths": [
                {"source": "dev", "targets": [{"name": "qa"}, {"name": "prod", "requiresApproval": True}]},
                {"source": "qa", "targets": [{"name": "prod"}]}]}, organization=ORG)]
    r = api.post("/apply", json={"documents": docs})
    assert r.status_code == 200, r.text

    page = main(owner.get(f"{BASE}/environments").text)
    row = re.search(r'(?s)<th scope="row">prod <span class="badge badge-production">.*?</tr>', page)
    assert row and "<code>edge</code>" in row.group(0) and "approval required" in row.group(0)
    qa = re.search(r'(?s)<th scope="row">qa\b.*?</tr>', page)
    assert qa and "approval required" in qa.group(0) and "deploys here are refused" in qa.group(0)
    plane = re.search(r'(?s)<th scope="row">Edge <code>edge</code>.*?</tr>', page)
    assert plane and "never connected" in plane.group(0) and "<td>local</td>" in plane.group(0)
    assert "cellplane get environments --org acme" in page and "cellplane get dataplanes --org acme" in page

    pipeline = main(owner.get(f"{BASE}/pipeline").text)
    fast = pipeline[pipeline.index('<h2 id="pipeline-2">fast</h2>'):]
    columns = re.findall(r'(?s)<li class="stage-column">(.*?)</li>\s*</ul>\s*</li>', fast)
    names = [re.findall(r"<strong>([a-z]+)</strong>", c) for c in columns]
    assert names == [["dev"], ["qa", "prod"]]
    assert "from dev to" in columns[1]
    assert columns[1].count("approval required") == 2  # qa by its own flag, prod by the path and production


def test_the_audit_log_shows_the_actions_filtered_by_actor_action_and_outcome(live_server: LiveServer,
                                                                            owner: ConsoleClient,
                                                                            viewer: ConsoleClient) -> None:
    owner.form(f"{BASE}/projects", {"name": "audited"})
    viewer.form(f"{BASE}/projects", {"name": "denied-one"})  # refused: audited as denied
    page = main(owner.get(f"{BASE}/audit").text)
    assert "project/audited created" in page and "<code>create</code>" in page
    denied = main(owner.get(f"{BASE}/audit", params={"outcome": "denied"}).text)
    assert "vera" in denied and "olga" not in denied.split("<table>")[1]
    by_actor = main(owner.get(f"{BASE}/audit", params={"actor": "olga", "action": "create"}).text)
    rows = re.findall(r"(?s)<tr>\s*<td><time.*?</tr>", by_actor)
    assert rows and all("<td>olga</td>" in r and "<code>create</code>" in r for r in rows)
    assert 'value="olga"' in by_actor  # the filter form keeps what was asked
    nothing = main(owner.get(f"{BASE}/audit", params={"action": "no.such"}).text)
    assert "No audit events matching these filters" in nothing


def test_the_audit_log_pages_back_with_the_apis_cursor(live_server: LiveServer, owner: ConsoleClient) -> None:
    for i in range(52):
        live_server.client().post(f"/organizations/{ORG}/projects", json=doc("Project", f"p{i}", {}))
    first = main(owner.get(f"{BASE}/audit").text)
    assert first.count("<tr>\n    <td><time") == 50
    older = re.search(r'<a href="(/console/orgs/acme/audit\?[^"]*before=\d+)">Older events</a>', first)
    assert older, first
    second = main(owner.get(older.group(1).replace("&amp;", "&")).text)
    assert "project/p0 created" in second and "project/p0 created" not in first


def test_an_unknown_organization_is_a_not_found_page(owner: ConsoleClient) -> None:
    r = owner.get("/console/orgs/nowhere/approvals")
    assert r.status_code == 404 and "Organization &#39;nowhere&#39; not found" in r.text


def test_markup_in_names_and_messages_is_escaped_on_the_organizations_pages(live_server: LiveServer,
                                                                           owner: ConsoleClient) -> None:
    script, image = "<script>alert(1)</script>", '"><img src=x onerror=alert(2)>'
    r = owner.form(f"{BASE}/projects", {"name": "inert", "displayName": script, "description": image})
    assert r.status_code == 303
    for path in ("", "/pipeline", "/audit"):
        page = main(owner.get(BASE + path).text)
        assert "<script>alert" not in page and "<img src=x" not in page, path
    listed = main(owner.get(BASE).text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listed and "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in listed
