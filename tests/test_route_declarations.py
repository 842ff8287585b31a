"""Every route that changes state declares its permission where it is declared (``controlplane/api/declare.py``), and
enforces what it declares.

The first test walks the app's routes: a POST, PUT, PATCH or DELETE without a declaration fails it, unless it is
one of the public routes listed below with the reason it needs no permission. The second asks every declared
route, in-process (httpx's ASGI transport; no server, no lifespan), as a caller who lacks the declared permission:
the answer must be a 403 that names it, and the refusal must be in the audit log under the route's declared
action; then, for a plain permission, as a caller whose role on the organization holds it: the answer must not be a
403 (the call gets past the check, to the platform's own answer about this world).
"""

from __future__ import annotations

import asyncio
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
from cellplane.controlplane.api.app import create_app
from cellplane.controlplane.api.declare import Declared, declared_of
from cellplane.controlplane.api.routing import API_PREFIX
from cellplane.controlplane.rbac import ROLES
from cellplane.sealing import public_key_text
from cellplane.store.tables import ApprovalRow

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# Routes that change state and need no permission, each with why.
PUBLIC: dict[tuple[str, str], str] = {
    ("POST", API_PREFIX + "/hooks/git/{org}/{project}/{component}"):
        "a git host's push event: no token, accepted only with the component's X-Hub-Signature-256 signature",
}
# Routes not converted to a declaration yet (empty: every state-changing route declares its permission).
NOT_YET: dict[tuple[str, str], str] = {}

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
    "create_binding": {"user": "viewer", "role": "admin"},
    "create_agent_token": {},
    "apply": {"organization": ORG, "documents": [
        {"apiVersion": API_VERSION, "kind": "Project", "metadata": {"name": "gamma"}, "spec": {}}]},
}
# Routes whose scope is a row looked up first: asked by a non-member of the organization, whose permission is
# checked on the organization before any lookup (no row of theirs is found by guessing ids).
OUTSIDER = {"cancel_build", "delete_rule", "test_rule"}
# Answers other than "403 naming the permission", by design.
NOT_FOUND = {"revoke_token": "another user's token is not found (404): its id says nothing"}


class Client:
    """Requests to the app in this process, through httpx's ASGI transport, on one event loop."""

    def __init__(self, app: FastAPI, runner: asyncio.Runner, token: str) -> None:
        self.app, self.runner, self.token = app, runner, token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api" + API_PREFIX,
                                         headers={"Authorization": f"Bearer {self.token}"}) as client:
                return await client.request(method, path, **kwargs)

        return self.runner.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)


@dataclass
class World:
    app: FastAPI
    admin: Client
    callers: dict[str, Client]
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
    admin = Client(app, runner, (data / "admin.token").read_text().strip())
    docs = [{"kind": "Organization", "metadata": {"name": name}, "spec": {}} for name in (ORG, "elsewhere")] + [
        {"kind": "Environment", "metadata": {"name": env, "organization": ORG}, "spec": {}}
        for env in (ENV, "production")] + [
        {"kind": "Project", "metadata": {"name": PROJECT, "organization": ORG}, "spec": {}},
        {"kind": "Component", "metadata": {"name": COMPONENT, "organization": ORG, "project": PROJECT}, "spec": {}}]
    _ok(admin.post("/apply", json={"documents": [{"apiVersion": API_VERSION, **d} for d in docs]}))
    callers = {}
    for user, role, org in (("viewer", "viewer", ORG), ("outsider", "viewer", "elsewhere"),
                            ("developer", "developer", ORG), ("approver", "approver", ORG), ("orgadmin", "admin", ORG)):
        _ok(admin.post("/users", json={"name": user}))
        _ok(admin.post(f"/organizations/{org}/rolebindings", json={"user": user, "role": role}))
        callers[user] = Client(app, runner, _ok(admin.post(f"/users/{user}/tokens", json={}))["token"])
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


def test_every_route_that_changes_state_declares_its_permission(tmp_path: Path) -> None:
    app = create_app(tmp_path)
    try:
        undeclared, seen = [], set()
        for method, route in _routes(app):
            seen.add((method, route.path))
            declared = declared_of(route.endpoint)
            if declared is None and (method, route.path) not in PUBLIC | NOT_YET:
                undeclared.append(f"{method} {route.path}")
            if declared is not None:
                assert declared.permission.permission and declared.scope.name, f"{method} {route.path}"
        assert undeclared == []
        assert set(PUBLIC) <= seen and set(NOT_YET) <= seen  # the lists name routes that exist
        assert len(seen) > 50  # the walk reached the routes of every kind
    finally:
        app.state.platform.close()


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
