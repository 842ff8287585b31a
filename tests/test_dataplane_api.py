"""The data-plane agent's API (docs/dataplane.md), driven by a fake agent over plain HTTP against a real control
plane: registration, the desired state (connections, sealed secrets, revisions, long-poll), status reports,
log lines and task runs. A few rules that need a clock or a bound are checked on the service functions.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from buildkit import BuildServer
from cellplane.contract.telemetry import LogLineReport
from cellplane.controlplane import dataplanes, deployments, taskruns
from cellplane.controlplane.keyring import KeyRing
from cellplane.controlplane.telemetry import logs
from cellplane.sealing import open_sealed, public_key_text
from cellplane.store import Store
from cellplane.store.tables import BuildRow, DeploymentRow, ResourceRow, WorkloadLogRow
from fakeagentkit import Agent, build, gateways
from liveserver import LiveServer, doc, start_server

ORG = "/organizations/default"
SECRET = "Sup3r-s3cret-db-password-xyzzy"
CERT = "-----BEGIN SECRET CERT-----qwertyuiop-----END-----"


def service(visibility: list[str], **spec: Any) -> dict[str, Any]:
    return {"type": "service", "endpoints": [{"name": "api", "port": 8080, "visibility": visibility}], **spec}


def deploy(c: httpx.Client, project: str, name: str, env: str = "development") -> dict[str, Any]:
    r = c.post(f"{ORG}/projects/{project}/components/{name}/deployments", json={"environment": env})
    assert r.status_code in (200, 201), r.text
    return r.json()


FRONT = service(["Public"], dependencies=[
    {"name": "cart", "component": "cart"},
    {"name": "orders", "component": "orders", "project": "sales", "endpoint": "api"},
    {"name": "pub", "component": "pub", "project": "sales"},
    {"name": "weather", "url": "https://api.example.com/v2", "env": [{"from": "ServiceURL", "to": "WEATHER_URL"}]},
], configuration={
    "env": [{"name": "GREETING", "value": "hello", "environments": {"staging": "hi staging"}},
            {"name": "DB_PASSWORD", "value": SECRET, "secret": True}],
    "files": [{"name": "conf", "mountPath": "/app/conf.json", "content": '{"mode": "test"}'},
              {"name": "cert", "mountPath": "/app/cert.pem", "content": CERT, "secret": True}]})


def set_up_cells(c: httpx.Client) -> None:
    """sales: orders (Organization), ledger (Project), pub (Public); shop: cart (Project), front (Public, with
    connections to all of them, plain and secret configuration), broken (depends on sales' Project-only ledger)."""
    build(c, "sales", "orders", service(["Organization"]))
    build(c, "sales", "ledger", service(["Project"]))
    build(c, "sales", "pub", service(["Public"]))
    build(c, "shop", "cart", service(["Project"]))
    build(c, "shop", "front", FRONT)
    build(c, "shop", "broken", service(["Public"], dependencies=[
        {"name": "ledger", "component": "ledger", "project": "sales"}]))
    for project, name in (("sales", "orders"), ("sales", "ledger"), ("sales", "pub"), ("shop", "cart"),
                          ("shop", "front"), ("shop", "broken")):
        deploy(c, project, name)


@dataclass
class World:
    server: LiveServer
    client: httpx.Client
    agent: Agent


@pytest.fixture(scope="module")
def world(build_server: BuildServer) -> World:
    c = build_server.client
    agent = Agent(c)
    answer = agent.register()
    assert answer == {"dataPlane": "local", "environments": ["development", "production", "staging"]}
    set_up_cells(c)
    return World(build_server.server, c, agent)


def by_name(items: list[dict[str, Any]], name: str, key: str = "name") -> dict[str, Any]:
    return next(i for i in items if i[key] == name)


def deployment_of(desired: dict[str, Any], project: str, name: str, env: str = "development") -> dict[str, Any]:
    return next(d for d in desired["deployments"]
                if (d["project"], d["component"], d["environment"]) == (project, name, env))


def db_bytes(server: LiveServer) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(server.data_dir.glob("cellplane.db*")))


# -- registration ---------------------------------------------------------------------------------------------------


def test_register_creates_the_data_plane_and_binds_unbound_environments(live_server: LiveServer) -> None:
    c = live_server.client()
    r = c.post("/apply", json={"documents": [
        doc("Organization", "acme"), doc("DataPlane", "other", organization="acme"),
        doc("Environment", "edge", {"dataPlane": "other"}, organization="acme")]})
    assert r.status_code == 200, r.text
    before = c.get("/organizations/acme/environments/development").json()["metadata"]["generation"]
    agent = Agent(c, org="acme", name="laptop")
    assert agent.register() == {"dataPlane": "laptop", "environments": ["development", "production", "staging"]}
    plane = c.get("/organizations/acme/dataplanes/laptop").json()
    assert plane["spec"] == {"type": "local"}
    info = plane["status"]["agent"]
    assert (info["agentId"], info["hostname"], info["version"]) == ("agent-1", "testhost", "0.0-test")
    assert info["publicKey"] == public_key_text(agent.key) and info["lastSeen"]
    env = c.get("/organizations/acme/environments/development").json()
    assert env["spec"]["dataPlane"] == "laptop" and env["metadata"]["generation"] == before + 1
    assert c.get("/organizations/acme/environments/edge").json()["spec"]["dataPlane"] == "other"
    # registering again changes nothing bound; heartbeats touch the status only
    assert agent.register(bind=False)["environments"] == ["development", "production", "staging"]
    meta = c.get("/organizations/acme/dataplanes/laptop").json()["metadata"]
    assert agent.status([], gateways("development")).json() == {"deployments": 0}
    after = c.get("/organizations/acme/dataplanes/laptop").json()
    assert after["metadata"] == meta
    assert after["status"]["gateways"]["development"]["external"] == "http://127.0.0.1:8800"
    assert after["status"]["agent"]["lastSeen"] >= info["lastSeen"]
    events = c.get("/audit", params={"organization": "acme", "limit": 5}).json()["items"]
    assert events[0]["action"] == "dataplane.register" and events[0]["outcome"] == "succeeded"
    # the desired state of a data plane without deployments
    desired = agent.desired()
    assert desired["deployments"] == [] and desired["grants"] == [] and desired["runs"] == []
    assert desired["environments"] == [{"name": "development", "production": False},
                                       {"name": "production", "production": True},
                                       {"name": "staging", "production": False}]


def test_registration_and_reports_are_validated(live_server: LiveServer) -> None:
    c = live_server.client()
    base = "/organizations/default/dataplanes/local"
    r = c.put(base + "/agent", json={"agentId": "x", "publicKey": "not-a-key"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "publicKey", r.text
    r = c.put(base + "/agent", json={"publicKey": public_key_text(X25519PrivateKey.generate())})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "agentId", r.text
    r = c.put("/organizations/default/dataplanes/Bad_Name/agent",
              json={"agentId": "x", "publicKey": public_key_text(X25519PrivateKey.generate())})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "path.name", r.text
    r = c.put("/organizations/nope/dataplanes/local/agent",
              json={"agentId": "x", "publicKey": public_key_text(X25519PrivateKey.generate())})
    assert r.status_code == 404 and r.json()["error"]["details"][0]["field"] == "path.organization", r.text
    assert c.get("/organizations/default/dataplanes/absent/desired-state").status_code == 404
    Agent(c).register(bind=False)
    r = c.put(base + "/status", json={"agentId": "a", "deployments": [{"id": "dep_x", "state": "bogus"}]})
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == ["deployments[0].state"]
    r = c.put(base + "/status", json={"agentId": "a", "gateways": {"development": {"external": "ftp://x"}}})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "gateways.development.external"
    r = c.post(base + "/logs", json={"lines": [{"environment": "development", "project": "p", "component": "c",
                                                "stream": "stdout", "at": "yesterday", "line": "x"}]})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "lines[0].at", r.text
    r = c.post(base + "/logs", json={"lines": [{"environment": "development", "project": "p", "component": "c",
                                                "stream": "stdout", "at": "2026-01-01T00:00:00Z", "line": "x"}] * 5001})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "lines", r.text
    r = c.post(base + "/task-runs", json={"runs": [{"id": "run_1"}]})
    assert r.status_code == 422 and "runs[0].id" in [d["field"] for d in r.json()["error"]["details"]]
    # lines and runs of nothing known are dropped, not refused
    r = c.post(base + "/logs", json={"lines": [{"environment": "development", "project": "p", "component": "c",
                                                "stream": "stdout", "at": "2026-01-01T00:00:00Z", "line": "x"}]})
    assert r.json() == {"accepted": 0}
    r = c.post(base + "/task-runs", json={"runs": [{
        "id": "run_" + "0" * 16, "deployment": "dep_nothing", "environment": "development", "project": "p",
        "component": "c", "trigger": "schedule", "state": "running"}]})
    assert r.json() == {"recorded": 0}


def test_the_agent_calls_need_dataplanes_update(live_server: LiveServer) -> None:
    admin = live_server.client()
    assert admin.post("/users", json={"name": "dev-agent"}).status_code == 201
    token = admin.post("/users/dev-agent/tokens", json={"name": "t"}).json()["token"]
    r = admin.post("/organizations/default/rolebindings", json={"user": "dev-agent", "role": "developer"})
    assert r.status_code == 201, r.text
    dev = live_server.client(token)
    key = public_key_text(X25519PrivateKey.generate())
    for r in (dev.put("/organizations/default/dataplanes/local/agent", json={"agentId": "x", "publicKey": key}),
              dev.get("/organizations/default/dataplanes/local/desired-state"),
              dev.put("/organizations/default/dataplanes/local/status", json={"agentId": "x"}),
              dev.post("/organizations/default/dataplanes/local/logs", json={"lines": []}),
              dev.post("/organizations/default/dataplanes/local/task-runs", json={"runs": []})):
        assert r.status_code == 403, r.text
        assert "dataplanes:update" in r.json()["error"]["message"]


# -- desired state --------------------------------------------------------------------------------------------------


def test_desired_state_resolves_connections_and_seals_secrets(world: World) -> None:
    response = world.agent.desired_response()
    desired = response.json()
    assert desired["organization"] == "default" and desired["dataPlane"] == "local"
    assert len(desired["revision"]) == 64
    front = deployment_of(desired, "shop", "front")
    assert front["type"] == "service" and front["version"] == "v1" and front["release"].startswith("r")
    assert len(front["release"]) == 18 and front["release"][13] == "-"  # the release, and its connections
    assert front["artifact"] == {"digest": front["artifact"]["digest"]}  # the agent fetches it from .../artifacts
    assert front["endpoints"] == [{"name": "api", "port": 8080, "type": "REST", "basePath": "/",
                                   "visibility": ["Public"]}]
    assert front["replicas"] == 1 and front["blocked"] is None and front["schedule"] is None

    # configuration: plain values as they are, secrets sealed to the agent's key and bound to their place
    env = {e["name"]: e for e in front["env"]}
    assert env["GREETING"] == {"name": "GREETING", "value": "hello"}
    assert set(env["DB_PASSWORD"]) == {"name", "sealed"}
    assert world.agent.open(env["DB_PASSWORD"]["sealed"], "development/shop/front/DB_PASSWORD") == SECRET
    files = {f["name"]: f for f in front["files"]}
    assert files["conf"] == {"name": "conf", "mountPath": "/app/conf.json", "content": '{"mode": "test"}'}
    assert world.agent.open(files["cert"]["sealed"], "development/shop/front/cert") == CERT
    with pytest.raises(Exception, match="sealed value"):  # bound to its place: not openable as another value
        world.agent.open(env["DB_PASSWORD"]["sealed"], "development/shop/front/GREETING")

    # connections: same project via the cell, Organization via internal (credentials), Public via external, url
    conns = {c["name"]: c for c in front["connections"]}
    assert conns["cart"] == {"name": "cart", "state": "resolved", "via": "cell",
                             "target": {"project": "shop", "component": "cart", "endpoint": "api", "basePath": "/",
                                        "version": "v1"},
                             "env": [{"from": "ServiceURL", "to": "CHOREO_CART_SERVICEURL"}]}
    orders = conns["orders"]
    assert (orders["state"], orders["via"]) == ("resolved", "internal")
    assert orders["target"] == {"project": "sales", "component": "orders", "endpoint": "api", "basePath": "/",
                                "version": "v1"}
    assert orders["env"] == [{"from": "ServiceURL", "to": "CHOREO_ORDERS_SERVICEURL"},
                             {"from": "ConsumerKey", "to": "CHOREO_ORDERS_CONSUMERKEY"},
                             {"from": "ConsumerSecret", "to": "CHOREO_ORDERS_CONSUMERSECRET"},
                             {"from": "TokenURL", "to": "CHOREO_ORDERS_TOKENURL"},
                             {"from": "APIKey", "to": "CHOREO_ORDERS_CHOREOAPIKEY"}]
    key = orders["credentials"]["consumerKey"]
    assert key.startswith("ck_") and len(key) == 19
    secret = world.agent.open(orders["credentials"]["consumerSecret"]["sealed"],
                              "development/shop/front/connection:orders")
    assert (conns["pub"]["via"], conns["pub"]["target"]["endpoint"]) == ("external", "api")  # the first endpoint
    assert "credentials" not in conns["pub"]
    assert conns["weather"] == {"name": "weather", "state": "resolved", "via": "url",
                                "url": "https://api.example.com/v2",
                                "env": [{"from": "ServiceURL", "to": "WEATHER_URL"}]}
    assert desired["grants"] == [{"consumerKey": key, "secretDigest": hashlib.sha256(secret.encode()).hexdigest(),
                                  "environment": "development", "project": "shop", "component": "front",
                                  "target": {"project": "sales", "component": "orders", "endpoint": "api"}}]

    # a Project-only endpoint of another project does not resolve: the deployment is blocked
    broken = deployment_of(desired, "shop", "broken")
    assert broken["blocked"] == "dependency 'ledger': endpoint sales/ledger/api is visible to project sales only"
    assert broken["connections"][0]["state"] == "unresolved"
    # sales' own connections (none) and the others are not blocked
    assert deployment_of(desired, "sales", "orders")["blocked"] is None

    # no plaintext anywhere but inside the seals
    for plaintext in (SECRET, CERT, secret):
        assert plaintext not in response.text
        assert plaintext.encode() not in db_bytes(world.server)
        assert plaintext not in world.server.log()


def test_revision_is_stable_and_credentials_too(world: World) -> None:
    first = world.agent.desired()
    second = world.agent.desired()
    assert first["revision"] == second["revision"]
    a, b = deployment_of(first, "shop", "front"), deployment_of(second, "shop", "front")
    assert a["release"] == b["release"]
    sealed_a = by_name(a["env"], "DB_PASSWORD")["sealed"]
    sealed_b = by_name(b["env"], "DB_PASSWORD")["sealed"]
    assert sealed_a != sealed_b  # sealing is randomized ...
    assert world.agent.open(sealed_a, "development/shop/front/DB_PASSWORD") == \
        world.agent.open(sealed_b, "development/shop/front/DB_PASSWORD")  # ... the value is not
    assert first["grants"] == second["grants"]
    # a long poll on the current revision waits, then answers with the same revision
    t = time.monotonic()
    same = world.agent.desired(since=first["revision"], wait=2)
    assert 1.5 < time.monotonic() - t < 10
    assert same["revision"] == first["revision"]


def test_config_set_changes_the_revision_and_the_long_poll_returns_early(world: World) -> None:
    c = world.client
    before = world.agent.desired()
    got: dict[str, Any] = {}

    def poll() -> None:
        t = time.monotonic()
        got["state"] = world.agent.desired(since=before["revision"], wait=30)
        got["seconds"] = time.monotonic() - t

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(1.5)
    r = c.put(f"{ORG}/projects/shop/components/front/config/GREETING", json={"value": "bonjour"},
              params={"env": "development"})
    assert r.status_code == 200, r.text
    thread.join(40)
    assert not thread.is_alive()
    after = got["state"]
    assert after["revision"] != before["revision"]
    assert got["seconds"] < 10
    front = deployment_of(after, "shop", "front")
    assert by_name(front["env"], "GREETING")["value"] == "bonjour"
    assert front["release"] != deployment_of(before, "shop", "front")["release"]
    assert deployment_of(after, "sales", "orders")["release"] == deployment_of(before, "sales", "orders")["release"]
    # a value for another environment changes nothing here
    r = c.put(f"{ORG}/projects/shop/components/front/config/GREETING", json={"value": "x"}, params={"env": "staging"})
    assert r.status_code == 200
    assert world.agent.desired()["revision"] == after["revision"]
    # a new secret value is a new release, and the view shows no value at all
    r = c.put(f"{ORG}/projects/shop/components/front/config/DB_PASSWORD", json={"value": SECRET + "2", "secret": True})
    assert r.status_code == 200
    latest = world.agent.desired()
    front2 = deployment_of(latest, "shop", "front")
    assert front2["release"] != front["release"]
    assert world.agent.open(by_name(front2["env"], "DB_PASSWORD")["sealed"],
                            "development/shop/front/DB_PASSWORD") == SECRET + "2"
    view = c.get(f"{ORG}/projects/shop/components/front/deployments/development").text
    assert SECRET not in view and "bonjour" not in view


def test_status_report_drives_deployment_state_and_urls(world: World) -> None:
    c, agent = world.client, world.agent
    desired = agent.desired()
    front, broken = deployment_of(desired, "shop", "front"), deployment_of(desired, "shop", "broken")
    view = c.get(f"{ORG}/projects/shop/components/front/deployments/development").json()
    assert view["rollout"] == front["release"] and front["release"].startswith(view["release"] + "-")
    assert view["state"] in ("progressing", "ready")
    b = c.get(f"{ORG}/projects/shop/components/broken/deployments/development").json()
    assert (b["state"], b["message"]) == ("blocked", broken["blocked"])
    assert b["connections"] == [{"name": "ledger", "state": "unresolved", "via": None,
                                 "reason": "endpoint sales/ledger/api is visible to project sales only"}]

    report = [{"id": front["id"], "release": front["release"], "state": "ready", "message": "",
               "replicas": [{"index": 0, "state": "ready", "pid": 4242, "port": 40123, "restarts": 0, "message": ""}]},
              {"id": "dep_000000000000", "release": "r0", "state": "ready"}]
    r = agent.status(report, gateways("development", 8800, ("shop", "sales")))
    assert r.status_code == 200 and r.json() == {"deployments": 1}, r.text
    view = c.get(f"{ORG}/projects/shop/components/front/deployments/development").json()
    assert (view["state"], view["observedRelease"]) == ("ready", front["release"])
    assert view["observedAt"] and view["replicas"][0]["pid"] == 4242
    assert view["endpoints"] == [{"name": "api", "type": "REST", "visibility": ["Public"], "basePath": "/", "urls": {
        "external": "http://127.0.0.1:8800/shop/front/v1", "internal": "http://127.0.0.1:8801/shop/front/v1",
        "project": "http://127.0.0.1:8802/shop/front/v1"}}]
    assert {c_["name"]: c_["via"] for c_ in view["connections"]} == {"cart": "cell", "orders": "internal",
                                                                    "pub": "external", "weather": "url"}
    eps = c.get(f"{ORG}/endpoints", params={"environment": "development"}).json()["items"]
    assert {(e["project"], e["component"]) for e in eps} >= {("sales", "orders"), ("sales", "ledger")}, eps
    orders = next(e for e in eps if (e["project"], e["component"]) == ("sales", "orders"))
    assert orders["urls"] == {"external": None, "internal": "http://127.0.0.1:8801/sales/orders/v1",
                              "project": "http://127.0.0.1:8803/sales/orders/v1"}
    ledger = next(e for e in eps if e["component"] == "ledger")
    assert ledger["urls"]["external"] is None and ledger["urls"]["internal"] is None
    # a report of an older release: the deployment is rolling out
    r = agent.status([{"id": front["id"], "release": "r0000000000", "state": "ready"}],
                     gateways("development", 8800, ("shop", "sales")))
    view = c.get(f"{ORG}/projects/shop/components/front/deployments/development").json()
    assert view["state"] == "progressing" and view["observedRelease"] == "r0000000000"


def test_unresolved_targets_block_and_resolve_once_deployed(world: World) -> None:
    c, agent = world.client, world.agent
    deploy(c, "shop", "front", "staging")
    staging = deployment_of(agent.desired(), "shop", "front", "staging")
    assert staging["blocked"] == "dependency 'cart': component shop/cart is not deployed in staging"
    config = f"{ORG}/projects/shop/components/front/config/GREETING"
    c.delete(config, params={"env": "staging"})
    staging = deployment_of(agent.desired(), "shop", "front", "staging")
    assert by_name(staging["env"], "GREETING")["value"] == "hi staging"  # the spec's per-environment value
    assert c.put(config, json={"value": "for all"}).status_code == 200
    staging = deployment_of(agent.desired(), "shop", "front", "staging")
    assert by_name(staging["env"], "GREETING")["value"] == "for all"  # config set beats the spec
    assert c.put(config, json={"value": "y"}, params={"env": "staging"}).status_code == 200
    staging = deployment_of(agent.desired(), "shop", "front", "staging")
    assert by_name(staging["env"], "GREETING")["value"] == "y"  # and config set for the environment beats that
    for name in ("cart",):
        deploy(c, "shop", name, "staging")
    for name in ("orders", "pub"):
        deploy(c, "sales", name, "staging")
    staging = deployment_of(agent.desired(), "shop", "front", "staging")
    assert staging["blocked"] is None
    # the connection's credentials are per environment
    dev = deployment_of(agent.desired(), "shop", "front")
    keys = {by_name(d["connections"], "orders")["credentials"]["consumerKey"] for d in (dev, staging)}
    assert len(keys) == 2
    # a dependency on something that does not exist
    r = c.put(f"{ORG}/projects/shop/components/broken", json={"metadata": {"name": "broken"}, "spec": service(
        ["Public"], dependencies=[{"name": "ghost", "component": "ghost", "project": "sales"},
                                 {"name": "orders", "component": "orders", "project": "sales", "endpoint": "nope"}])})
    assert r.status_code == 200, r.text
    view = c.get(f"{ORG}/projects/shop/components/broken/deployments/development").json()
    assert [x["reason"] for x in view["connections"]] == ["component sales/ghost does not exist",
                                                           "component sales/orders has no endpoint 'nope'"]
    assert view["message"] == "dependency 'ghost': component sales/ghost does not exist"


def test_task_runs_flow_through_the_desired_state(world: World) -> None:
    c, agent = world.client, world.agent
    build(c, "shop", "nightly", {"type": "manual-task"}, app="task")
    dep = deploy(c, "shop", "nightly")
    r = c.post(f"{ORG}/projects/shop/components/nightly/runs", json={"environment": "development"})
    assert r.status_code == 201, r.text
    run = r.json()
    desired = agent.desired()
    assert desired["runs"] == [{"id": run["id"], "deployment": dep["id"], "environment": "development",
                                "project": "shop", "component": "nightly", "requestedAt": run["requestedAt"]}]
    assert deployment_of(desired, "shop", "nightly")["type"] == "manual-task"
    base = {"id": run["id"], "deployment": dep["id"], "environment": "development", "project": "shop",
            "component": "nightly", "trigger": "manual"}
    r = agent.runs([{**base, "state": "running", "startedAt": "2026-01-01T00:00:00+00:00"}])
    assert r.json() == {"recorded": 1}, r.text
    assert agent.desired()["runs"] == []  # reported: no longer asked for
    # a scheduled run gets its id from the agent
    scheduled = {**base, "id": "run_" + "a" * 16, "trigger": "schedule", "state": "succeeded",
                 "startedAt": "2026-01-01T00:01:00Z", "endedAt": "2026-01-01T00:01:01Z", "exitCode": 0}
    assert agent.runs([scheduled]).json() == {"recorded": 1}
    shown = c.get(f"{ORG}/task-runs/{scheduled['id']}").json()
    assert (shown["trigger"], shown["state"], shown["requestedBy"]) == ("schedule", "succeeded", None)


# -- PostgreSQL -----------------------------------------------------------------------------------------------------


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str, build_cache: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path / "data", postgres_url, env={"CELLPLANE_CACHE_DIR": str(build_cache)})
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.postgres
def test_desired_state_on_postgresql(pg_server: LiveServer) -> None:
    c = pg_server.client()
    agent = Agent(c)
    agent.register()
    build(c, "sales", "orders", service(["Organization"]))
    build(c, "shop", "front", service(["Public"], dependencies=[
        {"name": "orders", "component": "orders", "project": "sales"}],
        configuration={"env": [{"name": "DB_PASSWORD", "value": SECRET, "secret": True}]}))
    deploy(c, "sales", "orders")
    deploy(c, "shop", "front")
    first, second = agent.desired(), agent.desired()
    assert first["revision"] == second["revision"]
    front = deployment_of(first, "shop", "front")
    assert agent.open(by_name(front["env"], "DB_PASSWORD")["sealed"], "development/shop/front/DB_PASSWORD") == SECRET
    orders = by_name(front["connections"], "orders")
    assert orders["via"] == "internal"
    again = by_name(deployment_of(second, "shop", "front")["connections"], "orders")
    assert again["credentials"]["consumerKey"] == orders["credentials"]["consumerKey"]
    secret = agent.open(orders["credentials"]["consumerSecret"]["sealed"], "development/shop/front/connection:orders")
    assert first["grants"][0]["secretDigest"] == hashlib.sha256(secret.encode()).hexdigest()
    assert SECRET not in pg_server.log()
    # status and logs on PostgreSQL
    r = agent.status([{"id": front["id"], "release": front["release"], "state": "ready"}], gateways())
    assert r.json() == {"deployments": 1}
    lines = [{"deployment": front["id"], "environment": "development", "project": "shop", "component": "front",
              "replica": 0, "stream": "stdout", "at": "2026-01-01T00:00:00+05:00", "line": f"line {i}"}
             for i in range(3)]
    assert agent.logs(lines).json() == {"accepted": 3}
    got = c.get(f"{ORG}/projects/shop/components/front/logs", params={"environment": "development"}).json()
    assert [x["line"] for x in got["items"]] == ["line 0", "line 1", "line 2"]
    assert got["items"][0]["at"].startswith("2025-12-31T19:00:00")
    r = c.put(f"{ORG}/projects/shop/components/front/config/DB_PASSWORD", json={"value": "new", "secret": True})
    assert r.status_code == 200
    assert agent.desired()["revision"] != first["revision"]


# -- service functions: the clock and the bounds --------------------------------------------------------------------


def _row(kind: str, name: str, spec: dict[str, Any], project: str = "", status: dict[str, Any] | None = None,
         ) -> ResourceRow:
    return ResourceRow(uid=f"{kind}-{project}-{name}", kind=kind, organization="o", project=project, name=name,
                       labels={}, annotations={}, spec=spec, status=status or {})


def test_a_silent_data_plane_shows_as_unreachable(store: Store, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    keyring = KeyRing.load_or_create(tmp_path)
    seen = datetime.now(UTC) - timedelta(seconds=5)
    with store.transaction() as s:
        s.add_all([_row("Organization", "o", {}), _row("Project", "p", {}),
                   _row("DataPlane", "dp", {"type": "local"}, status={"agent": {"lastSeen": seen.isoformat()}}),
                   _row("Environment", "dev", {"dataPlane": "dp"}),
                   _row("Component", "c", {"type": "service"}, project="p"),
                   BuildRow(id="b-1", organization="o", project="p", component="c", number=1, state="succeeded",
                            artifact="sha256:" + "0" * 64)])
        s.flush()
        dep = DeploymentRow(id="dep_1", organization="o", project="p", component="c", environment="dev",
                            build_id="b-1", artifact="sha256:" + "0" * 64, status={})
        s.add(dep)
        s.flush()
        view = deployments.Viewer(s, keyring, "o").view(dep)
        assert (view["state"], view["message"]) == ("progressing", "waiting for data plane dp")
        dep.status = {"id": "dep_1", "release": view["rollout"], "state": "ready", "message": "", "replicas": []}
        s.flush()
        assert deployments.Viewer(s, keyring, "o").view(dep)["state"] == "ready"
        monkeypatch.setattr(dataplanes, "STALE_AFTER", 2.0)
        view = deployments.Viewer(s, keyring, "o").view(dep)
        assert view["state"] == "unreachable"
        assert view["message"].startswith("data plane dp has not reported since ")


def test_logs_are_pruned_to_their_bound(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_LOG_LINES", 5)
    at = datetime.now(UTC)

    def line(i: int, component: str = "c") -> LogLineReport:
        return LogLineReport(environment="dev", project="p", component=component, replica=0, stream="stdout", at=at,
                             line=f"line {i}")

    def read(limit: int, **filters: Any) -> list[str]:
        with store.transaction() as s:
            page = logs.page(s, WorkloadLogRow, logs.LogQuery("o", "p", "c", "dev", limit=limit, **filters),
                             logs.line_view)
            return [item["line"] for item in page.items]

    with store.transaction() as s:
        logs.add_lines(s, "o", [line(i) for i in range(4)] + [line(0, "other")])
    with store.transaction() as s:
        logs.add_lines(s, "o", [line(i) for i in range(4, 9)])
    assert read(100) == [f"line {i}" for i in range(4, 9)]
    assert read(2) == ["line 7", "line 8"]
    assert read(100, grep="INE 6") == ["line 6"]  # the search index forgets pruned lines: "line 0" of c is gone
    assert read(100, grep="ne 0") == []
    with store.transaction() as s:
        assert s.query(WorkloadLogRow).filter_by(component="other").count() == 1


def test_log_pruning_waits_for_a_tenth_of_the_bound(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_LOG_LINES", 100)
    monkeypatch.setattr(logs, "_added", {})
    at = datetime.now(UTC)

    def add(n: int) -> int:
        with store.transaction() as s:
            logs.add_lines(s, "o", [LogLineReport(environment="dev", project="p", component="c", replica=0,
                                                  stream="stdout", at=at, line="x")] * n)
        with store.transaction() as s:
            return s.query(WorkloadLogRow).filter_by(component="c").count()

    assert add(120) == 100  # the first batch in this process is pruned at once
    assert add(5) == 105  # then only once a tenth of the bound arrived
    assert add(4) == 109
    assert add(1) == 100


def test_manual_task_runs_are_pruned_to_their_bound(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(taskruns, "MAX_RUNS", 3)
    dep = DeploymentRow(id="dep_runs", organization="o", project="p", component="job", environment="dev",
                        build_id="b", artifact="sha256:x")
    with store.transaction() as s:
        s.add(dep)
    made = []
    for _ in range(6):
        with store.transaction() as s:
            run = taskruns.create_run(s, s.get(DeploymentRow, "dep_runs"), "me")
            made.append(run.id)
            run.state = "succeeded"  # only finished runs are pruned
    with store.transaction() as s:
        kept = [r.id for r in taskruns.list_runs(s, "o", "p", "job", "dev", 100)]
    assert len(kept) <= 4 and made[-1] in kept and made[0] not in kept, (made, kept)


def _deployment_world(s: Any, plane_status: dict[str, Any] | None = None) -> DeploymentRow:
    s.add_all([_row("DataPlane", "dp", {"type": "local"}, status=plane_status),
               _row("Environment", "dev", {"dataPlane": "dp"}),
               _row("Component", "c", {"type": "service", "dependencies": [
                   {"name": "up", "component": "up", "project": "q"}]}, project="p"),
               _row("Component", "up", {"type": "service", "endpoints": [
                   {"name": "api", "port": 80, "visibility": ["Organization"]}]}, project="q"),
               BuildRow(id="b-1", organization="o", project="p", component="c", number=1, state="succeeded",
                        artifact="sha256:" + "0" * 64)])
    s.flush()
    for project, name in (("p", "c"), ("q", "up")):
        s.add(DeploymentRow(id=f"dep_{name}", organization="o", project=project, component=name, environment="dev",
                            build_id="b-1", artifact="sha256:" + "0" * 64, status={}))
    s.flush()
    return s.get(DeploymentRow, "dep_c")


def test_secrets_wait_for_the_agent_key_and_connection_secrets_survive_key_rotation(
        store: Store, tmp_path: Path) -> None:
    from cellplane.controlplane import connections, desired, rotation
    from cellplane.store.tables import ConnectionKeyRow

    keyring = KeyRing.load_or_create(tmp_path)
    with store.transaction() as s:
        dep = _deployment_world(s)
        # an internal connection carries a secret: without the agent's key, the deployment cannot start
        view = deployments.Viewer(s, keyring, "o").view(dep)
        assert (view["state"], view["message"]) == ("blocked", "the data plane has not registered yet")
        state = desired.compute(s, keyring, "o", "dp")
        entry = next(d for d in state.document.deployments if d.id == "dep_c")
        assert entry.blocked == "the data plane has not registered yet"
        sealed = next(d for d in state.sealed()["deployments"] if d["id"] == "dep_c")
        assert sealed["connections"][0]["credentials"]["consumerSecret"] == {"sealed": None}
    agent_key = X25519PrivateKey.generate()
    with store.transaction() as s:
        plane = dataplanes.get(s, "o", "dp")
        dataplanes.register(s, "o", "dp", {"agentId": "a", "publicKey": public_key_text(agent_key)}, False)
        state = desired.compute(s, keyring, "o", "dp")
        doc_ = state.sealed()
        entry = next(d for d in doc_["deployments"] if d["id"] == "dep_c")
        assert entry["blocked"] is None and plane.status["agent"]["publicKey"]
        secret = open_sealed(agent_key, entry["connections"][0]["credentials"]["consumerSecret"]["sealed"],
                             "dev/p/c/connection:up")
        row = s.query(ConnectionKeyRow).one()
        assert row.secret_digest == hashlib.sha256(secret.encode()).hexdigest() and secret not in row.secret
    old = keyring.primary_id
    keyring.begin_rotation()
    with store.transaction() as s:
        assert rotation.rotate_all(s, keyring) == 1
    keyring.finish_rotation()
    with store.transaction() as s:
        row = s.query(ConnectionKeyRow).one()
        assert keyring.key_id_of(row.secret) != old
        assert keyring.decrypt(row.secret, connections.key_context(row)) == secret
        again = desired.compute(s, keyring, "o", "dp")
        assert again.revision == state.revision  # the same credentials
