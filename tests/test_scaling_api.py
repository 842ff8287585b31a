"""Scaling through the real control plane: the desired state a data plane pulls carries each deployment's resolved
scaling, `cellplane scale` (CLI and REST) changes it at once without a new release, refusals are one line and
store nothing, and what the agent reports (scaled to zero, current and desired replicas, why) is shown by the API,
`get deployments` and `describe component`. The agent is played over plain HTTP, as tests/test_dataplane_api.py
does."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from buildkit import APPS, BuildServer, component, failed_why, upload, wait
from cellplane.sealing import public_key_text
from liveserver import LiveServer, Result, doc, run_cli

ORG = "/organizations/default"
WEB = {"type": "service", "endpoints": [{"name": "api", "port": 8080, "visibility": ["Public"]}]}
DEFAULT = {"minReplicas": 0, "maxReplicas": 1, "targetConcurrency": 10.0, "idleSeconds": 300.0,
           "scaleDownDelaySeconds": 30.0}


@dataclass
class World:
    server: LiveServer
    client: httpx.Client

    @property
    def plane(self) -> str:
        return f"{ORG}/dataplanes/local"

    def desired(self, **params: Any) -> dict[str, Any]:
        r = self.client.get(self.plane + "/desired-state", params={"wait": 0, **params}, timeout=90)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def report(self, deployments: list[dict[str, Any]]) -> None:
        r = self.client.put(self.plane + "/status", json={"agentId": "agent-1", "revision": None, "gateways": {},
                                                          "deployments": deployments})
        assert r.status_code == 200, r.text

    def deployment(self, name: str, env: str, desired: dict[str, Any] | None = None) -> dict[str, Any]:
        document = desired or self.desired()
        return next(d for d in document["deployments"] if (d["component"], d["environment"]) == (name, env))

    def spec(self, name: str) -> dict[str, Any]:
        return dict(self.client.get(f"{ORG}/projects/shop/components/{name}").json()["spec"])

    def cli(self, *args: str) -> Result:
        return run_cli(self.server, *args)


@pytest.fixture(scope="module")
def world(build_server: BuildServer) -> World:
    """A data plane registered for every environment, production without approvals; `web` (a service with an HTTP
    endpoint) built once and deployed to development and production; `jobs` a worker, not deployed."""
    c = build_server.client
    r = c.put(f"{ORG}/dataplanes/local/agent", json={"agentId": "agent-1", "version": "0.0-test", "hostname": "h",
                                                     "publicKey": public_key_text(X25519PrivateKey.generate()),
                                                     "bindUnbound": True})
    assert r.status_code == 200, r.text
    r = c.post("/apply", json={"documents": [doc("Environment", "production", {
        "production": True, "requiresApproval": False, "dataPlane": "local"}, organization="default")]})
    assert r.status_code == 200, r.text
    component(c, "shop", "web", WEB)
    component(c, "shop", "jobs", {"type": "worker"})
    info = wait(c, upload(c, "shop", "web", APPS / "static-site"))
    assert info["state"] == "succeeded", failed_why(c, info)
    for env in ("development", "production"):
        r = c.post(f"{ORG}/projects/shop/components/web/deployments", json={"environment": env})
        assert r.status_code in (200, 201), r.text
    return World(build_server.server, c)


def one_line_error(result: Result) -> str:
    assert result.returncode == 1, result
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_a_service_scales_to_zero_by_default_in_development_and_runs_fixed_replicas_in_production(
        world: World) -> None:
    desired = world.desired()
    assert world.deployment("web", "development", desired)["scaling"] == DEFAULT
    assert "scaling" not in world.deployment("web", "production", desired)
    view = world.client.get(f"{ORG}/projects/shop/components/web/deployments/development").json()
    assert view["scaling"] == DEFAULT and view["scalingStatus"] is None
    scaling = world.client.get(f"{ORG}/projects/shop/components/web/scaling").json()
    assert scaling["wakeable"] is True
    assert {i["environment"]: i["scaling"] for i in scaling["items"]} == {
        "development": DEFAULT, "staging": DEFAULT, "production": None}


def test_cellplane_scale_reaches_the_desired_state_at_once_without_a_new_release(world: World) -> None:
    before = world.desired()
    got: dict[str, Any] = {}

    def poll() -> None:  # an agent long-polling on the revision it runs
        got["state"] = world.desired(since=before["revision"], wait=30)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(1)
    result = world.cli("scale", "web", "-p", "shop", "--env", "production", "--min", "2", "--max", "10",
                       "--rps", "50", "--idle", "2m", "--delay", "45s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("component/web configured in production\n")
    assert any(line.split()[:2] == ["production", "2-10"] for line in result.stdout.splitlines()), result.stdout
    thread.join(40)
    assert not thread.is_alive()
    after = got["state"]
    assert after["revision"] != before["revision"]
    production = world.deployment("web", "production", after)
    assert production["scaling"] == {"minReplicas": 2, "maxReplicas": 10, "targetConcurrency": 10.0, "targetRps": 50.0,
                                     "idleSeconds": 120.0, "scaleDownDelaySeconds": 45.0}
    for env in ("development", "production"):  # the same release: nothing restarts
        assert world.deployment("web", env, after)["release"] == world.deployment("web", env, before)["release"]
    assert world.deployment("web", "development", after)["scaling"] == DEFAULT
    assert world.spec("web")["scaling"] == {"environments": {"production": {
        "minReplicas": 2, "maxReplicas": 10, "targetRps": 50.0, "idleSeconds": 120.0, "scaleDownDelaySeconds": 45.0}}}
    events = world.client.get("/audit", params={"organization": "default", "limit": 1}).json()["items"]
    assert events[0]["action"] == "scaling.set" and events[0]["outcome"] == "succeeded"

    # the settings not given stay; --fixed turns scaling off there; --reset drops the environment's settings
    again = world.cli("scale", "web", "-p", "shop", "--env", "production", "--max", "4", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["scaling"]["minReplicas"] == 2
    assert json.loads(again.stdout)["scaling"]["maxReplicas"] == 4
    assert world.cli("scale", "web", "-p", "shop", "--env", "development", "--fixed").returncode == 0
    assert "scaling" not in world.deployment("web", "development")
    shown = world.cli("scale", "web", "-p", "shop", "--env", "development")
    assert shown.returncode == 0 and "fixed 1" in shown.stdout and "fixed=True" in shown.stdout
    assert world.cli("scale", "web", "-p", "shop", "--env", "development", "--reset").returncode == 0
    assert world.deployment("web", "development")["scaling"] == DEFAULT


def test_refused_scaling_is_one_line_with_the_field_path_and_stores_nothing(world: World) -> None:
    before = world.spec("jobs"), world.spec("web")
    error = one_line_error(world.cli("scale", "jobs", "-p", "shop", "--env", "development", "--min", "0"))
    assert "spec.scaling.environments.development.minReplicas: 0 is not allowed: nothing would wake it: a worker " \
           "is not called through the gateway" in error
    error = one_line_error(world.cli("scale", "web", "-p", "shop", "--env", "staging", "--min", "5", "--max", "2"))
    assert "spec.scaling.environments.staging.minReplicas: minReplicas (5) must not exceed maxReplicas (2)" in error
    error = one_line_error(world.cli("scale", "web", "-p", "shop", "--env", "nowhere", "--max", "2"))
    assert "environment 'nowhere' not found" in error
    error = one_line_error(world.cli("scale", "web", "-p", "shop", "--env", "staging", "--idle", "soon"))
    assert "--idle: give a duration like 30s or 5m, not 'soon'" in error
    error = one_line_error(world.cli("scale", "web", "-p", "shop", "--env", "staging", "--fixed", "--min", "1"))
    assert "--fixed runs the fixed replicas" in error
    assert (world.spec("jobs"), world.spec("web")) == before
    r = world.client.patch(f"{ORG}/projects/shop/components/web/scaling/staging", json={"maxReplicas": 0})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "maxReplicas", r.text
    r = world.client.patch(f"{ORG}/projects/shop/components/web/scaling/staging", json={"colour": "red"})
    assert r.status_code == 422, r.text
    assert (world.spec("jobs"), world.spec("web")) == before


def test_a_deployment_scaled_to_zero_shows_as_such_with_its_replicas_and_why(world: World) -> None:
    web = world.deployment("web", "development")
    production = world.deployment("web", "production")
    world.report([{"id": web["id"], "release": web["release"], "state": "scaled-to-zero", "message": "",
                   "replicas": [], "scaling": {"current": 0, "desired": 0, "reason": "idle for 300 s"}},
                  {"id": production["id"], "release": production["release"], "state": "ready",
                   "replicas": [{"index": i, "state": "ready", "pid": 100 + i, "port": 4000 + i, "restarts": 0,
                                 "message": ""} for i in range(2)],
                   "scaling": {"current": 2, "desired": 3, "reason": "load: 27 in flight, target 10 per replica"}}])
    view = world.client.get(f"{ORG}/projects/shop/components/web/deployments/development").json()
    assert view["state"] == "scaled-to-zero" and view["replicas"] == []
    assert view["scalingStatus"] == {"current": 0, "desired": 0, "reason": "idle for 300 s"}
    listed = world.client.get(f"{ORG}/deployments", params={"component": "web"}).json()["items"]
    assert {d["environment"]: d["state"] for d in listed} == {"development": "scaled-to-zero",
                                                              "production": "ready"}

    table = world.cli("get", "deployments", "web", "-p", "shop")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[2]: line for line in table.stdout.splitlines()[1:]}
    assert "scaled-to-zero" in rows["development"] and "0 (scaled to zero)" in rows["development"]
    assert "0-1" in rows["development"]
    assert "2→3" in rows["production"]
    described = world.cli("describe", "component", "web", "-p", "shop")
    assert described.returncode == 0, described.stderr
    text = described.stdout
    assert "Scaling" in text and "idle for 300 s" in text and "load: 27 in flight, target 10 per replica" in text
    health = world.cli("metrics", "web", "-p", "shop", "--env", "development")
    assert health.returncode == 0, health.stderr
    assert "scaled-to-zero: no replica runs, the next request wakes one (idle for 300 s)" in health.stdout


def test_scaling_points_from_the_data_plane_are_served_as_replicas_over_time_and_cold_starts(world: World) -> None:
    now = time.time()

    def at(seconds_ago: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - seconds_ago))

    key = {"kind": "scaling", "environment": "development", "project": "shop", "component": "web", "seconds": 10.0}
    r = world.client.post(world.plane + "/metrics", json={"points": [
        {**key, "at": at(300), "replicas": 0, "desiredReplicas": 0, "coldStarts": 0, "coldStartSeconds": 0.0},
        {**key, "at": at(200), "replicas": 1, "desiredReplicas": 1, "coldStarts": 1, "coldStartSeconds": 0.42},
        {**key, "at": at(100), "replicas": 3, "desiredReplicas": 3, "coldStarts": 0, "coldStartSeconds": 0.0}]})
    assert r.status_code == 200 and r.json() == {"accepted": 3}, r.text
    r = world.client.post(world.plane + "/metrics", json={"points": [{**key, "at": at(10)}]})
    assert r.status_code == 422, r.text  # a scaling point needs replicas
    m = world.client.get(f"{ORG}/projects/shop/components/web/metrics",
                         params={"environment": "development", "since": "10m", "step": 60}).json()
    assert m["scaling"] == {"replicas": 3, "desiredReplicas": 3, "coldStarts": 1, "coldStartMeanSeconds": 0.42,
                            "coldStartMaxSeconds": 0.42}
    assert [p["replicas"] for p in m["series"] if "replicas" in p] == [0, 1, 3]
    shown = world.cli("metrics", "web", "-p", "shop", "--env", "development", "--since", "10m")
    assert shown.returncode == 0, shown.stderr
    assert "scaling: 3 replicas (wants 3); 1 cold start in the last 10m, mean 0.42s, max 0.42s" in shown.stdout
    assert any(line.startswith("replicas") for line in shown.stdout.splitlines())
