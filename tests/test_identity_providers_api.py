"""Organizations' OpenID Connect providers through the API (in-process, httpx's ASGI transport): validation with field
paths, the client secret sealed at rest and never returned, permissions (organization admins only), the audit, key
rotation, and what deleting a provider or its organization takes with it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from cellplane import API_VERSION
from cellplane.controlplane import identityproviders as idp
from cellplane.controlplane.api.app import create_app
from cellplane.store.tables import IdentityProviderRow, RoleBindingRow, UserRow
from inprocess import AppClient

ORG = "acme"
SECRET = "s3cr3t-client-value-never-shown"
PROVIDER = f"/organizations/{ORG}/identity-providers"


@dataclass
class World:
    app: FastAPI
    admin: AppClient
    callers: dict[str, AppClient]


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("idp")
    app = create_app(data)
    runner = asyncio.Runner()
    admin = AppClient(app, runner, (data / "admin.token").read_text().strip())
    docs = [{"kind": "Organization", "metadata": {"name": name}, "spec": {}} for name in (ORG, "other")] + [
        {"kind": "Project", "metadata": {"name": "shop", "organization": ORG}, "spec": {}}]
    _ok(admin.post("/apply", json={"documents": [{"apiVersion": API_VERSION, **d} for d in docs]}))
    callers = {}
    for user, role, org in (("orgadmin", "admin", ORG), ("viewer", "viewer", ORG), ("developer", "developer", ORG),
                            ("otheradmin", "admin", "other")):
        _ok(admin.post("/users", json={"name": user}))
        _ok(admin.post(f"/organizations/{org}/rolebindings", json={"user": user, "role": role}))
        callers[user] = AppClient(app, runner, _ok(admin.post(f"/users/{user}/tokens", json={}))["token"])
    yield World(app, admin, callers)
    runner.close()
    app.state.platform.close()


def _body(**overrides: Any) -> dict[str, Any]:
    return {"issuer": "https://login.example.com/realms/acme", "clientId": "cellplane", "clientSecret": SECRET,
            "scopes": ["openid", "email", "profile", "groups"],
            "groupRoles": [{"group": "platform", "role": "admin"},
                           {"group": "shop-devs", "role": "developer", "project": "shop"},
                           {"group": "everyone", "role": "viewer"}],
            "createUsers": True, **overrides}


def test_an_organization_admin_creates_a_provider_and_its_secret_is_never_returned(world: World) -> None:
    orgadmin = world.callers["orgadmin"]
    created = orgadmin.put(f"{PROVIDER}/keycloak", json=_body())
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["clientSecretSet"] is True and "clientSecret" not in view
    assert view["groupsClaim"] == "groups" and view["redirectPath"] == "/console/sso/callback"
    assert view["groupRoles"][1] == {"group": "shop-devs", "role": "developer", "project": "shop"}
    again = orgadmin.put(f"{PROVIDER}/keycloak", json=_body(createUsers=False))
    assert again.status_code == 200 and again.json()["createUsers"] is False
    for response in (orgadmin.get(f"{PROVIDER}/keycloak"), orgadmin.get(PROVIDER), world.admin.get("/audit")):
        assert response.status_code == 200 and SECRET not in response.text
    listed = orgadmin.get(PROVIDER).json()["items"]
    assert [p["name"] for p in listed] == ["keycloak"] and listed[0]["clientSecretSet"] is True
    events = [e for e in world.admin.get("/audit", params={"kind": "IdentityProvider"}).json()["items"]
              if e["name"] == "keycloak"]
    assert [e["action"] for e in events][:2] == ["identityprovider.update"] * 2
    assert events[-1]["message"].startswith("created: issuer https://login.example.com/realms/acme")


def test_the_client_secret_is_sealed_at_rest_kept_when_left_out_and_removed_with_an_empty_one(world: World) -> None:
    orgadmin = world.callers["orgadmin"]
    _ok(orgadmin.put(f"{PROVIDER}/sealed", json=_body()))
    platform = world.app.state.platform
    with platform.store.read() as s:
        row = s.scalar(select(IdentityProviderRow).where(IdentityProviderRow.name == "sealed"))
        assert row is not None and row.client_secret is not None and SECRET not in row.client_secret
        assert idp.client_secret(platform.keyring, row) == SECRET
    kept = _body()
    del kept["clientSecret"]
    assert _ok(orgadmin.put(f"{PROVIDER}/sealed", json=kept))["clientSecretSet"] is True
    with platform.store.read() as s:
        row = s.scalar(select(IdentityProviderRow).where(IdentityProviderRow.name == "sealed"))
        assert row is not None and idp.client_secret(platform.keyring, row) == SECRET
    assert _ok(orgadmin.put(f"{PROVIDER}/sealed", json=_body(clientSecret="")))["clientSecretSet"] is False
    _ok(orgadmin.request("DELETE", f"{PROVIDER}/sealed"))


def test_every_problem_is_reported_with_its_field_path(world: World) -> None:
    response = world.callers["orgadmin"].put(f"{PROVIDER}/bad", json=_body(
        issuer="http://login.example.com", scopes=["email"],
        groupRoles=[{"group": "g", "role": "viewer", "project": "nowhere"},
                    {"group": "g", "role": "developer", "environment": "nowhere"}]))
    assert response.status_code == 422, response.text
    problems = {d["field"]: d["problem"] for d in response.json()["error"]["details"]}
    assert problems == {
        "issuer": "must be https (plain http only on a loopback address: localhost, 127.x.x.x or [::1])",
        "scopes": "must include 'openid'",
        "groupRoles[0].project": "project 'nowhere' not found in organization 'acme'",
        "groupRoles[1].environment": "environment 'nowhere' not found in organization 'acme'",
    }
    wrong_role = world.callers["orgadmin"].put(f"{PROVIDER}/bad", json=_body(
        groupRoles=[{"group": "g", "role": "root"}], scopes=["openid", "two words"]))
    assert wrong_role.status_code == 422
    assert [d["field"] for d in wrong_role.json()["error"]["details"]] == ["scopes[1]"]  # the body's own rules first
    wrong_role = world.callers["orgadmin"].put(f"{PROVIDER}/bad", json=_body(groupRoles=[{"group": "g",
                                                                                          "role": "root"}]))
    assert wrong_role.status_code == 422
    assert wrong_role.json()["error"]["details"] == [
        {"field": "groupRoles[0].role",
         "problem": "'root' is not a role; use one of viewer, developer, approver, admin"}]
    bad_name = world.callers["orgadmin"].put(f"{PROVIDER}/Bad_Name", json=_body())
    assert bad_name.status_code == 422 and bad_name.json()["error"]["details"][0]["field"] == "path.name"
    assert world.callers["orgadmin"].get(f"{PROVIDER}/bad").status_code == 404


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8080", "http://localhost:9000/realms/x", "http://[::1]:1",
                                    "https://login.microsoftonline.com/tenant/v2.0"])
def test_an_issuer_is_https_or_plain_http_on_loopback(issuer: str) -> None:
    assert idp.issuer_problem(issuer) is None


@pytest.mark.parametrize("issuer", ["http://10.0.0.1", "ftp://example.com", "https://example.com/?x=1",
                                    "https://user:pw@example.com", "https://example.com/#f", "example.com"])
def test_other_issuers_are_refused(issuer: str) -> None:
    assert idp.issuer_problem(issuer) is not None


@pytest.mark.parametrize("user", ["viewer", "developer", "otheradmin"])
def test_only_the_organizations_admins_read_or_change_its_providers(world: World, user: str) -> None:
    _ok(world.callers["orgadmin"].put(f"{PROVIDER}/guarded", json=_body()))
    caller = world.callers[user]
    for response in (caller.get(PROVIDER), caller.get(f"{PROVIDER}/guarded"),
                     caller.put(f"{PROVIDER}/guarded", json=_body(createUsers=False)),
                     caller.request("DELETE", f"{PROVIDER}/guarded")):
        assert response.status_code == 403, response.text
        assert "identityproviders:" in response.json()["error"]["message"]
    assert _ok(world.admin.get(f"{PROVIDER}/guarded"))["createUsers"] is True
    denied = [e for e in world.admin.get("/audit", params={"actor": user}).json()["items"]
              if e["action"] == "identityprovider.update"]
    assert denied and denied[0]["outcome"] == "denied"


def test_deleting_a_provider_removes_its_links_and_bindings_but_not_the_users(world: World) -> None:
    orgadmin = world.callers["orgadmin"]
    _ok(orgadmin.put(f"{PROVIDER}/leaving", json=_body()))
    store = world.app.state.platform.store
    with store.transaction() as s:
        row = idp.get(s, ORG, "leaving")
        signed = idp.sign_in(s, row, "subject-1", {"preferred_username": "Grace.Hopper", "email": "grace@example.com",
                                                   "groups": ["platform", "shop-devs"]})
        assert signed.created and signed.user.name == "grace-hopper"
        assert signed.roles == ["admin on organization 'acme'", "developer on project 'acme/shop'"]
    assert _ok(orgadmin.request("DELETE", f"{PROVIDER}/leaving")) == {"deleted": "leaving"}
    with store.read() as s:
        user = s.scalar(select(UserRow).where(UserRow.name == "grace-hopper"))
        assert user is not None
        assert s.scalars(select(RoleBindingRow).where(RoleBindingRow.user_id == user.id)).all() == []
    assert orgadmin.request("DELETE", f"{PROVIDER}/leaving").status_code == 404


def test_key_rotation_reencrypts_client_secrets(world: World) -> None:
    _ok(world.callers["orgadmin"].put(f"{PROVIDER}/rotated", json=_body()))
    platform = world.app.state.platform
    rotation = _ok(world.admin.post("/admin/rotate-key"))
    assert rotation["reencrypted"] >= 1
    with platform.store.read() as s:
        row = idp.get(s, ORG, "rotated")
        assert platform.keyring.key_id_of(row.client_secret) == rotation["keyId"]
        assert idp.client_secret(platform.keyring, row) == SECRET


def test_a_deleted_organization_takes_its_providers_with_it(tmp_path: Path) -> None:
    app = create_app(tmp_path)
    runner = asyncio.Runner()
    try:
        admin = AppClient(app, runner, (tmp_path / "admin.token").read_text().strip())
        org = {"apiVersion": API_VERSION, "kind": "Organization", "metadata": {"name": "brief"}, "spec": {}}
        _ok(admin.post("/apply", json={"documents": [org]}))
        _ok(admin.put("/organizations/brief/identity-providers/okta", json=_body(groupRoles=[])))
        _ok(admin.request("DELETE", "/organizations/brief"))
        _ok(admin.post("/apply", json={"documents": [org]}))
        assert _ok(admin.get("/organizations/brief/identity-providers")) == {"items": []}
    finally:
        runner.close()
        app.state.platform.close()
