"""Runtime output is read only where a role binding reaches (docs/security.md, "Roles and scopes"): task runs,
deployments (their state and messages), endpoints, alert rules and their firings, and release history.

A real control plane with real builds of a task and a web app, deployed in two environments, ``staging`` and
``development``; a fake agent (the agent API over plain HTTP) reports the deployments' state and failed task runs
in both, and the control plane's own alert loop fires a rule in each. A developer bound to ``staging`` reads all of
it in staging and nothing of development: lists show it staging's items only, and reading one of development's is
a 403. An organization's viewer reads both. (tests/test_rbac.py holds the rule as a table of permission checks.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from buildkit import BuildServer
from fakeagentkit import Agent, build, gateways

ORG = "/organizations/default"
PROJECT = "scoped"
JOB = f"{ORG}/projects/{PROJECT}/components/job"
SITE = f"{ORG}/projects/{PROJECT}/components/site"
ENVS = ("staging", "development")


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"CELLPLANE_ALERT_INTERVAL": "0.5"}  # seconds between alert evaluations


def _user(admin: httpx.Client, build_server: BuildServer, role: str, **scope: str) -> httpx.Client:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    assert admin.post("/users", json={"name": name}).status_code == 201
    r = admin.post(f"{ORG}/rolebindings", json={"user": name, "role": role, **scope})
    assert r.status_code == 201, r.text
    return build_server.server.client(admin.post(f"/users/{name}/tokens", json={"name": "t"}).json()["token"])


def _stamp(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def _until(what: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := what()):
        assert time.monotonic() < deadline, f"not true after {timeout}s"
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def world(build_server: BuildServer) -> dict[str, Any]:
    """Per environment: the task's and the site's deployments, a manual run, a failed scheduled run and a firing
    alert rule; and the clients of a staging developer and an organization viewer."""
    c = build_server.client
    build(c, PROJECT, "job", {"type": "manual-task"}, app="task")
    build(c, PROJECT, "site", {"type": "web-app", "endpoints": [{"name": "web", "port": 8080,
                                                                 "visibility": ["Public"]}]})
    agent = Agent(c)
    agent.register()
    out: dict[str, Any] = {env: {} for env in ENVS}
    reports = []
    for env in ENVS:
        mine = out[env]
        for name, path in (("job", JOB), ("site", SITE)):
            r = c.post(f"{path}/deployments", json={"environment": env})
            assert r.status_code == 201, r.text
            mine[name] = r.json()
        r = c.post(f"{JOB}/runs", json={"environment": env})
        assert r.status_code == 201, r.text
        mine["run"] = r.json()["id"]
        mine["failed"] = "run_" + uuid.uuid4().hex[:16]
        assert agent.runs([{"id": mine["failed"], "deployment": mine["job"]["id"], "environment": env,
                            "project": PROJECT, "component": "job", "trigger": "schedule", "state": "failed",
                            "startedAt": _stamp(2), "endedAt": _stamp(1), "exitCode": 3,
                            "message": f"exited with 3 in {env}"}]).json() == {"recorded": 1}
        r = c.post(f"{JOB}/alerts", json={"name": "failures", "environment": env, "metric": "task-failures",
                                          "threshold": 0, "window": "5m", "webhook": "http://127.0.0.1:9/hook"})
        assert r.status_code == 201, r.text
        mine["alert"] = r.json()["id"]
        reports += [{"id": mine[name]["id"], "release": mine[name]["release"], "state": "crash-loop",
                     "message": f"{name} exited with 1 three times in {env}"} for name in ("job", "site")]
    assert agent.status(reports, {**gateways("staging", 9100), **gateways("development", 9200)}).status_code == 200
    r = c.post(f"{JOB}/deployments", json={"environment": "production"})  # production requires approval
    assert r.status_code == 202, r.text
    out["approval"] = r.json()["approval"]["id"]
    for env in ENVS:
        _until(lambda env=env: c.get(f"{ORG}/alerts/{out[env]['alert']}/events").json()["items"])
    out["staging-developer"] = _user(c, build_server, "developer", environment="staging")
    out["viewer"] = _user(c, build_server, "viewer")
    return out


def _ids(r: httpx.Response, key: str = "id") -> set[str]:
    assert r.status_code == 200, r.text
    return {x[key] for x in r.json()["items"]}


def _forbidden(r: httpx.Response, permission: str, environment: str = "development") -> None:
    assert r.status_code == 403, r.text
    assert permission in r.json()["error"]["message"], r.text
    assert f"environment '{environment}'" in r.json()["error"]["message"], r.text


def test_an_environment_binding_reads_the_task_runs_of_its_environment_only(world: dict[str, Any]) -> None:
    staging, development, dev = world["staging"], world["development"], world["staging-developer"]
    assert _ids(dev.get(f"{JOB}/runs")) == {staging["run"], staging["failed"]}
    assert _ids(dev.get(f"{JOB}/runs", params={"environment": "development"})) == set()
    # development's runs are the newest: the limit counts the runs the caller reads
    newest = _ids(dev.get(f"{JOB}/runs", params={"limit": 1}))
    assert len(newest) == 1 and newest < {staging["run"], staging["failed"]}
    shown = dev.get(f"{ORG}/task-runs/{staging['failed']}")
    assert shown.status_code == 200 and shown.json()["message"] == "exited with 3 in staging"
    for run in (development["run"], development["failed"]):
        _forbidden(dev.get(f"{ORG}/task-runs/{run}"), "runs:get")
    _forbidden(dev.get(f"{JOB}/logs", params={"environment": "development", "run": development["failed"]}),
               "logs:get")
    every = {staging["run"], staging["failed"], development["run"], development["failed"]}
    assert _ids(world["viewer"].get(f"{JOB}/runs")) == every
    assert world["viewer"].get(f"{ORG}/task-runs/{development['failed']}").status_code == 200


def test_an_environment_binding_reads_the_deployments_and_endpoints_of_its_environment_only(
        world: dict[str, Any]) -> None:
    staging, development, dev = world["staging"], world["development"], world["staging-developer"]
    mine = {staging["job"]["id"], staging["site"]["id"]}
    listed = dev.get(f"{ORG}/deployments", params={"project": PROJECT})
    assert _ids(listed) == mine
    assert {x["message"] for x in listed.json()["items"]} == {"job exited with 1 three times in staging",
                                                              "site exited with 1 three times in staging"}
    assert _ids(dev.get(f"{ORG}/deployments", params={"environment": "development"})) == set()
    assert _ids(dev.get(f"{JOB}/deployments")) == {staging["job"]["id"]}
    assert dev.get(f"{SITE}/deployments/staging").json()["state"] == "crash-loop"
    for path in (JOB, SITE):
        _forbidden(dev.get(f"{path}/deployments/development"), "deployments:get")
    assert _ids(dev.get(f"{ORG}/endpoints", params={"project": PROJECT}), "environment") == {"staging"}
    # the release history of the component: staging's deployments only
    assert _ids(dev.get(f"{JOB}/releases"), "environment") == {"staging"}
    assert _ids(dev.get(f"{JOB}/releases", params={"environment": "development"}), "environment") == set()
    # and the approval request of a deploy into production
    assert world["approval"] not in _ids(dev.get(f"{ORG}/approvals", params={"state": "all"}))
    _forbidden(dev.get(f"{ORG}/approvals/{world['approval']}"), "deployments:get", "production")
    viewer = world["viewer"]
    assert _ids(viewer.get(f"{ORG}/deployments", params={"project": PROJECT})) == mine | {
        development["job"]["id"], development["site"]["id"]}
    assert _ids(viewer.get(f"{ORG}/endpoints", params={"project": PROJECT}), "environment") == set(ENVS)
    assert _ids(viewer.get(f"{JOB}/releases"), "environment") == set(ENVS)
    assert world["approval"] in _ids(viewer.get(f"{ORG}/approvals"))


def test_an_environment_binding_reads_the_alert_rules_and_firings_of_its_environment_only(
        world: dict[str, Any]) -> None:
    staging, development, dev = world["staging"], world["development"], world["staging-developer"]
    assert _ids(dev.get(f"{ORG}/alerts", params={"project": PROJECT})) == {staging["alert"]}
    assert _ids(dev.get(f"{JOB}/alerts")) == {staging["alert"]}
    assert _ids(dev.get(f"{ORG}/alerts", params={"state": "firing", "environment": "development"})) == set()
    assert dev.get(f"{ORG}/alerts/{staging['alert']}").json()["state"] == "firing"
    [event] = dev.get(f"{ORG}/alerts/{staging['alert']}/events").json()["items"]
    assert event["message"] == "failed task runs 1 > 0 over 5m"
    _forbidden(dev.get(f"{ORG}/alerts/{development['alert']}"), "alerts:get")
    _forbidden(dev.get(f"{ORG}/alerts/{development['alert']}/events"), "alerts:get")
    _forbidden(dev.post(f"{ORG}/alerts/{development['alert']}/test"), "alerts:update")
    viewer = world["viewer"]
    assert _ids(viewer.get(f"{ORG}/alerts", params={"project": PROJECT})) == {staging["alert"], development["alert"]}
    assert viewer.get(f"{ORG}/alerts/{development['alert']}/events").json()["items"]
