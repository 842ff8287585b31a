"""The REST API's behaviour, through real HTTP against a real control plane (SQLite; one test on PostgreSQL).

Every error, whatever produced it, must be ``{"error": {"code", "message", "details": [{"field",
"problem"}]}}``; ``error_of`` checks that shape on every refusal these tests provoke.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from cellplane.model import KINDS
from liveserver import LiveServer, doc, start_server

API_VERSION = "cellplane.dev/v1alpha1"
MASK = "********"


# -- helpers --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_server(shared_live_server: LiveServer) -> LiveServer:
    """This module's names are its own (an organization per test): it shares the session's control plane."""
    return shared_live_server


def error_of(r: httpx.Response, status: int, *, code: str | None = None, field: str | None = None) -> dict[str, Any]:
    """Assert ``r`` is an error of ``status`` in the API's one error shape; return its ``error`` object."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], list), error
    for detail in error["details"]:
        assert set(detail) == {"field", "problem"}, detail
        assert isinstance(detail["field"], str) and isinstance(detail["problem"], str), detail
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert field in [d["field"] for d in error["details"]], error
    return error


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    return r.json()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_user(admin: httpx.Client, server: LiveServer, prefix: str) -> tuple[str, httpx.Client]:
    name = unique(prefix)
    ok(admin.post("/users", json={"name": name}), 201)
    token = ok(admin.post(f"/users/{name}/tokens", json={"name": "t"}), 201)["token"]
    return name, server.client(token)


def config_items(client: httpx.Client, org: str, project: str, component: str,
                 env: str | None = None) -> dict[str, dict[str, Any]]:
    params = {"env": env} if env else {}
    r = client.get(f"/organizations/{org}/projects/{project}/components/{component}/config", params=params)
    items = ok(r)["items"]
    return {(i["key"] if env or not i["environment"] else f"{i['key']}@{i['environment']}"): i for i in items}


def db_bytes(data_dir: Path) -> bytes:
    files = sorted(data_dir.glob("cellplane.db*"))
    assert files, f"no SQLite files in {data_dir}"
    return b"".join(f.read_bytes() for f in files)


def stored_config_value(data_dir: Path, org: str, key: str) -> str:
    with sqlite3.connect(f"file:{data_dir / 'cellplane.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT value FROM config_values WHERE organization = ? AND key = ?", (org, key)).fetchone()
    assert row is not None, f"no stored value for {org}/{key}"
    return row[0]


@pytest.fixture
def org(admin: httpx.Client) -> str:
    """A fresh organization (with its default environments and pipeline) for one test."""
    name = unique("org")
    ok(admin.post("/organizations", json={"metadata": {"name": name}}), 201)
    return name


@pytest.fixture
def project(admin: httpx.Client, org: str) -> str:
    ok(admin.post(f"/organizations/{org}/projects", json={"metadata": {"name": "shop"}}), 201)
    return "shop"


def audit_events(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    return ok(client.get("/audit", params={"limit": 1000, **params}))["items"]


# -- meta and authentication ----------------------------------------------------------------------------------------


def test_version_and_healthz(live_server: LiveServer, admin: httpx.Client) -> None:
    version = ok(admin.get("/version"))
    assert version["apiVersion"] == API_VERSION
    assert version["database"] == "sqlite"
    assert isinstance(version["version"], str) and version["version"]
    assert ok(httpx.get(live_server.url + "/healthz")) == {"status": "ok"}


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nonsense", "Bearer cpt_0123456789ab_" + "x" * 43,
                                    "Basic YWRtaW46YWRtaW4=", "cpt_0123456789ab_" + "x" * 43])
def test_requests_without_a_valid_token_get_401(live_server: LiveServer, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    for method, path in [("GET", "/organizations"), ("GET", "/organizations/default/projects"),
                         ("POST", "/apply"), ("GET", "/whoami"), ("GET", "/audit")]:
        r = httpx.request(method, live_server.api + path, headers=headers, json={} if method == "POST" else None)
        error_of(r, 401, code="unauthorized")


def test_unknown_path_and_wrong_method(admin: httpx.Client) -> None:
    error_of(admin.get("/no-such-thing"), 404, code="not-found")
    r = admin.patch("/organizations/default/projects")
    error_of(r, 405, code="method-not-allowed")
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "POST"}


# -- CRUD for every kind --------------------------------------------------------------------------------------------

KIND_CASES = [
    # kind, collection path, spec, changed spec
    ("Organization", "/organizations", {"displayName": "One"}, {"displayName": "Two"}),
    ("DataPlane", "/organizations/{org}/dataplanes", {"displayName": "One", "type": "local"},
     {"displayName": "Two", "type": "local"}),
    ("Environment", "/organizations/{org}/environments", {"displayName": "One"},
     {"displayName": "Two", "production": True}),
    ("DeploymentPipeline", "/organizations/{org}/deploymentpipelines",
     {"displayName": "One", "promotionPaths": [{"source": "development", "targets": [{"name": "staging"}]}]},
     {"displayName": "Two", "promotionPaths": [{"source": "staging", "targets": [{"name": "production"}]}]}),
    ("Project", "/organizations/{org}/projects", {"displayName": "One"}, {"displayName": "Two"}),
    ("Component", "/organizations/{org}/projects/{project}/components", {"displayName": "One", "replicas": 1},
     {"displayName": "Two", "replicas": 2}),
]


@pytest.mark.parametrize(("kind", "collection", "spec", "changed"), KIND_CASES, ids=[c[0] for c in KIND_CASES])
def test_crud(admin: httpx.Client, project: str, org: str, kind: str, collection: str, spec: dict[str, Any],
              changed: dict[str, Any]) -> None:
    base = collection.format(org=org, project=project)
    name = unique("thing")
    body = {"metadata": {"name": name}, "spec": spec}

    created = ok(admin.post(base, json=body), 201)
    assert created["apiVersion"] == API_VERSION and created["kind"] == kind
    assert created["metadata"]["name"] == name
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["displayName"] == "One"
    if kind != "Organization":
        assert created["metadata"]["organization"] == org
    if kind == "Component":
        assert created["metadata"]["project"] == project

    error_of(admin.post(base, json=body), 409, code="already-exists", field="metadata.name")
    assert ok(admin.get(f"{base}/{name}")) == created
    assert name in [i["metadata"]["name"] for i in ok(admin.get(base, params={"limit": 1000}))["items"]]

    same = ok(admin.put(f"{base}/{name}", json=body), 200)
    assert same["metadata"]["generation"] == 1 and same["metadata"]["uid"] == created["metadata"]["uid"]
    updated = ok(admin.put(f"{base}/{name}", json={"metadata": {"name": name}, "spec": changed}), 200)
    assert updated["metadata"]["generation"] == 2
    assert updated["spec"]["displayName"] == "Two"
    assert ok(admin.get(f"{base}/{name}"))["spec"] == updated["spec"]

    error_of(admin.put(f"{base}/{name}", json={"metadata": {"name": "other"}, "spec": changed}), 422,
             code="invalid", field="metadata.name")
    error_of(admin.post(base, json={"kind": "Banana", "metadata": {"name": unique("x")}}), 422, field="kind")
    if kind != "Organization":
        error_of(admin.put(f"{base}/{name}", json={"metadata": {"name": name, "organization": "elsewhere"}}), 422,
                 field="metadata.organization")

    error_of(admin.get(f"{base}/no-such-{kind.lower()}"), 404, code="not-found")
    deleted = ok(admin.delete(f"{base}/{name}"))["deleted"]
    assert f"{kind.lower()}/{name}" in deleted
    error_of(admin.get(f"{base}/{name}"), 404, code="not-found")
    error_of(admin.delete(f"{base}/{name}"), 404, code="not-found")

    # PUT of a name that does not exist creates it
    again = ok(admin.put(f"{base}/{name}", json=body), 201)
    assert again["metadata"]["uid"] != created["metadata"]["uid"]
    if kind == "Organization":
        admin.delete(f"{base}/{name}")


def test_only_a_platform_administrator_creates_organizations(live_server: LiveServer, admin: httpx.Client,
                                                             org: str) -> None:
    user, client = new_user(admin, live_server, "orgadmin")
    ok(admin.post(f"/organizations/{org}/rolebindings", json={"user": user, "role": "admin"}), 201)
    error = error_of(client.post("/organizations", json={"metadata": {"name": unique("mine")}}), 403,
                     code="forbidden")
    assert "platform administrator" in error["message"]


def test_a_new_organization_gets_environments_and_a_default_pipeline(admin: httpx.Client, org: str) -> None:
    envs = {e["metadata"]["name"]: e for e in ok(admin.get(f"/organizations/{org}/environments"))["items"]}
    assert set(envs) == {"development", "staging", "production"}
    assert envs["production"]["spec"]["production"] is True
    assert envs["development"]["spec"]["production"] is False
    pipelines = ok(admin.get(f"/organizations/{org}/deploymentpipelines"))["items"]
    assert [p["metadata"]["name"] for p in pipelines] == ["default"]
    paths = {p["source"]: p["targets"] for p in pipelines[0]["spec"]["promotionPaths"]}
    assert [t["name"] for t in paths["development"]] == ["staging"]
    assert [t["name"] for t in paths["staging"]] == ["production"]
    assert paths["staging"][0]["requiresApproval"] is True
    # a project without a pipeline uses the default one
    created = ok(admin.post(f"/organizations/{org}/projects", json={"metadata": {"name": "p"}}), 201)
    assert created["spec"]["deploymentPipeline"] == "default"


# -- listing --------------------------------------------------------------------------------------------------------


def test_lists_page_through_continue_tokens(admin: httpx.Client, org: str) -> None:
    names = {f"p-{i:02d}" for i in range(25)}
    docs = [doc("Project", n) for n in sorted(names, reverse=True)]
    ok(admin.post("/apply", json={"organization": org, "documents": docs}))

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10}
        if token:
            params["continue"] = token
        page = ok(admin.get(f"/organizations/{org}/projects", params=params))
        assert page["kind"] == "ProjectList"
        assert len(page["items"]) <= 10
        seen += [i["metadata"]["name"] for i in page["items"]]
        pages += 1
        token = page["metadata"]["continue"]
        if token is None:
            break
        assert pages < 10, "the continue tokens never end"
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25, seen
    assert set(seen) == names
    assert seen == sorted(seen)

    # every page size gives the same items
    everything = ok(admin.get(f"/organizations/{org}/projects", params={"limit": 1000}))
    assert [i["metadata"]["name"] for i in everything["items"]] == seen
    assert everything["metadata"]["continue"] is None


@pytest.mark.parametrize("token", [
    "not a token!", "%%%", "e30", base64.urlsafe_b64encode(b'["a", "b"]').decode(),
    base64.urlsafe_b64encode(b'["A B", "", ""]').decode(), base64.urlsafe_b64encode(b'["\\u0000", "", ""]').decode(),
    base64.urlsafe_b64encode(b'["\\ud800", "", ""]').decode(), base64.urlsafe_b64encode(b"[" * 700).decode(),
])
def test_a_bad_continue_token_is_a_422(admin: httpx.Client, token: str) -> None:
    error_of(admin.get("/organizations/default/projects", params={"continue": token}), 422, field="continue")


# -- apply ----------------------------------------------------------------------------------------------------------


def test_apply_of_ten_documents_with_an_invalid_tenth_stores_nothing(admin: httpx.Client, org: str) -> None:
    docs = [doc("Project", f"ok-{i}") for i in range(9)] + [doc("Project", "Bad_Name!")]
    error = error_of(admin.post("/apply", json={"organization": org, "documents": docs}), 422, code="invalid",
                     field="documents[9].metadata.name")
    assert "nothing was applied" in error["message"]
    assert [d["field"] for d in error["details"]] == ["documents[9].metadata.name"]
    for i in range(9):
        error_of(admin.get(f"/organizations/{org}/projects/ok-{i}"), 404)
    assert ok(admin.get(f"/organizations/{org}/projects"))["items"] == []


def test_apply_rolls_back_when_the_tenth_document_fails_while_storing(admin: httpx.Client, org: str) -> None:
    """Nine documents of several kinds are stored in the transaction before the tenth fails: none stays."""
    docs = [
        doc("DataPlane", "dp"),
        doc("Environment", "qa", {"dataPlane": "dp"}),
        doc("DeploymentPipeline", "pipe", {"promotionPaths": [{"source": "development", "targets": [{"name": "qa"}]}]}),
        doc("Project", "web", {"deploymentPipeline": "pipe"}),
        *[doc("Component", f"c{i}", project="web") for i in range(5)],
        doc("Project", "broken", {"deploymentPipeline": "no-such-pipeline"}),
    ]
    assert len(docs) == 10
    error = error_of(admin.post("/apply", json={"organization": org, "documents": docs}), 422,
                     field="documents[9].spec.deploymentPipeline")
    assert "nothing was applied" in error["message"]
    error_of(admin.get(f"/organizations/{org}/dataplanes/dp"), 404)
    error_of(admin.get(f"/organizations/{org}/environments/qa"), 404)
    error_of(admin.get(f"/organizations/{org}/deploymentpipelines/pipe"), 404)
    error_of(admin.get(f"/organizations/{org}/projects/web"), 404)
    assert ok(admin.get(f"/organizations/{org}/components"))["items"] == []


def test_a_bad_name_is_refused_at_metadata_name(admin: httpx.Client, org: str) -> None:
    error_of(admin.post(f"/organizations/{org}/projects", json={"metadata": {"name": "Bad_Name!"}}), 422,
             code="invalid", field="metadata.name")
    error_of(admin.post("/apply", json={"organization": org, "documents": [doc("Project", "Bad_Name!")]}), 422,
             field="documents[0].metadata.name")


def test_dry_run_stores_nothing(admin: httpx.Client, org: str) -> None:
    docs = [doc("Project", "dry"), doc("Component", "c", project="dry")]
    result = ok(admin.post("/apply", params={"dryRun": "true"}, json={"organization": org, "documents": docs}))
    assert result["dryRun"] is True
    assert [(r["kind"], r["name"], r["action"]) for r in result["results"]] == [
        ("Project", "dry", "created"), ("Component", "c", "created")]
    error_of(admin.get(f"/organizations/{org}/projects/dry"), 404)

    preview = ok(admin.post(f"/organizations/{org}/projects", params={"dryRun": "true"},
                            json={"metadata": {"name": "dry2"}}), 201)
    assert preview["metadata"]["name"] == "dry2"
    error_of(admin.get(f"/organizations/{org}/projects/dry2"), 404)
    # an invalid document fails the dry run just the same
    error_of(admin.post("/apply", params={"dryRun": "true"},
                        json={"organization": org, "documents": [doc("Project", "x", {"replicas": 3})]}), 422,
             field="documents[0].spec.replicas")


def test_reapply_is_unchanged_and_a_changed_spec_is_configured(admin: httpx.Client, org: str) -> None:
    docs = [doc("Project", "web"), doc("Component", "api", {"replicas": 1}, project="web", labels={"team": "a"})]
    body = {"organization": org, "documents": docs}
    first = ok(admin.post("/apply", json=body))["results"]
    assert [r["action"] for r in first] == ["created", "created"]
    component = f"/organizations/{org}/projects/web/components/api"
    before = ok(admin.get(component))["metadata"]

    again = ok(admin.post("/apply", json=body))["results"]
    assert [r["action"] for r in again] == ["unchanged", "unchanged"]
    assert ok(admin.get(component))["metadata"]["generation"] == before["generation"] == 1
    assert ok(admin.get(component))["metadata"]["updateTimestamp"] == before["updateTimestamp"]

    docs[1]["spec"] = {"replicas": 3}
    changed = ok(admin.post("/apply", json=body))["results"]
    assert [(r["name"], r["action"]) for r in changed] == [("web", "unchanged"), ("api", "configured")]
    assert ok(admin.get(component))["metadata"]["generation"] == 2

    # labels are metadata: configured, but the spec's generation stays
    docs[1]["metadata"]["labels"] = {"team": "b"}
    relabelled = ok(admin.post("/apply", json=body))["results"]
    assert relabelled[1]["action"] == "configured"
    meta = ok(admin.get(component))["metadata"]
    assert meta["generation"] == 2 and meta["labels"] == {"team": "b"}


def test_references_must_resolve(admin: httpx.Client, org: str, project: str) -> None:
    # a component in a project that does not exist
    error_of(admin.post(f"/organizations/{org}/projects/nope/components", json={"metadata": {"name": "c"}}), 404,
             field="metadata.project")
    error_of(admin.post("/apply", json={"organization": org, "documents": [doc("Component", "c", project="nope")]}),
             404, field="documents[0].metadata.project")
    # ... or in an organization that does not exist
    error_of(admin.post("/organizations/nope/projects", json={"metadata": {"name": "p"}}), 404,
             field="metadata.organization")
    # a project with a pipeline that does not exist
    error_of(admin.post(f"/organizations/{org}/projects",
                        json={"metadata": {"name": "p"}, "spec": {"deploymentPipeline": "missing"}}), 422,
             field="spec.deploymentPipeline")
    # an environment on a data plane that does not exist
    error_of(admin.post(f"/organizations/{org}/environments",
                        json={"metadata": {"name": "qa"}, "spec": {"dataPlane": "missing"}}), 422,
             field="spec.dataPlane")
    # a pipeline promoting to an environment that does not exist
    error_of(admin.post(f"/organizations/{org}/deploymentpipelines", json={"metadata": {"name": "pp"}, "spec": {
        "promotionPaths": [{"source": "development", "targets": [{"name": "missing"}]}]}}), 422,
             field="spec.promotionPaths[0].targets[0].name")
    # a per-environment value for an environment that does not exist
    spec = {"configuration": {"env": [{"name": "X", "value": "1", "environments": {"missing": "2"}}]}}
    error_of(admin.post(f"/organizations/{org}/projects/{project}/components",
                        json={"metadata": {"name": "c"}, "spec": spec}), 422,
             field="spec.configuration.env[0].environments.missing")


# -- deletion -------------------------------------------------------------------------------------------------------


def test_deleting_a_project_deletes_its_components_and_their_config(admin: httpx.Client, org: str) -> None:
    docs = [doc("Project", "web"), doc("Component", "a", project="web"), doc("Component", "b", project="web"),
            doc("Project", "other"), doc("Component", "a", project="other")]
    ok(admin.post("/apply", json={"organization": org, "documents": docs}))
    ok(admin.put(f"/organizations/{org}/projects/web/components/a/config/KEY", json={"value": "old"}))

    deleted = ok(admin.delete(f"/organizations/{org}/projects/web"))["deleted"]
    assert sorted(deleted) == ["component/a", "component/b", "project/web"]
    error_of(admin.get(f"/organizations/{org}/projects/web/components/a"), 404)
    remaining = ok(admin.get(f"/organizations/{org}/components"))["items"]
    assert [(c["metadata"]["project"], c["metadata"]["name"]) for c in remaining] == [("other", "a")]

    # the same names again start clean: no configuration survives its component
    ok(admin.post("/apply", json={"organization": org, "documents": docs[:2]}))
    assert config_items(admin, org, "web", "a") == {}


def test_an_organization_with_projects_cannot_be_deleted(admin: httpx.Client, org: str, project: str) -> None:
    error = error_of(admin.delete(f"/organizations/{org}"), 409)
    assert project in error["message"]
    ok(admin.get(f"/organizations/{org}"))
    ok(admin.delete(f"/organizations/{org}/projects/{project}"))
    deleted = ok(admin.delete(f"/organizations/{org}"))["deleted"]
    assert f"organization/{org}" in deleted and "environment/production" in deleted
    error_of(admin.get(f"/organizations/{org}"), 404)
    error_of(admin.get(f"/organizations/{org}/environments"), 404)


# -- configuration and secrets --------------------------------------------------------------------------------------


def test_resources_still_referred_to_cannot_be_deleted(admin: httpx.Client, org: str, project: str) -> None:
    base = f"/organizations/{org}"
    err = error_of(admin.delete(f"{base}/environments/staging"), 409, code="in-use")
    assert "deploymentpipeline/default" in err["message"]
    err = error_of(admin.delete(f"{base}/deploymentpipelines/default"), 409, code="in-use")
    assert f"project/{project}" in err["message"]
    ok(admin.post(f"{base}/dataplanes", json=doc("DataPlane", "dp1")), 201)
    ok(admin.post(f"{base}/environments", json=doc("Environment", "qa", {"dataPlane": "dp1"})), 201)
    error_of(admin.delete(f"{base}/dataplanes/dp1"), 409, code="in-use")
    # once nothing refers to them, they go
    ok(admin.delete(f"{base}/environments/qa"))
    ok(admin.delete(f"{base}/dataplanes/dp1"))
    assert ok(admin.get(f"{base}/environments/staging"))["metadata"]["name"] == "staging"


def test_config_set_list_unset(admin: httpx.Client, org: str, project: str) -> None:
    ok(admin.post(f"/organizations/{org}/projects/{project}/components", json={"metadata": {"name": "api"}}), 201)
    base = f"/organizations/{org}/projects/{project}/components/api/config"

    first = ok(admin.put(f"{base}/LOG_LEVEL", json={"value": "debug"}))
    assert (first["key"], first["value"], first["secret"], first["changed"]) == ("LOG_LEVEL", "debug", False, True)
    assert first["version"] == 1 and first["environment"] is None and first["updatedBy"] == "admin"
    same = ok(admin.put(f"{base}/LOG_LEVEL", json={"value": "debug"}))
    assert (same["changed"], same["version"]) == (False, 1)
    assert ok(admin.put(f"{base}/LOG_LEVEL", json={"value": "info"}))["version"] == 2
    ok(admin.put(f"{base}/file:settings", json={"value": "a: 1"}))

    items = config_items(admin, org, project, "api")
    assert items["LOG_LEVEL"]["value"] == "info" and items["LOG_LEVEL"]["source"] == "config"
    assert items["file:settings"]["value"] == "a: 1"

    assert ok(admin.delete(f"{base}/LOG_LEVEL")) == {"deleted": "LOG_LEVEL"}
    assert "LOG_LEVEL" not in config_items(admin, org, project, "api")
    error_of(admin.delete(f"{base}/LOG_LEVEL"), 404, field="key")

    for bad in ["1ABC", "A-B", "file:", "file:Bad_Name", "K" * 256]:
        error_of(admin.put(f"{base}/{bad}", json={"value": "x"}), 422)
    error_of(admin.put(f"{base}/X", params={"env": "no-such-env"}, json={"value": "x"}), 404)
    error_of(admin.get(base, params={"env": "no-such-env"}), 404)
    error_of(admin.put(f"/organizations/{org}/projects/{project}/components/nope/config/X", json={"value": "x"}), 404)
    error_of(admin.put(f"{base}/X", json={"value": 5}), 422, field="value")
    error_of(admin.put(f"{base}/X", json={"value": "x", "colour": "red"}), 422, field="colour")


def test_config_precedence_per_environment(admin: httpx.Client, org: str, project: str) -> None:
    """Lowest first: spec value < spec per-environment value < config for all < config for the environment."""
    spec = {"configuration": {"env": [{"name": "MODE", "value": "spec", "environments": {"staging": "spec-staging"}}]}}
    ok(admin.post(f"/organizations/{org}/projects/{project}/components",
                  json={"metadata": {"name": "api"}, "spec": spec}), 201)
    base = f"/organizations/{org}/projects/{project}/components/api/config/MODE"

    def mode(env: str) -> tuple[str, str]:
        item = config_items(admin, org, project, "api", env)["MODE"]
        return item["value"], item["source"]

    assert mode("development") == ("spec", "spec")
    assert mode("staging") == ("spec-staging", "spec")

    ok(admin.put(base, json={"value": "all"}))
    assert mode("development") == ("all", "config")
    assert mode("staging") == ("all", "config")

    ok(admin.put(base, params={"env": "staging"}, json={"value": "config-staging"}))
    assert mode("staging") == ("config-staging", "config")
    assert mode("development") == ("all", "config")
    assert mode("production") == ("all", "config")

    everything = config_items(admin, org, project, "api")
    assert everything["MODE"]["value"] == "all" and everything["MODE@staging"]["value"] == "config-staging"

    ok(admin.delete(base, params={"env": "staging"}))
    assert mode("staging") == ("all", "config")
    ok(admin.delete(base))
    assert mode("staging") == ("spec-staging", "spec")
    assert mode("development") == ("spec", "spec")


def test_secrets_are_masked_and_never_stored_or_logged_in_plaintext(live_server: LiveServer, admin: httpx.Client,
                                                                     org: str, project: str) -> None:
    in_spec, in_spec_prod, in_file, via_api = (f"plaintext-{what}-{uuid.uuid4().hex}"
                                               for what in ("spec", "prod", "file", "api"))
    secrets = [in_spec, in_spec_prod, in_file, via_api]
    component = doc("Component", "api", {"configuration": {
        "env": [{"name": "DB_PASSWORD", "secret": True, "value": in_spec, "environments": {"production": in_spec_prod}},
                {"name": "PLAIN", "value": "visible"}],
        "files": [{"name": "cert", "mountPath": "/etc/tls/cert.pem", "secret": True, "content": in_file}],
    }}, project=project)
    responses = [admin.post("/apply", json={"organization": org, "documents": [component]})]
    assert responses[0].status_code == 200, responses[0].text
    base = f"/organizations/{org}/projects/{project}/components/api"
    responses.append(admin.put(f"{base}/config/API_KEY", params={"env": "staging"},
                               json={"value": via_api, "secret": True}))
    assert responses[-1].json()["value"] == MASK

    # the stored spec keeps the entries, not the values
    stored = ok(admin.get(base))
    db_password = stored["spec"]["configuration"]["env"][0]
    assert db_password["name"] == "DB_PASSWORD" and db_password["secret"] is True
    assert "value" not in db_password and "environments" not in db_password
    assert "content" not in stored["spec"]["configuration"]["files"][0]
    assert stored["spec"]["configuration"]["env"][1]["value"] == "visible"

    for env in [None, "development", "staging", "production"]:
        items = config_items(admin, org, project, "api", env)
        for key, item in items.items():
            if key.startswith(("DB_PASSWORD", "API_KEY", "file:cert")):
                assert item["secret"] is True and item["value"] == MASK, item
        assert items["PLAIN"]["value"] == "visible"
    assert config_items(admin, org, project, "api", "production")["DB_PASSWORD"]["environment"] == "production"

    # the same document again changes nothing (the secrets compare by their decrypted values)
    again = ok(admin.post("/apply", json={"organization": org, "documents": [component]}))
    assert again["results"][0]["action"] == "unchanged"

    responses += [admin.get(base), admin.get(f"{base}/config"), admin.get(f"{base}/config", params={"env": "staging"}),
                  admin.get(f"/organizations/{org}/components"), admin.get("/audit", params={"limit": 1000}),
                  admin.get(f"/organizations/{org}/projects/{project}/components", params={"limit": 1000})]
    db = db_bytes(live_server.data_dir)
    log = live_server.log()
    for secret in secrets:
        for r in responses:
            assert secret not in r.text, r.request.url
        assert secret.encode() not in db
        assert secret not in log


def test_rotating_the_master_key_keeps_secrets_readable(live_server: LiveServer, admin: httpx.Client, org: str,
                                                        project: str) -> None:
    ok(admin.post(f"/organizations/{org}/projects/{project}/components", json={"metadata": {"name": "api"}}), 201)
    base = f"/organizations/{org}/projects/{project}/components/api/config/TOKEN"
    value = f"rotate-me-{uuid.uuid4().hex}"
    ok(admin.put(base, json={"value": value, "secret": True}))
    before = stored_config_value(live_server.data_dir, org, "TOKEN")
    old_key_id = before.split(":")[1]

    rotated = ok(admin.post("/admin/rotate-key"))
    assert rotated["reencrypted"] >= 1
    assert rotated["keyId"] != old_key_id and old_key_id in rotated["retiredKeys"]

    after = stored_config_value(live_server.data_dir, org, "TOKEN")
    assert after != before
    assert after.split(":")[1] == rotated["keyId"]
    assert value.encode() not in db_bytes(live_server.data_dir)
    master = (live_server.data_dir / "master.key").read_text()
    assert rotated["keyId"] in master and old_key_id not in master

    # `config set` compares with the decrypted value: the same plaintext is no change, another one is
    same = ok(admin.put(base, json={"value": value, "secret": True}))
    assert same["changed"] is False and same["value"] == MASK
    assert ok(admin.put(base, json={"value": value + "-2", "secret": True}))["changed"] is True


def test_key_files_are_private(live_server: LiveServer) -> None:
    for name in ("master.key", "admin.token", "token.key"):
        mode = stat.S_IMODE((live_server.data_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"


def test_only_a_platform_administrator_rotates_the_key(live_server: LiveServer, admin: httpx.Client, org: str) -> None:
    user, client = new_user(admin, live_server, "keyadmin")
    ok(admin.post(f"/organizations/{org}/rolebindings", json={"user": user, "role": "admin"}), 201)
    error_of(client.post("/admin/rotate-key"), 403, code="forbidden")


# -- audit ----------------------------------------------------------------------------------------------------------


def test_audit_events_for_success_failure_and_denial(live_server: LiveServer, admin: httpx.Client, org: str) -> None:
    ok(admin.post(f"/organizations/{org}/projects", json={"metadata": {"name": "web"}}), 201)
    error_of(admin.post(f"/organizations/{org}/projects", json={"metadata": {"name": "web"}}), 409)
    viewer, client = new_user(admin, live_server, "auditee")
    ok(admin.post(f"/organizations/{org}/rolebindings", json={"user": viewer, "role": "viewer"}), 201)
    error_of(client.post(f"/organizations/{org}/projects", json={"metadata": {"name": "mine"}}), 403)
    error_of(client.delete(f"/organizations/{org}/projects/web"), 403)

    events = audit_events(admin, organization=org)
    assert all(set(e) >= {"id", "at", "actor", "action", "kind", "organization", "name", "outcome", "message"}
               for e in events)
    summary = [(e["actor"], e["action"], e["kind"], e["name"], e["outcome"]) for e in events]
    assert ("admin", "create", "Project", "web", "succeeded") in summary
    assert ("admin", "create", "Project", "web", "failed") in summary
    assert (viewer, "create", "Project", "mine", "denied") in summary
    assert (viewer, "delete", "Project", "web", "denied") in summary
    denied = next(e for e in events if e["actor"] == viewer and e["action"] == "create")
    assert "projects:create" in denied["message"]
    # newest first
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    # the viewer sees its own events, but not the organization's (audit:read is an admin's)
    own = audit_events(client)
    assert own and all(e["actor"] == viewer for e in own)
    error_of(admin.get("/audit", params={"before": 2**31}), 422, field="query.before")


# -- component imports ----------------------------------------------------------------------------------------------

COMPONENT_YAML = """\
schemaVersion: 1.2
endpoints:
  - name: web
    service:
      basePath: /api
      port: {port}
    type: REST
    networkVisibilities: [Public]
"""


def test_component_import_with_inline_files(admin: httpx.Client, org: str, project: str) -> None:
    base = f"/organizations/{org}/projects/{project}"
    body = {"name": "imported", "source": {"repository": "https://git.example.invalid/shop.git", "branch": "main"},
            "files": {".choreo/component.yaml": COMPONENT_YAML.format(port=8080)}}
    dry = ok(admin.post(f"{base}/component-imports", json={**body, "dryRun": True}), 201)
    assert dry["dryRun"] is True
    error_of(admin.get(f"{base}/components/imported"), 404)

    result = ok(admin.post(f"{base}/component-imports", json=body), 201)
    assert result["descriptor"] == ".choreo/component.yaml"
    component = ok(admin.get(f"{base}/components/imported"))
    assert component == result["component"]
    [endpoint] = component["spec"]["endpoints"]
    assert (endpoint["name"], endpoint["port"], endpoint["basePath"]) == ("web", 8080, "/api")
    assert component["spec"]["source"]["repository"] == "https://git.example.invalid/shop.git"
    assert component["spec"]["source"]["branch"] == "main"

    error_of(admin.post(f"{base}/component-imports", json=body), 409, field="metadata.name")
    bad = {**body, "name": "bad", "files": {".choreo/component.yaml": "endpoints: [\n  - port: : :"}}
    error_of(admin.post(f"{base}/component-imports", json=bad), 422)
    error_of(admin.post(f"{base}/component-imports", json={**body, "name": "Bad_Name"}), 422)
    error_of(admin.post(f"{base}/component-imports", json={**body, "name": "s", "spec": {"source": 5}}), 422,
             field="spec.source")
    error_of(admin.post(f"/organizations/{org}/projects/nope/component-imports", json=body), 404)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(repo), *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository with ``svc/.choreo/component.yaml``: port 8080 on ``main``, 9090 on ``feature``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet", "-b", "main")
    descriptor = repo / "svc" / ".choreo" / "component.yaml"
    descriptor.parent.mkdir(parents=True)
    descriptor.write_text(COMPONENT_YAML.format(port=8080))
    (repo / "README.md").write_text("shop\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "first")
    main_sha = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "--quiet", "-b", "feature")
    descriptor.write_text(COMPONENT_YAML.format(port=9090))
    _git(repo, "commit", "--quiet", "-am", "feature port")
    _git(repo, "checkout", "--quiet", "main")
    return repo, main_sha


def test_component_import_from_a_git_repository(admin: httpx.Client, org: str, project: str,
                                                git_repo: tuple[Path, str]) -> None:
    repo, main_sha = git_repo
    base = f"/organizations/{org}/projects/{project}"

    def port_of(name: str, **source: str) -> int:
        body = {"name": name, "source": {"repository": str(repo), **source}}
        result = ok(admin.post(f"{base}/component-imports", json=body), 201)
        assert result["component"]["spec"]["source"]["repository"] == str(repo)
        return result["component"]["spec"]["endpoints"][0]["port"]

    assert port_of("from-feature", branch="feature", path="svc") == 9090
    assert port_of("from-main", branch="main", path="svc") == 8080
    assert port_of("from-ref", ref=main_sha, path="svc") == 8080
    assert port_of("from-worktree", path="svc") == 8080
    component = ok(admin.get(f"{base}/components/from-feature"))
    assert component["spec"]["source"]["branch"] == "feature" and component["spec"]["source"]["path"] == "svc"

    # the repository root has no descriptor: a component without endpoints, and no descriptor reported
    bare = ok(admin.post(f"{base}/component-imports", json={"name": "root", "source": {"repository": str(repo),
                                                                                        "branch": "main"}}), 201)
    assert bare["descriptor"] is None and bare["component"]["spec"]["endpoints"] == []

    def refused(field: str, **source: str) -> None:
        body = {"name": unique("bad"), "source": {"repository": str(repo), **source}}
        error_of(admin.post(f"{base}/component-imports", json=body), 422, field=field)

    refused("source.repository", branch="no-such-branch", path="svc")
    refused("source.path", branch="main", path="no/such/dir")
    refused("source.path", branch="main", path="../..")
    refused("source.path", path="../../../..")
    refused("source.ref", ref="--upload-pack=touch /tmp/pwned")
    refused("source.branch", branch="-b")
    refused("source.repository", repository=str(repo / "missing"))
    refused("source.repository", repository="~no-such-user-here/x")
    refused("source.repository", repository="/" + "x" * 400)


# -- malformed input ------------------------------------------------------------------------------------------------

MALFORMED = [
    # method, path, request kwargs, status, field
    ("POST", "/organizations/default/projects", {"content": b"{not json", "headers": {"content-type":
                                                                                     "application/json"}}, 422, "body"),
    ("POST", "/apply", {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}}, 400, None),
    ("POST", "/organizations/default/projects", {"json": [1, 2]}, 422, "body"),
    ("POST", "/organizations/default/projects", {"json": "project"}, 422, "body"),
    ("POST", "/organizations/default/projects", {"json": {"metadata": {"name": 5}}}, 422, "metadata.name"),
    ("POST", "/organizations/default/projects", {"json": {"metadata": "p"}}, 422, "metadata"),
    ("POST", "/organizations/default/projects", {"json": {"metadata": {"name": "p"}, "spec": []}}, 422, "spec"),
    ("POST", "/organizations/default/projects", {"json": {"metadata": {"name": "p"}, "extra": 1}}, 422, "extra"),
    ("POST", "/organizations/default/projects", {"json": {"metadata": {"name": "p"}, "spec": {"colour": 1}}}, 422,
     "spec.colour"),
    ("POST", "/organizations/default/projects", {"params": {"dryRun": "perhaps"}, "json": {}}, 422, "query.dryRun"),
    ("GET", "/organizations/default/projects", {"params": {"limit": 10**30}}, 422, "query.limit"),
    ("GET", "/organizations/default/projects", {"params": {"limit": 0}}, 422, "query.limit"),
    ("GET", "/organizations/default/projects", {"params": {"limit": "ten"}}, 422, "query.limit"),
    ("GET", "/organizations/default/projects", {"params": {"limit": 1001}}, 422, "query.limit"),
    ("GET", "/audit", {"params": {"limit": 10**12}}, 422, "query.limit"),
    ("GET", "/audit", {"params": {"before": -1}}, 422, "query.before"),
    ("POST", "/apply", {"json": {}}, 422, "documents"),
    ("POST", "/apply", {"json": {"documents": []}}, 422, "documents"),
    ("POST", "/apply", {"json": {"documents": "all"}}, 422, "documents"),
    ("POST", "/apply", {"json": {"documents": [5]}}, 422, "documents[0]"),
    ("POST", "/apply", {"json": {"documents": [{}], "extra": 1}}, 422, "extra"),
    ("POST", "/apply", {"json": {"organization": 5, "documents": [{}]}}, 422, "organization"),
    ("POST", "/apply", {"json": {"organization": "o" * 100, "documents": [{}]}}, 422, "organization"),
    ("POST", "/apply", {"json": {"documents": [{"apiVersion": "v0", "kind": "Project", "metadata": {"name": "p"}}]}},
     422, "documents[0].apiVersion"),
    ("POST", "/users", {"json": {"name": "x" * 64}}, 422, "name"),
    ("POST", "/users", {"json": {"name": "Not A Name"}}, 422, "name"),
    ("POST", "/users/admin/tokens", {"json": {"expiresInDays": 10**9}}, 422, "expiresInDays"),
    # text no database can store: NUL characters and unpaired surrogates, wherever they are
    ("GET", "/organizations/de%00fault/projects", {}, 422, "path"),
    ("GET", "/audit", {"params": {"actor": "a\x00b"}}, 422, "query"),
    ("POST", "/organizations/default/projects", {"json": {"metadata": {"name": "p", "annotations": {"a": "\x00"}}}},
     422, "body"),
    ("POST", "/organizations/default/projects", {"content": b'{"metadata": {"name": "p", "annotations": '
                                                            b'{"a": "\\ud800"}}}',
                                                 "headers": {"content-type": "application/json"}}, 422, "body"),
    # path parameters are bounded like the columns behind them
    ("GET", "/organizations/" + "o" * 64 + "/projects", {}, 422, "path.org"),
    ("DELETE", "/organizations/default/projects/" + "p" * 100, {}, 422, "path.name"),
    ("DELETE", "/tokens/" + "t" * 100, {}, 422, "path.token_id"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), MALFORMED,
                         ids=[f"{i}-{m[0]}" for i, m in enumerate(MALFORMED)])
def test_malformed_requests_get_a_4xx_json_error(admin: httpx.Client, method: str, path: str, kwargs: dict[str, Any],
                                                 status: int, field: str | None) -> None:
    error_of(admin.request(method, path, **kwargs), status, field=field)


def test_a_body_over_the_limit_gets_413(admin: httpx.Client) -> None:
    body = b'{"documents": ["' + b"x" * (17 * 2**20) + b'"]}'
    r = admin.post("/apply", content=body, headers={"Content-Type": "application/json"})
    error_of(r, 413, code="too-large", field="body")


def test_a_good_name_after_bad_input_still_works(admin: httpx.Client) -> None:
    """The refusals above leave the server serving (no dropped connections, nothing half-stored)."""
    assert ok(admin.get("/organizations/default"))["metadata"]["name"] == "default"


# -- the published contract -----------------------------------------------------------------------------------------


def conforms(openapi: dict[str, Any], method: str, template: str, r: httpx.Response) -> Any:
    """Validate a response against the schema ``/openapi.json`` publishes for it; return its body.

    Documents are returned as stored, not re-serialised through a model: this and the schemathesis run are what
    keep the published schemas honest. Refs (``#/components/schemas/...``) resolve against the whole document.
    """
    responses = openapi["paths"]["/api/v1" + template][method.lower()]["responses"]
    assert str(r.status_code) in responses, f"{method} {template}: {r.status_code} is not documented: {r.text}"
    schema = responses[str(r.status_code)]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.Draft202012Validator({**schema, "components": openapi["components"]},
                                                   validate_formats=True)
    body = r.json()
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, f"{method} {template} ({r.status_code}) does not match its schema: {errors}\n{body}"
    return body


def resolve(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_operation_documents_its_success_response(live_server: LiveServer) -> None:
    openapi = ok(httpx.get(live_server.url + "/openapi.json"))
    operations = [(path, method, op) for path, ops in openapi["paths"].items() for method, op in ops.items()]
    assert len(operations) > 40
    for path, method, op in operations:
        success = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert success, f"{method} {path}: no 2xx response"
        for code, response in success.items():
            if "application/json" not in response["content"]:  # a download: bytes, described as such
                assert response["content"]["application/gzip"]["schema"]["format"] == "binary", (method, path)
                continue
            schema = response["content"]["application/json"]["schema"]
            resolved = resolve(openapi, schema)
            assert resolved.get("properties"), f"{method} {path} {code}: no response schema ({schema})"
            assert resolved.get("additionalProperties") is not True or len(resolved["properties"]) > 0
    # the token's secret is in the create response only
    tokens = openapi["paths"]["/api/v1/users/{user}/tokens"]
    assert "token" in resolve(openapi, tokens["post"]["responses"]["201"]["content"]["application/json"]["schema"])[
        "properties"]
    assert "token" not in resolve(openapi, resolve(openapi, tokens["get"]["responses"]["200"]["content"][
        "application/json"]["schema"])["properties"]["items"]["items"])["properties"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_resource_bodies_are_documented_per_kind(live_server: LiveServer, kind: str) -> None:
    openapi = ok(httpx.get(live_server.url + "/openapi.json"))
    info = KINDS[kind]
    spec_fields = {f.alias or name for name, f in info.spec.model_fields.items()}
    collection = {"cluster": f"/{info.plural}", "organization": f"/organizations/{{org}}/{info.plural}",
                  "project": f"/organizations/{{org}}/projects/{{project}}/{info.plural}"}[info.scope]
    for path, method in [(collection, "post"), (collection + "/{name}", "put")]:
        body = openapi["paths"]["/api/v1" + path][method]["requestBody"]
        assert body["required"] is True
        schema = body["content"]["application/json"]["schema"]
        assert schema["$ref"] == f"#/components/schemas/{kind}Body", schema
        document = resolve(openapi, schema)
        assert document["required"] == ["metadata"]  # apiVersion and kind default to the path's
        assert document["properties"]["kind"]["const"] == kind
        [spec] = [s for s in document["properties"]["spec"]["anyOf"] if "$ref" in s]
        assert set(resolve(openapi, spec)["properties"]) == spec_fields
        assert resolve(openapi, document["properties"]["metadata"])["properties"]["name"]["type"] == "string"
    if kind == "Component":
        assert "endpoints" in spec_fields
        endpoint = openapi["components"]["schemas"]["Endpoint"]
        assert {"name", "port", "basePath", "visibility"} <= set(endpoint["properties"])
        assert set(openapi["components"]["schemas"]["ConnectionEnv"]["properties"]) == {"from", "to"}
    # /apply takes a list of complete documents of any kind, told apart by kind
    apply = resolve(openapi, openapi["paths"]["/api/v1/apply"]["post"]["requestBody"]["content"]["application/json"][
        "schema"])
    documents = apply["properties"]["documents"]["items"]
    assert documents["discriminator"]["mapping"][kind] == f"#/components/schemas/{kind}Document"
    assert set(resolve(openapi, {"$ref": documents["discriminator"]["mapping"][kind]})["required"]) == {
        "apiVersion", "kind", "metadata"}


def test_real_responses_match_the_published_schemas(live_server: LiveServer, admin: httpx.Client, org: str,
                                                     project: str) -> None:
    openapi = ok(httpx.get(live_server.url + "/openapi.json"))
    collection = "/organizations/{org}/projects/{project}/components"
    base = f"/organizations/{org}/projects/{project}/components"
    spec = {"type": "service", "displayName": "API", "source": {"repository": "https://git.example.invalid/a.git",
                                                                "branch": "main"},
            "endpoints": [{"name": "web", "port": 8080, "basePath": "/api", "visibility": ["Project", "Public"]}],
            "dependencies": [{"name": "db", "url": "postgres://db.example.invalid:5432/x",
                              "env": [{"from": "ServiceURL", "to": "DATABASE_URL"}]}],
            "configuration": {"env": [{"name": "MODE", "value": "a", "environments": {"production": "b"}},
                                      {"name": "TOKEN", "value": "s3cret", "secret": True},
                                      {"name": "EMPTY"}],
                              "files": [{"name": "conf", "mountPath": "/etc/app.conf", "content": "x=1"}]},
            "scaling": {"minReplicas": 1, "maxReplicas": 3}, "resources": {"cpu": "500m", "memory": "256Mi"}}
    body = {"metadata": {"name": "api", "labels": {"team": "shop"}, "annotations": {"note": "n"}}, "spec": spec}
    created = conforms(openapi, "POST", collection, admin.post(base, json=body))
    assert created["spec"]["dependencies"][0]["env"] == [{"from": "ServiceURL", "to": "DATABASE_URL"}]
    assert "value" not in created["spec"]["configuration"]["env"][1]  # the secret went to encrypted storage
    got = conforms(openapi, "GET", collection + "/{name}", admin.get(f"{base}/api"))
    assert got == created
    task = {"metadata": {"name": "nightly"}, "spec": {"type": "scheduled-task", "schedule": {"cron": "0 3 * * *"}}}
    conforms(openapi, "PUT", collection + "/{name}", admin.put(f"{base}/nightly", json=task))
    conforms(openapi, "PUT", collection + "/{name}", admin.put(f"{base}/nightly", json=task))
    listed = conforms(openapi, "GET", collection, admin.get(base, params={"limit": 1}))
    assert listed["metadata"]["continue"]
    conforms(openapi, "GET", "/organizations/{org}/components", admin.get(f"/organizations/{org}/components"))
    for template, path in [("/organizations", "/organizations"), ("/organizations/{name}", f"/organizations/{org}"),
                           ("/organizations/{org}/environments", f"/organizations/{org}/environments"),
                           ("/organizations/{org}/deploymentpipelines", f"/organizations/{org}/deploymentpipelines"),
                           ("/organizations/{org}/dataplanes", f"/organizations/{org}/dataplanes"),
                           ("/organizations/{org}/projects/{name}", f"/organizations/{org}/projects/{project}")]:
        conforms(openapi, "GET", template, admin.get(path))
    dataplane = {"metadata": {"name": "k8s"}, "spec": {"type": "kubernetes", "kubernetes": {"context": "kind"}}}
    conforms(openapi, "POST", "/organizations/{org}/dataplanes",
             admin.post(f"/organizations/{org}/dataplanes", json=dataplane))
    applied = conforms(openapi, "POST", "/apply", admin.post("/apply", json={"organization": org, "documents": [
        doc("Environment", "qa", {"dataPlane": "k8s"}), doc("Component", "api", spec, project=project)]}))
    assert [r["action"] for r in applied["results"]] == ["created", "configured"]  # labels dropped

    imported = {"name": "imported", "source": {"repository": "https://git.example.invalid/shop.git"},
                "files": {".choreo/component.yaml": COMPONENT_YAML.format(port=8080) + "unknownKey: 1\n"}}
    result = conforms(openapi, "POST", "/organizations/{org}/projects/{project}/component-imports",
                      admin.post(f"/organizations/{org}/projects/{project}/component-imports", json=imported))
    assert result["warnings"]

    config = "/organizations/{org}/projects/{project}/components/{component}/config"
    conforms(openapi, "PUT", config + "/{key}", admin.put(f"{base}/api/config/MODE", json={"value": "c"},
                                                          params={"env": "staging"}))
    items = conforms(openapi, "GET", config, admin.get(f"{base}/api/config"))["items"]
    assert any({"updatedAt", "updatedBy"} <= set(i) for i in items)  # a value set with the config routes
    assert any("updatedAt" not in i for i in items)  # values from the spec have no update stamp
    conforms(openapi, "DELETE", config + "/{key}", admin.delete(f"{base}/api/config/MODE", params={"env": "staging"}))
    conforms(openapi, "DELETE", collection + "/{name}", admin.delete(f"{base}/nightly"))
    conforms(openapi, "GET", "/audit", admin.get("/audit", params={"limit": 2}))
    conforms(openapi, "GET", "/whoami", admin.get("/whoami"))


# -- PostgreSQL -----------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_round_trip_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    server = start_server(tmp_path / "pg", database_url=postgres_url)
    try:
        admin = server.client()
        assert ok(admin.get("/version"))["database"] == "postgresql"
        secret = f"pg-secret-{uuid.uuid4().hex}"
        docs = [doc("Project", "web"), doc("Component", "api", {"configuration": {"env": [
            {"name": "PASSWORD", "secret": True, "value": secret}, {"name": "MODE", "value": "spec"}]}},
            project="web")]
        results = ok(admin.post("/apply", json={"organization": "default", "documents": docs}))["results"]
        assert [r["action"] for r in results] == ["created", "created"]
        again = ok(admin.post("/apply", json={"organization": "default", "documents": docs}))["results"]
        assert [r["action"] for r in again] == ["unchanged", "unchanged"]
        component = ok(admin.get("/organizations/default/projects/web/components/api"))
        assert secret not in json.dumps(component)

        base = "/organizations/default/projects/web/components/api/config"
        ok(admin.put(f"{base}/MODE", params={"env": "production"}, json={"value": "prod"}))
        items = config_items(admin, "default", "web", "api", "production")
        assert items["MODE"]["value"] == "prod" and items["PASSWORD"]["value"] == MASK
        assert config_items(admin, "default", "web", "api", "staging")["MODE"]["value"] == "spec"
        assert ok(admin.put(f"{base}/PASSWORD", json={"value": secret, "secret": True}))["changed"] is False
        rotated = ok(admin.post("/admin/rotate-key"))
        assert rotated["reencrypted"] >= 1
        assert ok(admin.put(f"{base}/PASSWORD", json={"value": secret, "secret": True}))["changed"] is False

        # what PostgreSQL itself would refuse is a clean 4xx
        error_of(admin.put(f"{base}/MODE", json={"value": "a\x00b"}), 422, field="body")
        error_of(admin.delete("/organizations/" + "o" * 80 + "/projects/x"), 422, field="path.org")
        error_of(admin.put(f"{base}/{'K' * 300}", json={"value": "v"}), 422, field="path.key")
        error_of(admin.get("/audit", params={"before": 2**40}), 422, field="query.before")
        error_of(admin.post("/apply", json={"organization": "x" * 100, "documents": [docs[0]]}), 422,
                 field="organization")

        # concurrent creates of one name: one 201, the rest 409, never a 500
        statuses: list[int] = []

        def create() -> None:
            with httpx.Client(base_url=server.api, headers={"Authorization": f"Bearer {server.admin_token}"},
                              timeout=30) as c:
                statuses.append(c.post("/organizations/default/projects", json={"metadata": {"name": "race"}})
                                .status_code)

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [201] + [409] * 7, statuses
        assert secret not in server.log()
    finally:
        server.stop()
