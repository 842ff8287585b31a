"""The typed contract between the planes (``cellplane.contract``), against what a real control plane serves and
takes: the desired state of deployed components parses into ``DesiredState`` and goes back to the same JSON, it is
the JSON the hand-written builder served before the models existed (a recorded golden, but for the dropped
``artifact.path``), and a malformed report is refused with the API's usual error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError

from buildkit import APPS, BuildServer, component, failed_why, upload, wait
from cellplane.contract import DeploymentReport, DesiredState, StatusReport
from cellplane.sealing import public_key_text
from test_layers import violations

ORG = "/organizations/default"
PLANE = ORG + "/dataplanes/local"
GOLDEN = Path(__file__).parent / "fixtures" / "contract" / "desired-state.json"

FRONT = {
    "type": "service", "replicas": 2, "resources": {"cpu": "500m", "memory": "256Mi"},
    "health": {"readiness": {"path": "/", "periodSeconds": 2}, "gracePeriodSeconds": 5},
    "endpoints": [{"name": "api", "port": 8080, "visibility": ["Public"]},
                  {"name": "admin", "port": 8081, "type": "GraphQL", "basePath": "/admin", "visibility": ["Project"]}],
    "dependencies": [
        {"name": "cart", "component": "cart"},
        {"name": "orders", "component": "orders", "project": "sales", "endpoint": "api"},
        {"name": "pub", "component": "pub", "project": "sales"},
        {"name": "weather", "url": "https://api.example.com/v2", "env": [{"from": "ServiceURL", "to": "WEATHER_URL"}]},
        {"name": "ghost", "component": "ghost"},
    ],
    "configuration": {
        "env": [{"name": "GREETING", "value": "hello"}, {"name": "DB_PASSWORD", "value": "s3cret", "secret": True}],
        "files": [{"name": "conf", "mountPath": "/app/conf.json", "content": '{"mode": "test"}'},
                  {"name": "cert", "mountPath": "/app/cert.pem", "content": "CERT", "secret": True}]},
}


def service(visibility: list[str]) -> dict[str, Any]:
    return {"type": "service", "endpoints": [{"name": "api", "port": 8080, "visibility": visibility}]}


def build_and_deploy(c: httpx.Client, project: str, name: str, spec: dict[str, Any], app: str = "static-site") -> str:
    component(c, project, name, spec)
    info = wait(c, upload(c, project, name, APPS / app))
    assert info["state"] == "succeeded", failed_why(c, info)
    r = c.post(f"{ORG}/projects/{project}/components/{name}/deployments", json={"environment": "development"})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def client(build_server: BuildServer) -> httpx.Client:
    """A control plane with an agent registered, and components deployed that use every part of the desired
    state: plain and secret configuration, connections of every kind (and an unresolved one), grants, a scheduled
    task and a manual task with a run asked for."""
    c = build_server.client
    r = c.put(PLANE + "/agent", json={"agentId": "agent-1", "publicKey": public_key_text(X25519PrivateKey.generate()),
                                      "bindUnbound": True})
    assert r.status_code == 200, r.text
    build_and_deploy(c, "sales", "orders", service(["Organization"]))
    build_and_deploy(c, "sales", "pub", service(["Public"]))
    build_and_deploy(c, "shop", "cart", service(["Project"]))
    build_and_deploy(c, "shop", "front", FRONT)
    build_and_deploy(c, "shop", "cron", {"type": "scheduled-task", "schedule": {"cron": "0 3 * * *"}}, app="task")
    build_and_deploy(c, "shop", "nightly", {"type": "manual-task"}, app="task")
    r = c.post(f"{ORG}/projects/shop/components/nightly/runs", json={"environment": "development"})
    assert r.status_code == 201, r.text
    return c


def served(c: httpx.Client) -> dict[str, Any]:
    r = c.get(PLANE + "/desired-state", params={"wait": 0}, timeout=90)
    assert r.status_code == 200, r.text
    return dict(r.json())


# Values that differ from run to run, and what stands for them in the golden.
RANDOM = [("sha256", re.compile(r"^sha256:[0-9a-f]{64}$")), ("hex", re.compile(r"^[0-9a-f]{64}$")),
          ("deployment", re.compile(r"^dep_[0-9a-z]+$")), ("run", re.compile(r"^run_[0-9a-f]{16}$")),
          ("consumer", re.compile(r"^ck_[A-Za-z0-9_-]+$")),
          ("time", re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(\+00:00|Z)$"))]

ROLLOUT = re.compile(r"^(r[0-9a-f]{12})(-[0-9a-f]{4})?$")


def normalized(document: dict[str, Any]) -> Any:
    """The document with every random value (ids, digests, times, sealed bytes) replaced by a name that stands
    for it, numbered in order of first appearance: the same value gets the same name wherever it occurs."""
    names: dict[str, str] = {}

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            if key == "sealed":
                return "<sealed>"
            if release := ROLLOUT.match(value):  # the release id, and the digest of its connections as it is
                return names.setdefault(release[1], f"<release-{len(names)}>") + (release[2] or "")
            for kind, pattern in RANDOM:
                if pattern.match(value):
                    return names.setdefault(value, f"<{kind}-{len(names)}>")
        return value

    return walk(json.loads(json.dumps(document, sort_keys=True)))


def test_the_desired_state_is_the_json_the_hand_written_builder_served(client: httpx.Client) -> None:
    golden = json.loads(GOLDEN.read_text())
    for deployment in golden["deployments"]:
        del deployment["artifact"]["path"]  # the one change: unused (the agent fetches from .../artifacts)
    assert normalized(served(client)) == golden


def test_the_served_desired_state_parses_into_the_contract_and_goes_back_to_the_same_bytes(
        client: httpx.Client) -> None:
    r = client.get(PLANE + "/desired-state", params={"wait": 0}, timeout=90)
    assert r.status_code == 200, r.text
    state = DesiredState.from_wire(r.json())
    assert json.dumps(state.to_wire(), ensure_ascii=False, separators=(",", ":")).encode() == r.content
    front = next(d for d in state.deployments if d.component == "front")
    assert (front.track, front.replicas, [e.name for e in front.endpoints]) == ("default", 2, ["api", "admin"])
    env = {e.name: e for e in front.env}
    assert (env["GREETING"].value, env["GREETING"].sealed) == ("hello", None)
    assert env["DB_PASSWORD"].value is None and env["DB_PASSWORD"].sealed
    by_name = {c.name: c for c in front.connections}
    assert by_name["weather"].url == "https://api.example.com/v2" and by_name["weather"].target is None
    assert by_name["orders"].credentials is not None and by_name["orders"].credentials.consumerSecret.sealed
    assert [(e.from_, e.to) for e in by_name["weather"].env] == [("ServiceURL", "WEATHER_URL")]
    assert (by_name["ghost"].state, by_name["ghost"].via) == ("unresolved", None)
    assert [g.consumerKey for g in state.grants] == [by_name["orders"].credentials.consumerKey]
    assert [run.component for run in state.runs] == ["nightly"]
    assert front.health is not None and front.health.readiness is not None and front.health.liveness is None
    assert (front.health.readiness.path, front.health.readiness.periodSeconds, front.health.gracePeriodSeconds) == (
        "/", 2.0, 5.0)
    assert (front.resources.cpu, front.resources.memory, front.schedule) == ("500m", "256Mi", None)
    cron = next(d for d in state.deployments if d.component == "cron")
    assert cron.schedule is not None and (cron.schedule.cron, cron.schedule.timezone) == ("0 3 * * *", "UTC")


def test_a_desired_state_an_older_control_plane_served_still_parses() -> None:
    """An agent's desired.json may come from before the models (with artifact.path): a key the contract does not
    know is kept, not refused."""
    state = DesiredState.from_wire(json.loads(GOLDEN.read_text()))
    assert all(d.artifact.model_extra and d.artifact.model_extra["path"].startswith("/organizations/default/projects/")
               for d in state.deployments)


def test_a_desired_state_missing_a_field_does_not_parse(client: httpx.Client) -> None:
    document = served(client)
    del document["deployments"][0]["release"]
    with pytest.raises(ValidationError) as caught:
        DesiredState.from_wire(document)
    assert [e["loc"] for e in caught.value.errors()] == [("deployments", 0, "release")]


def test_a_malformed_status_report_is_refused_with_the_apis_error_at_its_field_paths(client: httpx.Client) -> None:
    body = {"agentId": "agent-1", "gateways": {"development": {"external": "ftp://x"}},
            "deployments": [{"id": "dep_x", "state": "bogus", "replicas": [{"index": -1, "state": "ready"}]}]}
    r = client.put(PLANE + "/status", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid" and error["message"] == "invalid status report"
    fields = [d["field"] for d in error["details"]]
    assert fields == ["gateways.development.external", "deployments[0].state", "deployments[0].replicas[0].index"]
    with pytest.raises(ValidationError) as caught:  # the route's model is the contract's
        StatusReport.model_validate(body)
    assert len(caught.value.errors()) == len(fields)
    good = StatusReport(agentId="agent-1", deployments=[DeploymentReport(id="dep_x", state="ready")])
    r = client.put(PLANE + "/status", json=good.model_dump(mode="json"))
    assert r.status_code == 200 and r.json() == {"deployments": 0}, r.text


def test_the_contract_imports_nothing_from_any_plane() -> None:
    for plane in ("cellplane.controlplane", "cellplane.dataplane", "cellplane.gateway", "cellplane.build",
                  "cellplane.runtime", "cellplane.cli"):
        assert violations(("contract",), plane) == []
