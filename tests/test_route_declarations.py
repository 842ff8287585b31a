"""Every route declares its permission where it is declared (``controlplane/api/declare.py``), and enforces what it
declares.

The first test walks the app's routes: a route without a declaration fails it, unless it is one of the public
routes listed below with the reason it needs no permission. The next ones ask every declared route, in-process
(httpx's ASGI transport; no server, no lifespan), as a caller who lacks the declared permission: the answer must be
a 403 that names it, and a refused change must be in the audit log under the route's declared action; then, for a
plain permission, as a caller whose role on the organization holds it: the answer must not be a 403 (the call gets
past the check, to the platform's own answer about this world). Reads (GET) are asked the same way, by a caller with
no role in the organization. Last, the table of every route's rule and scope (``declare.route_table``) must be the
one recorded in ``tests/fixtures/route-permissions.txt``: a permission swapped for another that the same roles hold
passes the other tests, not this one.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi import FastAPI
from fastapi.routing import APIRoute

from cellplane import API_VERSION
from cellplane.controlplane.api import errors
from cellplane.controlplane.api.app import create_app
from cellplane.controlplane.api.builds import THE_BUILD
from cellplane.controlplane.api.declare import Call, Declared, declared_of, requires, route_table
from cellplane.controlplane.api.deps import NamePath
from cellplane.controlplane.api.routing import API_PREFIX, add_routes, api_router
from cellplane.controlplane.rbac import ROLES
from cellplane.sealing import public_key_text
from cellplane.store.tables import ApprovalRow
from inprocess import AppClient

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# Routes that need no permission, each with why (a GET route answers HEAD too).
PUBLIC: dict[tuple[str, str], str] = {
    ("POST", API_PREFIX + "/hooks/git/{org}/{project}/{component}"):
        "a git host's push event: no token, accepted only with the component's X-Hub-Signature-256 signature",
    ("GET", "/healthz"): "the health check of a load balancer or `up`: says ok, nothing else",
    ("GET", API_PREFIX + "/version"): "the server's version, API version and database kind, for the CLI to check",
    ("GET", "/openapi.json"): "the API's OpenAPI document: what every route takes and answers, no data",
    ("GET", "/docs"): "the OpenAPI document's reader (Swagger UI): a page around /openapi.json",
    ("GET", "/docs/oauth2-redirect"): "a page of the Swagger UI",
    ("GET", "/redoc"): "the OpenAPI document's other reader (ReDoc)",
    ("GET", "/"): "a redirect to the console (/console/), which asks for a session",
    ("GET", "/console"): "a redirect to /console/",
    ("GET", "/console/static/vendor/htmx.min.js"): "the console's pinned htmx, a public library file",
    ("GET", "/metrics"): "the control plane's own metrics for Prometheus (requests by route template, builds and "
                         "deployments by state, data planes' report ages): no tenant's telemetry, no names",
}
# Routes not converted to a declaration yet (empty: every route declares its permission).
NOT_YET: dict[tuple[str, str], str] = {}
# The table of every route's rule and scope, recorded; CELLPLANE_RECORD_ROUTES=1 writes it anew.
RECORDED = Path(__file__).parent / "fixtures" / "route-permissions.txt"
RECORD = "CELLPLANE_RECORD_ROUTES"

ORG, PROJECT, COMPONENT, ENV = "decl", "alpha", "api", "staging"
APPROVAL = "apr_0000decl"
# The body each route is sent: enough to get past what a route reads before the permission (a documented body is
# parsed first, so that a bad one is a 422 with its field paths whoever sends it).
BODIES: dict[str, Any] = {
    "deploy": {"environment": ENV},
    "start_run": {"environment": ENV},
    "promote": {"from": ENV, "to": "production"},
    "rollback": {},
    "reject": {"reason": "not now"},
    "create_preview": {"branch": "feature"},
    "create_rule": {"name": "errors", "environment": ENV, "metric": "error-rate", "threshold": 5,
                    "webhook": "http://127.0.0.1:9/hook"},
    "start_build": {},
    "set_config": {"value": "x"},
    "import_component": {"name": "imported", "source": {"repository": "https://example.com/r.git"}, "files": {}},
    "create_user": {"name": "newcomer"},
    "create_token": {},
    "set_password": {"password": "a-long-enough-password"},
    "create_binding": {"user": "viewer", "role": "admin"},
    "create_agent_token": {},
    "put_identity_provider": {"issuer": "https://id.example.com", "clientId": "cellplane"},
    "link_identity": {"user": "viewer", "subject": "sub-viewer"},
    "apply": {"organization": ORG, "documents": [
        {"apiVersion": API_VERSION, "kind": "Project", "metadata": {"name": "gamma"}, "spec": {}}]},
}
# Routes whose scope is a row looked up first: asked by a non-member of the organization, whose permission is
# checked on the organization before any lookup (no row of theirs is found by guessing ids).
OUTSIDER = {"cancel_build", "delete_rule", "test_rule"}
# Answers other than "403 naming the permission", by design.
NOT_FOUND = {"revoke_token": "another user's token is not found (404): its id says nothing"}
# A resource of each kind in the world, by the kind's plural: what a read of one names.
NAMES = {"organizations": ORG, "dataplanes": "edge", "environments": ENV, "deploymentpipelines": "flow",
         "projects": PROJECT, "components": COMPONENT}
# What a read's path names: things that exist where their existence is checked before the permission, and ids of
# the right shape elsewhere (those are looked up after the permission, and are not found by who holds it).
READ_PATH = {"org": ORG, "project": PROJECT, "component": COMPONENT, "environment": ENV, "approval": APPROVAL,
             "alert": "alr_00000000", "build": "b-00000000", "user": "admin", "run": "run_00000000",
             "release": "rel_0000decl", "other": "rel_0000decl", "trace": "0123456789abcdef",
             "digest": "sha256:" + "0" * 64}


@dataclass
class World:
    app: FastAPI
    admin: AppClient
    callers: dict[str, AppClient]
    binding: str  # the viewer's own role binding
    token: str  # the admin's token id


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("declared")
    app = create_app(data)
    runner = asyncio.Runner()
    admin = AppClient(app, runner, (data / "admin.token").read_text().strip())
    docs = [{"kind": "Organization", "metadata": {"name": name}, "spec": {}} for name in (ORG, "elsewhere")] + [
        {"kind": "Environment", "metadata": {"name": env, "organization": ORG}, "spec": {}}
        for env in (ENV, "production")] + [
        {"kind": "Project", "metadata": {"name": PROJECT, "organization": ORG}, "spec": {}},
        {"kind": "Component", "metadata": {"name": COMPONENT, "organization": ORG, "project": PROJECT}, "spec": {}},
        {"kind": "DataPlane", "metadata": {"name": NAMES["dataplanes"], "organization": ORG}, "spec": {}},
        {"kind": "DeploymentPipeline", "metadata": {"name": NAMES["deploymentpipelines"], "organization": ORG},
         "spec": {}}]
    _ok(admin.post("/apply", json={"documents": [{"apiVersion": API_VERSION, **d} for d in docs]}))
    callers = {}
    for user, role, org in (("viewer", "viewer", ORG), ("outsider", "viewer", "elsewhere"),
                            ("developer", "developer", ORG), ("approver", "approver", ORG), ("orgadmin", "admin", ORG)):
        _ok(admin.post("/users", json={"name": user}))
        _ok(admin.post(f"/organizations/{org}/rolebindings", json={"user": user, "role": role}))
        callers[user] = AppClient(app, runner, _ok(admin.post(f"/users/{user}/tokens", json={}))["token"])
    binding = next(b["id"] for b in _ok(admin.get(f"/organizations/{ORG}/rolebindings"))["items"]
                   if b["user"] == "viewer")
    token = _ok(admin.get("/users/admin/tokens"))["items"][0]["id"]
    with app.state.platform.store.transaction() as s:  # a pending approval request (none is made without a build)
        s.add(ApprovalRow(id=APPROVAL, organization=ORG, project=PROJECT, component=COMPONENT, environment=ENV,
                          release_id="rel_0000decl", action="deploy", requested_by="admin"))
    yield World(app, admin, callers, binding, token)
    runner.close()
    app.state.platform.close()


def _routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods & MUTATING):
                yield method, route


def test_every_route_declares_its_permission_or_is_public_with_a_reason(tmp_path: Path) -> None:
    app = create_app(tmp_path)
    try:
        undeclared, seen = [], set()
        for route in app.routes:  # the API's routes, and the app's own (the OpenAPI document, /metrics)
            for method in sorted(set(getattr(route, "methods", None) or ()) - {"HEAD"}):
                path = getattr(route, "path", "")
                seen.add((method, path))
                declared = declared_of(route.endpoint)  # type: ignore[attr-defined]
                if declared is None and (method, path) not in PUBLIC | NOT_YET:
                    undeclared.append(f"{method} {path}")
                if declared is not None:
                    assert declared.permission.permission and declared.scope.name, f"{method} {path}"
                    assert (method, path) not in PUBLIC, f"{method} {path} is declared: it is not public"
        assert undeclared == []
        assert set(PUBLIC) <= seen and set(NOT_YET) <= seen  # the lists name routes that exist
        assert len({s for s in seen if s[0] in MUTATING}) > 50 and len({s for s in seen if s[0] == "GET"}) > 40
    finally:
        app.state.platform.close()


def test_the_route_table_is_the_one_recorded(tmp_path: Path) -> None:
    """Who may call what, route by route, as declared: a change to a rule or a scope shows here as a diff, and is
    recorded on purpose (``CELLPLANE_RECORD_ROUTES=1``), never by accident."""
    app = create_app(tmp_path)
    try:
        live = route_table(app.routes)
    finally:
        app.state.platform.close()
    assert len(live) > 100
    if os.environ.get(RECORD):
        assert not os.environ.get("CI"), f"{RECORD} records the table by hand, never in CI"
        RECORDED.write_text("\n".join(live) + "\n")
    recorded = RECORDED.read_text().splitlines()
    changed = "\n".join(difflib.unified_diff(recorded, live, "recorded", "declared now", lineterm=""))
    assert live == recorded, (
        f"the routes' rules or scopes differ from {RECORDED.name} (METHOD path | rule | scope):\n{changed}\n"
        f"If the change is meant, record it: {RECORD}=1 .venv/bin/pytest tests/test_route_declarations.py -k "
        f"recorded, and commit the file with the change.")


def _path(world: World, route: APIRoute, holder: bool = False) -> str:
    """The route's path in this world. A caller without the permission names things that exist; one that holds it
    names what is not there (a binding, a resource to delete), so that nothing it may do changes the world."""
    values = {"org": ORG, "project": PROJECT, "component": COMPONENT, "environment": ENV, "name": "fresh",
              "key": "KEY", "approval": APPROVAL, "alert": "alr_00000000", "build": "b-00000000",
              "binding_id": "rb_00000000" if holder else world.binding, "token_id": world.token, "user": "admin"}
    path = route.path.removeprefix(API_PREFIX)
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def _body(route: APIRoute) -> Any:
    if route.name.startswith(("create_", "replace_")) and route.name not in BODIES:
        return {"metadata": {"name": "fresh"}, "spec": {}}  # a resource of the route's kind, not there yet
    if route.name == "register":
        return {"agentId": "agent-1", "publicKey": public_key_text(X25519PrivateKey.generate())}
    return BODIES.get(route.name, {})


def _named(route: APIRoute, declared: Declared) -> str | None:
    """What the refusal must name: the declared permission (a resource's write: its create, the name being new)."""
    permission = declared.permission.permission
    if re.fullmatch(r"[a-z-]+:[a-z]+", permission):
        return f"permission '{permission}'"
    if route.name == "create_organization" or route.name == "replace_organization" or permission.startswith(
            "platform administrator"):
        return "platform administrator"
    if match := re.fullmatch(r"([a-z]+):create \(new\) or \1:update \(existing\)", permission):
        return f"permission '{match.group(1)}:create'"
    if route.name == "apply":
        return "permission 'projects:create'"
    if permission.startswith("dataplanes:agent"):
        return "permission 'dataplanes:update'"
    return None  # a rule of its own (the user themself, or a platform administrator): a 403 is enough


def _ask(world: World, caller: str, method: str, route: APIRoute) -> httpx.Response:
    query = {"branch": "feature"} if route.name == "delete_preview" else {}
    return world.callers[caller].request(method, _path(world, route, holder=caller not in ("viewer", "outsider")),
                                         params=query, json=None if method == "DELETE" else _body(route))


def _holder(permission: str) -> str:
    """The caller whose role on the organization holds ``permission``, the narrowest of them."""
    for caller, role in (("developer", "developer"), ("approver", "approver")):
        if permission in ROLES[role]:
            return caller
    return "orgadmin"


def test_a_caller_without_the_declared_permission_is_refused_and_audited(world: World) -> None:
    refused, audited = [], set()
    for method, route in _routes(world.app):
        declared = declared_of(route.endpoint)
        if declared is None:
            continue
        caller = "outsider" if route.name in OUTSIDER else "viewer"
        response = _ask(world, caller, method, route)
        where = f"{method} {route.path} ({route.name}) as {caller}"
        if route.name in NOT_FOUND:
            assert response.status_code == 404, f"{where}: {response.text}"
            continue
        assert response.status_code == 403, f"{where}: {response.status_code} {response.text}"
        named = _named(route, declared)
        if named is not None:
            assert named in response.json()["error"]["message"], f"{where}: {response.text}"
        refused.append(route.name)
        if declared.action is not None:
            audited.add((caller, declared.action))
    assert len(refused) > 50
    events = _ok(world.admin.get("/audit", params={"limit": 1000}))["items"]
    denied = {(e["actor"], e["action"]) for e in events if e["outcome"] == "denied"}
    assert audited - denied == set()


def test_a_caller_whose_role_holds_the_declared_permission_gets_past_the_check(world: World) -> None:
    passed = []
    for method, route in _routes(world.app):
        declared = declared_of(route.endpoint)
        if declared is None or route.name in NOT_FOUND:
            continue
        permission = declared.permission.permission
        if not re.fullmatch(r"[a-z-]+:[a-z]+", permission) or permission == "users:create":
            continue  # a rule of its own: the first test shows it refuses; test_rbac and test_api what it allows
        if route.path.startswith(API_PREFIX + "/organizations/{name}"):
            continue  # an organization's own delete: its admin may, and the world would go with it
        caller = _holder(permission)
        response = _ask(world, caller, method, route)
        assert response.status_code not in (403, 500), \
            f"{method} {route.path} ({route.name}) as {caller}: {response.status_code} {response.text}"
        passed.append(route.name)
    assert len(passed) > 20


def test_a_declared_route_still_acts_for_a_caller_with_the_permission(world: World) -> None:
    """The declaration's unit of work commits: config set by the admin is read back, and audited as succeeded."""
    base = f"/organizations/{ORG}/projects/{PROJECT}/components/{COMPONENT}/config"
    assert _ok(world.admin.put(base + "/GREETING", json={"value": "hello"}))["changed"] is True
    assert [i["value"] for i in _ok(world.admin.get(base))["items"] if i["key"] == "GREETING"] == ["hello"]
    events = _ok(world.admin.get("/audit", params={"limit": 1000, "kind": "Component"}))["items"]
    assert any(e["action"] == "config.set" and e["outcome"] == "succeeded" and e["message"] == "GREETING (plain)"
               for e in events)


def _reads(app: FastAPI) -> Iterator[tuple[APIRoute, Declared]]:
    for route in app.routes:
        if isinstance(route, APIRoute) and "GET" in route.methods and (declared := declared_of(route.endpoint)):
            yield route, declared


def _read_path(route: APIRoute) -> str:
    """The read's path in this world: a resource's own read names one that exists (``NAMES``)."""
    kind = route.path.split("/{name}")[0].rsplit("/", 1)[-1]
    path = route.path.removeprefix(API_PREFIX)
    return re.sub(r"\{(\w+)\}", lambda m: NAMES.get(kind, "edge") if m.group(1) == "name" else READ_PATH[m.group(1)],
                  path)


def test_a_caller_without_a_read_permission_is_refused_with_a_403_that_names_it(world: World) -> None:
    """Every declared read, asked by a caller with no role in the organization (a viewer elsewhere): refused, the
    refusal naming the declared permission; a read that lets any caller in answers it."""
    refused, open_ = [], []
    for route, declared in _reads(world.app):
        response = world.callers["outsider"].get(_read_path(route))
        where = f"GET {route.path} ({route.name}) as outsider"
        if not declared.permission.refuses:
            assert response.status_code == 200, f"{where}: {response.status_code} {response.text}"
            open_.append(route.name)
            continue
        assert response.status_code == 403, f"{where}: {response.status_code} {response.text}"
        named = _named(route, declared)
        if named is not None:
            assert named in response.json()["error"]["message"], f"{where}: {response.text}"
        refused.append(route.name)
    assert len(refused) > 40 and len(open_) == 4  # the organizations, whoami, the users, the audit log


def test_a_caller_whose_role_holds_a_read_permission_gets_past_the_check(world: World) -> None:
    """Every read declared with a plain permission, asked by the narrowest role holding it: past the check (the
    answer is about this world: found, not found, or a query to complete), and an environment-scoped or a project's
    read never turns into a 500."""
    passed = []
    for route, declared in _reads(world.app):
        permission = declared.permission.permission
        if not declared.permission.refuses or not re.fullmatch(r"[a-z-]+:[a-z]+", permission):
            continue  # any caller (the test above), or a rule of its own (test_rbac, test_dataplane_api)
        caller = _holder(permission)
        response = world.callers[caller].get(_read_path(route))
        assert response.status_code not in (403, 500), \
            f"GET {route.path} ({route.name}) as {caller}: {response.status_code} {response.text}"
        passed.append(route.name)
    assert len(passed) > 40


def test_an_async_read_that_never_checks_its_permission_answers_a_500_not_its_data(world: World) -> None:
    """An async read whose scope needs a session is checked where it reads (``Call.reading``); one that reads some
    other way is a programming error, caught before its answer leaves (here: a route that forgot)."""
    router = api_router()

    @router.read("/forgetful/{org}/builds/{build}", requires("builds:get"), THE_BUILD)
    async def forgetful(c: Call[None], org: NamePath, build: NamePath) -> dict[str, str]:
        return {"secret": "never sent"}

    @router.read("/careful/{org}/builds/{build}", requires("builds:get"), THE_BUILD)
    async def careful(c: Call[None], org: NamePath, build: NamePath) -> dict[str, str]:
        with c.reading():
            return {"build": c.row.id}

    app = FastAPI()
    app.state.platform = world.app.state.platform
    errors.install(app)
    add_routes(app, [router])
    client = AppClient(app, world.admin.runner, world.admin.token, raising=False)  # as a server: the 500 it sends
    answer = client.get(f"/forgetful/{ORG}/builds/b-00000000")
    assert answer.status_code == 500 and "never sent" not in answer.text
    assert client.get(f"/careful/{ORG}/builds/b-00000000").status_code == 404  # checked, then not found
    refused = AppClient(app, world.admin.runner, world.callers["outsider"].token).get(f"/careful/{ORG}/builds/b-1")
    assert refused.status_code == 403 and "permission 'builds:get'" in refused.text
