"""The RBAC policy, as a table, checked through the real API.

Nine users hold one role each (viewer, developer, admin) at one scope each (the organization
``rbac``, its project ``alpha``, or its environment ``staging``). Every user tries every action in
``ACTIONS``; ``EXPECTED`` says which ones succeed (2xx). Every refusal must be a 403 whose message
names the permission that was missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from liveserver import LiveServer

ORG = "rbac"
PROJECT = "alpha"  # the project a project-scoped binding is on
OTHER_PROJECT = "beta"
ENV = "staging"  # the environment an environment-scoped binding is on
OTHER_ENV = "production"
COMPONENT = "api"  # in alpha
TASK = "job"  # a manual task in alpha
ROLES = ("viewer", "developer", "admin")
SCOPES = ("organization", "project", "environment")
AGENT = ("dataplane-agent", "dataplane")  # role dataplane-agent, bound to one data plane of the organization

# Each action: (what it does, the permission a refusal must name).
ACTIONS: dict[str, str] = {
    "get project": "projects:get",
    "list projects": "projects:list",
    "create component": "components:create",
    "update component": "components:update",
    "delete component": "components:delete",
    "create project": "projects:create",
    "create environment": "environments:create",
    "config set in that env": "config:write",  # in staging
    "config set in another env": "config:write",  # in production
    "config read": "config:read",  # in staging
    "config read in another env": "config:read",  # in production
    "create rolebinding": "rolebindings:create",  # viewer on project alpha, for someone else
    "read audit": "audit:read",  # the organization's events, not just one's own
    "update that env": "environments:update",  # staging, replaced by its own unchanged spec
    "deploy to that env": "deployments:create",  # staging
    "deploy to another env": "deployments:create",  # production
    "undeploy from that env": "deployments:delete",
    "run a task in that env": "runs:create",
}

# This world has no data plane and deploys nothing, so an allowed deploy, undeploy or run gets past the
# permission check to the platform's own refusal: this error code instead of a 403.
PAST_THE_CHECK: dict[str, str] = {
    "deploy to that env": "no-dataplane",
    "deploy to another env": "no-dataplane",
    "undeploy from that env": "not-found",
    "run a task in that env": "not-deployed",
}

# The policy. One row per (role, scope); one column per action, in the order of ACTIONS; Y = allowed.
#                                    get  list  c.comp u.comp d.comp c.proj c.env  set   set   read  read   c.rb  audit u.env  dep  dep   undep run
#                                    proj proj                                     env   other env   other                     env  other env   env
EXPECTED: dict[tuple[str, str], str] = {
    ("viewer", "organization"):     " Y    Y     .      .      .      .      .      .     .     Y     Y      .     .     .  .    .     .     .",
    ("viewer", "project"):          " Y    Y     .      .      .      .      .      .     .     Y     Y      .     .     .  .    .     .     .",
    ("viewer", "environment"):      " Y    Y     .      .      .      .      .      .     .     Y     .      .     .     .  .    .     .     .",
    ("developer", "organization"):  " Y    Y     Y      Y      Y      Y      .      Y     Y     Y     Y      .     .     .  Y    Y     Y     Y",
    ("developer", "project"):       " Y    Y     Y      Y      Y      .      .      Y     Y     Y     Y      .     .     .  Y    Y     Y     Y",
    ("developer", "environment"):   " Y    Y     .      .      .      .      .      Y     .     Y     .      .     .     .  Y    .     Y     Y",
    ("admin", "organization"):      " Y    Y     Y      Y      Y      Y      Y      Y     Y     Y     Y      Y     Y     Y  Y    Y     Y     Y",
    ("admin", "project"):           " Y    Y     Y      Y      Y      .      .      Y     Y     Y     Y      Y     .     .  Y    Y     Y     Y",
    ("admin", "environment"):       " Y    Y     .      .      .      .      .      Y     .     Y     .      .     .     .  Y    .     Y     Y",
    # a data plane's agent token (POST .../dataplanes/{name}/tokens): its data plane's calls only (test_agent_token)
    AGENT:                          " .    .     .      .      .      .      .      .     .     .     .      .     .     .  .    .     .     .",
}


@pytest.fixture(scope="module")
def live_server(shared_live_server: LiveServer) -> LiveServer:
    """This module's names are its own (its organization, its users): it shares the session's control plane."""
    return shared_live_server


def expected(role: str, scope: str, action: str) -> bool:
    row = EXPECTED[(role, scope)].split()
    assert len(row) == len(ACTIONS), f"row {role}/{scope} has {len(row)} columns"
    return row[list(ACTIONS).index(action)] == "Y"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class World:
    server: LiveServer
    admin: httpx.Client
    clients: dict[tuple[str, str], httpx.Client]
    users: dict[tuple[str, str], str]
    bystander: str  # a user the role-binding action grants something to


def make_user(admin: httpx.Client, server: LiveServer, name: str) -> httpx.Client:
    r = admin.post("/users", json={"name": name})
    assert r.status_code == 201, r.text
    r = admin.post(f"/users/{name}/tokens", json={"name": "matrix"})
    assert r.status_code == 201, r.text
    return server.client(r.json()["token"])


def grant(admin: httpx.Client, user: str, role: str, scope: str, org: str = ORG) -> None:
    body: dict[str, str] = {"user": user, "role": role}
    if scope == "project":
        body["project"] = PROJECT
    elif scope == "environment":
        body["environment"] = ENV
    r = admin.post(f"/organizations/{org}/rolebindings", json=body)
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def world(live_server: LiveServer) -> World:
    """The organization, its projects and component, and the nine users: created once for the module."""
    admin = live_server.client()
    docs = [
        {"apiVersion": "cellplane.dev/v1alpha1", "kind": "Organization", "metadata": {"name": ORG}},
        *({"apiVersion": "cellplane.dev/v1alpha1", "kind": "Project", "metadata": {"name": p, "organization": ORG}}
          for p in (PROJECT, OTHER_PROJECT)),
        *({"apiVersion": "cellplane.dev/v1alpha1", "kind": "Component",
           "metadata": {"name": COMPONENT, "organization": ORG, "project": p}} for p in (PROJECT, OTHER_PROJECT)),
        {"apiVersion": "cellplane.dev/v1alpha1", "kind": "Component",
         "metadata": {"name": TASK, "organization": ORG, "project": PROJECT}, "spec": {"type": "manual-task"}},
    ]
    r = admin.post("/apply", json={"documents": docs})
    assert r.status_code == 200, r.text
    clients, users = {}, {}
    for role in ROLES:
        for scope in SCOPES:
            name = f"{role}-{scope}"
            clients[(role, scope)] = make_user(admin, live_server, name)
            users[(role, scope)] = name
            grant(admin, name, role, scope)
    r = admin.post(f"/organizations/{ORG}/dataplanes/local/tokens", json={"name": "matrix"})
    assert r.status_code == 201, r.text
    clients[AGENT], users[AGENT] = live_server.client(r.json()["token"]), r.json()["user"]
    bystander = "bystander"
    make_user(admin, live_server, bystander)
    return World(live_server, admin, clients, users, bystander)


# -- the actions ----------------------------------------------------------------------------------------------------

COMPONENTS = f"/organizations/{ORG}/projects/{PROJECT}/components"
CONFIG = f"{COMPONENTS}/{COMPONENT}/config"


def _create_component(w: World, c: httpx.Client) -> httpx.Response:
    return c.post(COMPONENTS, json={"metadata": {"name": unique("new")}})


def _update_component(w: World, c: httpx.Client) -> httpx.Response:
    return c.put(f"{COMPONENTS}/{COMPONENT}",
                 json={"metadata": {"name": COMPONENT}, "spec": {"description": unique("changed")}})


def _delete_component(w: World, c: httpx.Client) -> httpx.Response:
    name = unique("doomed")
    r = w.admin.post(COMPONENTS, json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return c.delete(f"{COMPONENTS}/{name}")


DO: dict[str, Callable[[World, httpx.Client], httpx.Response]] = {
    "get project": lambda w, c: c.get(f"/organizations/{ORG}/projects/{PROJECT}"),
    "list projects": lambda w, c: c.get(f"/organizations/{ORG}/projects"),
    "create component": _create_component,
    "update component": _update_component,
    "delete component": _delete_component,
    "create project": lambda w, c: c.post(f"/organizations/{ORG}/projects", json={"metadata": {"name": unique("p")}}),
    "create environment": lambda w, c: c.post(f"/organizations/{ORG}/environments",
                                              json={"metadata": {"name": unique("env")}}),
    "config set in that env": lambda w, c: c.put(f"{CONFIG}/LEVEL", params={"env": ENV},
                                                 json={"value": unique("v")}),
    "config set in another env": lambda w, c: c.put(f"{CONFIG}/LEVEL", params={"env": OTHER_ENV},
                                                    json={"value": unique("v")}),
    "config read": lambda w, c: c.get(CONFIG, params={"env": ENV}),
    "config read in another env": lambda w, c: c.get(CONFIG, params={"env": OTHER_ENV}),
    "create rolebinding": lambda w, c: c.post(f"/organizations/{ORG}/rolebindings",
                                              json={"user": w.bystander, "role": "viewer", "project": PROJECT}),
    "read audit": lambda w, c: c.get("/audit", params={"organization": ORG, "limit": 1000}),
    "update that env": lambda w, c: c.put(f"/organizations/{ORG}/environments/{ENV}", json={"metadata": {"name": ENV}}),
    "deploy to that env": lambda w, c: c.post(f"{COMPONENTS}/{COMPONENT}/deployments", json={"environment": ENV}),
    "deploy to another env": lambda w, c: c.post(f"{COMPONENTS}/{COMPONENT}/deployments",
                                                 json={"environment": OTHER_ENV}),
    "undeploy from that env": lambda w, c: c.delete(f"{COMPONENTS}/{COMPONENT}/deployments/{ENV}"),
    "run a task in that env": lambda w, c: c.post(f"{COMPONENTS}/{TASK}/runs", json={"environment": ENV}),
}
assert set(DO) == set(ACTIONS)


def test_the_table_is_complete() -> None:
    assert set(EXPECTED) == {(r, s) for r in ROLES for s in SCOPES} | {AGENT}
    expected(*AGENT, "get project")
    for role in ROLES:
        for scope in SCOPES:
            expected(role, scope, "get project")  # checks the column count


@pytest.mark.parametrize("action", list(ACTIONS))
def test_matrix_of_a_data_planes_agent(world: World, action: str) -> None:
    test_matrix(world, *AGENT, action)


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("role", ROLES)
def test_matrix(world: World, role: str, scope: str, action: str) -> None:
    r = DO[action](world, world.clients[(role, scope)])
    if action == "read audit":
        # /audit filters instead of refusing: everyone gets their own events, an organization's
        # administrators also everyone else's in it (here: the admin's, who set the organization up)
        assert r.status_code == 200, r.text
        sees_others = any(e["actor"] == "admin" for e in r.json()["items"])
        assert sees_others == expected(role, scope, action), f"{role} on {scope}: read audit is {sees_others}"
        return
    if expected(role, scope, action) and action in PAST_THE_CHECK:
        assert r.status_code != 403 and r.json()["error"]["code"] == PAST_THE_CHECK[action], \
            f"{role} on {scope} should be able to {action}: {r.status_code} {r.text}"
    elif expected(role, scope, action):
        assert 200 <= r.status_code < 300, f"{role} on {scope} should be able to {action}: {r.status_code} {r.text}"
    else:
        assert r.status_code == 403, f"{role} on {scope} should not be able to {action}: {r.status_code} {r.text}"
        error = r.json()["error"]
        assert error["code"] == "forbidden"
        assert ACTIONS[action] in error["message"], error["message"]


# -- visibility -----------------------------------------------------------------------------------------------------


def _names(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [i["metadata"]["name"] for i in r.json()["items"]]


def test_role_bindings_are_listed_as_far_as_one_sees(world: World) -> None:
    def listed(client: httpx.Client) -> set[tuple[str, str | None, str | None]]:
        r = client.get(f"/organizations/{ORG}/rolebindings")
        assert r.status_code == 200, r.text
        return {(b["user"], b["project"], b["environment"]) for b in r.json()["items"]}

    everything = listed(world.clients[("viewer", "organization")])
    assert ("admin-organization", None, None) in everything and ("viewer-environment", None, ENV) in everything
    mine = listed(world.clients[("viewer", "project")])
    assert mine == {b for b in everything if b[1] == PROJECT}  # the project's bindings, their own among them
    assert ("viewer-project", PROJECT, None) in mine


def test_a_project_scoped_user_sees_only_that_project(world: World) -> None:
    for role in ROLES:
        c = world.clients[(role, "project")]
        assert _names(c.get(f"/organizations/{ORG}/projects")) == [PROJECT]
        components = c.get(f"/organizations/{ORG}/components").json()["items"]
        assert {i["metadata"]["project"] for i in components} == {PROJECT}
        r = c.get(f"/organizations/{ORG}/projects/{OTHER_PROJECT}")
        assert r.status_code == 403 and "projects:get" in r.json()["error"]["message"]
        r = c.get(f"/organizations/{ORG}/projects/{OTHER_PROJECT}/components")
        assert r.status_code == 403 and "components:list" in r.json()["error"]["message"]
        assert c.get(f"/organizations/{ORG}/projects/{OTHER_PROJECT}/components/{COMPONENT}").status_code == 403
        assert c.get(f"/organizations/{ORG}/projects/{OTHER_PROJECT}/components/{COMPONENT}/config").status_code == 403
        # the organization itself, and its environments, are visible to every member
        assert _names(c.get("/organizations")) == [ORG]
        assert "staging" in _names(c.get(f"/organizations/{ORG}/environments"))


def test_organization_and_environment_scoped_users_see_every_project(world: World) -> None:
    for role in ROLES:
        for scope in ("organization", "environment"):
            projects = _names(world.clients[(role, scope)].get(f"/organizations/{ORG}/projects"))
            assert {PROJECT, OTHER_PROJECT} <= set(projects), (role, scope, projects)


def test_a_user_without_a_role_in_an_organization_sees_nothing_of_it(world: World) -> None:
    outsider = make_user(world.admin, world.server, unique("outsider"))
    member_elsewhere = world.clients[("admin", "organization")]  # admin of rbac, nothing in 'default'
    for c in (outsider, member_elsewhere):
        org = ORG if c is outsider else "default"
        assert org not in _names(c.get("/organizations"))
        for path in (f"/organizations/{org}", f"/organizations/{org}/projects", f"/organizations/{org}/components",
                     f"/organizations/{org}/environments", f"/organizations/{org}/rolebindings"):
            r = c.get(path)
            assert r.status_code in (403, 404), (path, r.status_code, r.text)
            assert set(r.json()) == {"error"}
        assert c.post(f"/organizations/{org}/projects", json={"metadata": {"name": "x"}}).status_code in (403, 404)
    assert _names(outsider.get("/organizations")) == []
    # other organizations' projects never show in any list
    r = outsider.get(f"/organizations/{ORG}/projects/{PROJECT}/components")
    assert r.status_code in (403, 404)
    assert outsider.get("/whoami").json()["roles"] == []


# -- users, tokens, organizations -----------------------------------------------------------------------------------


def test_tokens_are_only_made_by_their_user_or_a_platform_administrator(world: World) -> None:
    org_admin = world.clients[("admin", "organization")]
    me = world.users[("admin", "organization")]
    other = world.users[("viewer", "organization")]
    r = org_admin.post(f"/users/{other}/tokens", json={"name": "stolen"})
    assert r.status_code == 403, r.text
    assert org_admin.get(f"/users/{other}/tokens").status_code == 403
    own = org_admin.post(f"/users/{me}/tokens", json={"name": "second"})
    assert own.status_code == 201 and own.json()["token"].startswith("cpt_")
    assert [t["name"] for t in org_admin.get(f"/users/{me}/tokens").json()["items"]].count("second") == 1
    # a token id of someone else is not found, rather than revoked
    theirs = world.admin.post(f"/users/{other}/tokens", json={"name": "theirs"}).json()["id"]
    assert org_admin.delete(f"/tokens/{theirs}").status_code == 404
    # the token list never shows the token itself
    assert "token" not in org_admin.get(f"/users/{me}/tokens").json()["items"][0]


def test_users_are_created_by_administrators_only(world: World) -> None:
    for role, scope in [("developer", "organization"), ("viewer", "organization"), ("admin", "project"),
                        ("admin", "environment")]:
        r = world.clients[(role, scope)].post("/users", json={"name": unique("u")})
        assert r.status_code == 403 and "users:create" in r.json()["error"]["message"], (role, scope, r.text)
    org_admin = world.clients[("admin", "organization")]
    assert org_admin.post("/users", json={"name": unique("u")}).status_code == 201
    r = org_admin.post("/users", json={"name": unique("root"), "superuser": True})
    assert r.status_code == 403 and "platform administrator" in r.json()["error"]["message"]
    # a non-superuser sees only itself among the users
    assert [u["name"] for u in org_admin.get("/users").json()["items"]] == [world.users[("admin", "organization")]]


def test_only_a_platform_administrator_creates_organizations(world: World) -> None:
    for role, scope in [("admin", "organization"), ("developer", "organization")]:
        r = world.clients[(role, scope)].post("/organizations", json={"metadata": {"name": unique("org")}})
        assert r.status_code == 403 and "platform administrator" in r.json()["error"]["message"], r.text
        r = world.clients[(role, scope)].post("/apply", json={"documents": [
            {"apiVersion": "cellplane.dev/v1alpha1", "kind": "Organization", "metadata": {"name": unique("org")}}]})
        assert r.status_code == 403, r.text


def test_a_denied_mutation_is_audited_as_denied(world: World) -> None:
    viewer = world.users[("viewer", "project")]
    name = unique("sneaky")
    r = world.clients[("viewer", "project")].post(COMPONENTS, json={"metadata": {"name": name}})
    assert r.status_code == 403
    events = world.admin.get("/audit", params={"actor": viewer, "limit": 1000}).json()["items"]
    denied = [e for e in events if e["name"] == name]
    assert len(denied) == 1, events
    event = denied[0]
    assert (event["action"], event["kind"], event["organization"], event["project"], event["outcome"]) == (
        "create", "Component", ORG, PROJECT, "denied")
    assert "components:create" in event["message"]
    # the denied user sees its own event
    own = world.clients[("viewer", "project")].get("/audit", params={"limit": 1000}).json()["items"]
    assert any(e["id"] == event["id"] for e in own)


def test_a_revoked_token_is_refused(world: World) -> None:
    user = world.users[("developer", "project")]
    c = world.clients[("developer", "project")]
    r = c.post(f"/users/{user}/tokens", json={"name": "short-lived"})
    assert r.status_code == 201, r.text
    token_id, token = r.json()["id"], r.json()["token"]
    second = world.server.client(token)
    assert second.get("/whoami").json()["user"] == user
    assert c.delete(f"/tokens/{token_id}").json() == {"deleted": token_id}
    r = second.get("/whoami")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert second.get(f"/organizations/{ORG}/projects").status_code == 401
    assert c.get("/whoami").status_code == 200  # the user's other token still works


# -- bindings do not outlive what they are scoped to ----------------------------------------------------------------


def test_deleting_a_project_or_environment_removes_the_bindings_scoped_to_it(world: World) -> None:
    admin = world.admin
    user = unique("former")
    c = make_user(admin, world.server, user)
    assert admin.post(f"/organizations/{ORG}/projects", json={"metadata": {"name": "temp"}}).status_code == 201
    assert admin.post(f"/organizations/{ORG}/environments", json={"metadata": {"name": "temp-env"}}).status_code == 201
    for body in ({"project": "temp"}, {"environment": "temp-env"}):
        r = admin.post(f"/organizations/{ORG}/rolebindings", json={"user": user, "role": "admin", **body})
        assert r.status_code == 201, r.text

    assert admin.delete(f"/organizations/{ORG}/projects/temp").status_code == 200
    assert admin.delete(f"/organizations/{ORG}/environments/temp-env").status_code == 200
    bindings = admin.get(f"/organizations/{ORG}/rolebindings").json()["items"]
    assert [b for b in bindings if b["user"] == user] == []
    assert c.get("/whoami").json()["roles"] == []

    # a new project or environment of the same name is not the former holder's
    r = c.post(f"/organizations/{ORG}/projects", json={"metadata": {"name": "temp"}})
    assert r.status_code == 403, r.text
    assert admin.post(f"/organizations/{ORG}/projects", json={"metadata": {"name": "temp"}}).status_code == 201
    assert c.post(f"/organizations/{ORG}/projects/temp/components",
                  json={"metadata": {"name": "x"}}).status_code == 403
    assert admin.delete(f"/organizations/{ORG}/projects/temp").status_code == 200


def test_a_binding_cannot_be_granted_beyond_ones_scope(world: World) -> None:
    project_admin = world.clients[("admin", "project")]
    for body in ({"role": "admin"}, {"role": "viewer", "project": OTHER_PROJECT},
                 {"role": "admin", "environment": ENV}):
        r = project_admin.post(f"/organizations/{ORG}/rolebindings", json={"user": world.bystander, **body})
        assert r.status_code == 403 and "rolebindings:create" in r.json()["error"]["message"], (body, r.text)
    env_admin = world.clients[("admin", "environment")]
    r = env_admin.post(f"/organizations/{ORG}/rolebindings",
                       json={"user": world.bystander, "role": "viewer", "environment": ENV})
    assert r.status_code == 201, r.text
    r = env_admin.post(f"/organizations/{ORG}/rolebindings",
                       json={"user": world.bystander, "role": "viewer", "environment": OTHER_ENV})
    assert r.status_code == 403
    # and a binding of one organization grants nothing in another
    r = world.clients[("admin", "organization")].post("/organizations/default/rolebindings",
                                                      json={"user": world.bystander, "role": "admin"})
    assert r.status_code == 403


# -- reads of telemetry and builds: as far as the binding reaches (docs/security.md, "Roles and scopes") ------------
#
# Telemetry is recorded in one environment: an environment-scoped binding reads its own environment's only. So are
# a deployment's state and an alert rule's state and firings (runtime output): such a binding reads them in its own
# environment only, and a list shows it its own environment's items. Builds and artifacts belong to a project and
# to no environment: a project binding reads its project's, an environment-scoped binding none. This world has no
# data plane, so telemetry reads answer empty pages and a deployment is not found once the permission check is
# passed; an artifact that was never built is not found either. (Task runs, deployment lists and release history
# need a data plane: tests/test_rbac_scoped_runs.py.)

COMPONENT_PATH = f"{COMPONENTS}/{COMPONENT}"
OTHER_COMPONENT_PATH = f"/organizations/{ORG}/projects/{OTHER_PROJECT}/components/{COMPONENT}"
NO_ARTIFACT = "sha256:" + "0" * 64

READS: dict[str, str] = {
    "logs in that env": "logs:get",  # alpha/api in staging
    "logs in another env": "logs:get",  # alpha/api in production
    "access logs in another env": "logs:get",
    "metrics in another env": "metrics:get",
    "cell graph in another env": "metrics:get",
    "traces in another env": "traces:get",
    "list builds": "builds:list",  # of alpha/api
    "get a build": "builds:get",
    "read a build's log": "builds:get",
    "get a build of another project": "builds:get",  # of beta/api
    "read another project's build log": "builds:get",
    "download an artifact": "artifacts:get",  # of alpha
    "download another project's artifact": "artifacts:get",  # of beta
    "deployment in that env": "deployments:get",  # alpha/api in staging
    "deployment in another env": "deployments:get",  # alpha/api in production
    "alert rule in that env": "alerts:get",  # a rule on alpha/api in staging
    "alert rule in another env": "alerts:get",  # in production
    "alert events in another env": "alerts:get",
    "organization's alerts list another env's": "alerts:list",
    "component's alerts list another env's": "alerts:list",
}
READS_PAST_THE_CHECK: dict[str, str] = {
    "download an artifact": "not-found",
    "download another project's artifact": "not-found",
    "deployment in that env": "not-found",
    "deployment in another env": "not-found",
}
# Lists answer 200 whoever asks (a list shows what the caller may read): Y = the production rule is in it.
READS_LISTED = ("organization's alerts list another env's", "component's alerts list another env's")

#                                   logs  logs  acc.  metr. graph trac. list  get   build get   other  art.  other dep.  dep.  rule  rule  events list  list
#                                   env   other other other other other builds build log   other log    art.       env   other env   other other  org   comp.
READS_EXPECTED: dict[tuple[str, str], str] = {
    ("viewer", "organization"):    " Y     Y     Y     Y     Y     Y     Y     Y     Y     Y     Y      Y     Y     Y     Y     Y     Y     Y      Y     Y",
    ("viewer", "project"):         " Y     Y     Y     Y     Y     Y     Y     Y     Y     .     .      Y     .     Y     Y     Y     Y     Y      Y     Y",
    ("viewer", "environment"):     " Y     .     .     .     .     .     .     .     .     .     .      .     .     Y     .     Y     .     .      .     .",
    ("developer", "organization"): " Y     Y     Y     Y     Y     Y     Y     Y     Y     Y     Y      Y     Y     Y     Y     Y     Y     Y      Y     Y",
    ("developer", "project"):      " Y     Y     Y     Y     Y     Y     Y     Y     Y     .     .      Y     .     Y     Y     Y     Y     Y      Y     Y",
    ("developer", "environment"):  " Y     .     .     .     .     .     .     .     .     .     .      .     .     Y     .     Y     .     .      .     .",
    ("admin", "organization"):     " Y     Y     Y     Y     Y     Y     Y     Y     Y     Y     Y      Y     Y     Y     Y     Y     Y     Y      Y     Y",
    ("admin", "project"):          " Y     Y     Y     Y     Y     Y     Y     Y     Y     .     .      Y     .     Y     Y     Y     Y     Y      Y     Y",
    ("admin", "environment"):      " Y     .     .     .     .     .     .     .     .     .     .      .     .     Y     .     Y     .     .      .     .",
}


def reads_expected(role: str, scope: str, action: str) -> bool:
    row = READS_EXPECTED[(role, scope)].split()
    assert len(row) == len(READS), f"row {role}/{scope} has {len(row)} columns"
    return row[list(READS).index(action)] == "Y"


@pytest.fixture(scope="module")
def builds_of(world: World) -> dict[str, str]:
    """A build of api in each project (an uploaded directory; whether it builds does not matter), by project."""
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        page = b"<h1>hello</h1>\n"
        info = tarfile.TarInfo("index.html")
        info.size = len(page)
        tar.addfile(info, io.BytesIO(page))
    out = {}
    for project in (PROJECT, OTHER_PROJECT):
        r = world.admin.post(f"/organizations/{ORG}/projects/{project}/components/{COMPONENT}/builds",
                             content=data.getvalue(), headers={"Content-Type": "application/gzip"})
        assert r.status_code == 201, r.text
        out[project] = r.json()["id"]
    return out


@pytest.fixture(scope="module")
def alert_rules(world: World) -> dict[str, str]:
    """An alert rule on alpha/api in each of staging and production (its webhook is never called), by environment."""
    out = {}
    for env in (ENV, OTHER_ENV):
        r = world.admin.post(f"{COMPONENT_PATH}/alerts", json={
            "name": "restarts", "environment": env, "metric": "crash-loop", "threshold": 3,
            "webhook": "http://127.0.0.1:9/hook"})
        assert r.status_code == 201, r.text
        out[env] = r.json()["id"]
    return out


ALERTS = f"/organizations/{ORG}/alerts"

READ: dict[str, Callable[[httpx.Client, dict[str, str]], httpx.Response]] = {
    "logs in that env": lambda c, b: c.get(f"{COMPONENT_PATH}/logs", params={"environment": ENV}),
    "logs in another env": lambda c, b: c.get(f"{COMPONENT_PATH}/logs", params={"environment": OTHER_ENV}),
    "access logs in another env": lambda c, b: c.get(f"{COMPONENT_PATH}/access-logs",
                                                     params={"environment": OTHER_ENV}),
    "metrics in another env": lambda c, b: c.get(f"{COMPONENT_PATH}/metrics", params={"environment": OTHER_ENV}),
    "cell graph in another env": lambda c, b: c.get(f"/organizations/{ORG}/projects/{PROJECT}/graph",
                                                    params={"environment": OTHER_ENV}),
    "traces in another env": lambda c, b: c.get(f"{COMPONENT_PATH}/traces", params={"environment": OTHER_ENV}),
    "list builds": lambda c, b: c.get(f"{COMPONENT_PATH}/builds"),
    "get a build": lambda c, b: c.get(f"/organizations/{ORG}/builds/{b[PROJECT]}"),
    "read a build's log": lambda c, b: c.get(f"/organizations/{ORG}/builds/{b[PROJECT]}/logs"),
    "get a build of another project": lambda c, b: c.get(f"/organizations/{ORG}/builds/{b[OTHER_PROJECT]}"),
    "read another project's build log": lambda c, b: c.get(f"/organizations/{ORG}/builds/{b[OTHER_PROJECT]}/logs"),
    "download an artifact": lambda c, b: c.get(f"/organizations/{ORG}/projects/{PROJECT}/artifacts/{NO_ARTIFACT}"),
    "download another project's artifact": lambda c, b: c.get(
        f"/organizations/{ORG}/projects/{OTHER_PROJECT}/artifacts/{NO_ARTIFACT}"),
    "deployment in that env": lambda c, b: c.get(f"{COMPONENT_PATH}/deployments/{ENV}"),
    "deployment in another env": lambda c, b: c.get(f"{COMPONENT_PATH}/deployments/{OTHER_ENV}"),
    "alert rule in that env": lambda c, b: c.get(f"{ALERTS}/{b[ENV]}"),
    "alert rule in another env": lambda c, b: c.get(f"{ALERTS}/{b[OTHER_ENV]}"),
    "alert events in another env": lambda c, b: c.get(f"{ALERTS}/{b[OTHER_ENV]}/events"),
    "organization's alerts list another env's": lambda c, b: c.get(ALERTS),
    "component's alerts list another env's": lambda c, b: c.get(f"{COMPONENT_PATH}/alerts"),
}
assert set(READ) == set(READS)


def test_the_table_of_reads_is_complete() -> None:
    assert set(READS_EXPECTED) == {(r, s) for r in ("viewer", "developer", "admin") for s in SCOPES}
    for role, scope in READS_EXPECTED:
        reads_expected(role, scope, "list builds")  # checks the column count


@pytest.mark.parametrize("action", list(READS))
@pytest.mark.parametrize(("role", "scope"), list(READS_EXPECTED))
def test_reads_of_telemetry_and_builds(world: World, builds_of: dict[str, str], alert_rules: dict[str, str],
                                       role: str, scope: str, action: str) -> None:
    r = READ[action](world.clients[(role, scope)], {**builds_of, **alert_rules})
    if action in READS_LISTED:
        assert r.status_code == 200, r.text
        listed = {i["id"] for i in r.json()["items"]}
        assert alert_rules[ENV] in listed, f"{role} on {scope} should list its own environment's rule: {r.text}"
        assert (alert_rules[OTHER_ENV] in listed) == reads_expected(role, scope, action), \
            f"{role} on {scope}: {action} is {alert_rules[OTHER_ENV] in listed}"
    elif reads_expected(role, scope, action) and action in READS_PAST_THE_CHECK:
        assert r.status_code != 403 and r.json()["error"]["code"] == READS_PAST_THE_CHECK[action], \
            f"{role} on {scope} should be able to read {action}: {r.status_code} {r.text}"
    elif reads_expected(role, scope, action):
        assert 200 <= r.status_code < 300, f"{role} on {scope} should read {action}: {r.status_code} {r.text}"
    else:
        assert r.status_code == 403, f"{role} on {scope} should not read {action}: {r.status_code} {r.text}"
        error = r.json()["error"]
        assert error["code"] == "forbidden"
        assert READS[action] in error["message"], error["message"]
