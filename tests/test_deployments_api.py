"""Deployments, endpoints, workload logs and task runs as users see them (the CLI's API), against a real control
plane with real builds; the data plane is a fake agent talking the agent API over plain HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from buildkit import APPS, BuildServer, component, upload, wait
from dataplanekit import poll
from fakeagentkit import Agent, build, gateways
from liveserver import LiveServer, doc

ORG = "/organizations/default"
SITE = f"{ORG}/projects/web/components/site"
JOB = f"{ORG}/projects/web/components/job"
SITE_SPEC = {"type": "web-app", "endpoints": [{"name": "web", "port": 8080, "visibility": ["Public"]},
                                              {"name": "admin", "port": 8081, "basePath": "/admin",
                                               "visibility": ["Organization"]}]}


@dataclass
class Setup:
    server: LiveServer
    client: httpx.Client
    agent: Agent
    site_build: dict[str, Any]
    job_build: dict[str, Any]


@pytest.fixture(scope="module")
def setup(build_server: BuildServer) -> Setup:
    c = build_server.client
    site = build(c, "web", "site", SITE_SPEC)
    job = build(c, "web", "job", {"type": "manual-task"}, app="task")
    agent = Agent(c)
    agent.register()
    return Setup(build_server.server, c, agent, site, job)


def error(r: httpx.Response, status: int, code: str | None = None, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    err = r.json()["error"]
    assert set(err) == {"code", "message", "details"}
    if code is not None:
        assert err["code"] == code, err
    if field is not None:
        assert field in [d["field"] for d in err["details"]], err
    return err


def user(setup: Setup, role: str, **scope: str) -> httpx.Client:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    admin = setup.client
    assert admin.post("/users", json={"name": name}).status_code == 201
    token = admin.post(f"/users/{name}/tokens", json={"name": "t"}).json()["token"]
    r = admin.post(f"{ORG}/rolebindings", json={"user": name, "role": role, **scope})
    assert r.status_code == 201, r.text
    return setup.server.client(token)


# -- deploying ------------------------------------------------------------------------------------------------------


def test_deploy_errors(setup: Setup) -> None:
    c = setup.client
    r = c.post("/apply", json={"documents": [doc("Environment", "bare", organization="default")]})
    assert r.status_code == 200, r.text
    # a component whose only build failed
    component(c, "web", "empty", {"build": {"mode": "command", "command": "exit 1", "run": "true"}})
    failed = wait(c, upload(c, "web", "empty", APPS / "static-site"))
    assert failed["state"] == "failed"
    error(c.post(f"{SITE}/deployments", json={"environment": "bare"}), 409, "no-dataplane")
    assert "cellplane dataplane run" in c.post(f"{SITE}/deployments", json={"environment": "bare"}).text
    error(c.post(f"{SITE}/deployments", json={"environment": "nowhere"}), 404, field="environment")
    error(c.post(f"{ORG}/projects/web/components/nothing/deployments", json={"environment": "development"}), 404,
          field="path.component")
    error(c.post(f"{ORG}/projects/nothing/components/site/deployments", json={"environment": "development"}), 404,
          field="path.project")
    err = error(c.post(f"{ORG}/projects/web/components/empty/deployments", json={"environment": "development"}), 409,
                "no-build")
    assert "cellplane build empty" in err["message"]
    error(c.post(f"{SITE}/deployments", json={"environment": "development", "build": "b-000000000000"}), 404,
          field="build")
    err = error(c.post(f"{SITE}/deployments", json={"environment": "development", "build": setup.job_build["id"]}),
                422, field="build")
    assert "web/job" in err["message"]
    err = error(c.post(f"{ORG}/projects/web/components/empty/deployments",
                       json={"environment": "development", "build": failed["id"]}), 422, field="build")
    assert "only a succeeded build" in err["message"]
    # bodies are validated into field paths
    error(c.post(f"{SITE}/deployments", json={}), 422, field="environment")
    error(c.post(f"{SITE}/deployments", json={"environment": "development", "extra": 1}), 422, field="extra")
    error(c.post(f"{SITE}/deployments", json={"environment": "Not A Name"}), 422, field="environment")
    error(c.post(f"{SITE}/deployments", json=["development"]), 422)
    assert c.get(f"{SITE}/deployments").json() == {"items": []}


def test_deploy_twice_is_idempotent_and_the_same_artifact_is_the_same_release(setup: Setup) -> None:
    c = setup.client
    r = c.post(f"{SITE}/deployments", json={"environment": "development"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["id"].startswith("dep_") and len(first["id"]) == 16
    assert (first["organization"], first["project"], first["component"], first["environment"]) == (
        "default", "web", "site", "development")
    assert first["dataPlane"] == "local" and first["type"] == "web-app"
    assert first["build"] == {"id": setup.site_build["id"], "number": setup.site_build["number"]}
    assert first["artifact"] == setup.site_build["artifact"] and first["requestedBy"] == "admin"
    assert (first["state"], first["message"]) == ("progressing", "waiting for data plane local")
    assert first["observedRelease"] is None and first["observedAt"] is None and first["replicas"] == []
    assert first["connections"] == []
    again = c.post(f"{SITE}/deployments", json={"environment": "development", "build": setup.site_build["id"]})
    assert again.status_code == 200, again.text
    assert again.json() == first
    revision = setup.agent.desired()["revision"]
    # a second build of the same sources: a reproducible artifact, so the same release, and nothing changes
    second = wait_build(c, start_upload(c))
    assert second["artifact"] == first["artifact"]
    updated = c.post(f"{SITE}/deployments", json={"environment": "development"})
    assert updated.status_code == 200
    assert updated.json()["build"] == first["build"] and updated.json()["release"] == first["release"]
    assert updated.json()["id"] == first["id"]
    assert setup.agent.desired()["revision"] == revision
    history = c.get(f"{SITE}/releases").json()["items"]
    assert [(h["release"], h["action"], h["current"]) for h in history] == [(first["release"], "deploy", True)]
    events = c.get("/audit", params={"organization": "default", "kind": "Component", "limit": 20}).json()["items"]
    deploys = [e for e in events if e["action"] == "deploy" and e["outcome"] == "succeeded"]
    assert deploys and f"to development: release {first['release']}" in deploys[0]["message"]
    assert "unchanged" in deploys[0]["message"] and "created" in deploys[-1]["message"]


def start_upload(c: httpx.Client) -> dict[str, Any]:
    return upload(c, "web", "site", APPS / "static-site")


def wait_build(c: httpx.Client, info: dict[str, Any]) -> dict[str, Any]:
    done = wait(c, info)
    assert done["state"] == "succeeded"
    return done


def test_list_get_and_delete(setup: Setup) -> None:
    c = setup.client
    r = c.post(f"{SITE}/deployments", json={"environment": "staging"})
    assert r.status_code in (200, 201), r.text
    items = c.get(f"{SITE}/deployments").json()["items"]
    assert [d["environment"] for d in items] == ["development", "staging"]
    assert c.get(f"{SITE}/deployments/staging").json()["id"] == r.json()["id"]
    org = c.get(f"{ORG}/deployments", params={"environment": "staging"}).json()["items"]
    assert [(d["project"], d["component"]) for d in org] == [("web", "site")]
    assert c.get(f"{ORG}/deployments", params={"project": "nothing"}).json() == {"items": []}
    assert len(c.get(f"{ORG}/deployments", params={"component": "site"}).json()["items"]) == 2
    error(c.get(f"{SITE}/deployments/production"), 404, field="path.environment")
    error(c.get(f"{ORG}/projects/web/components/nothing/deployments"), 404, field="path.component")
    error(c.get("/organizations/nothing/deployments"), 404, field="path.organization")
    # an environment with deployments cannot be deleted
    r = c.post("/apply", json={"documents": [doc("Environment", "edge", {"dataPlane": "local"},
                                                 organization="default")]})
    assert r.status_code == 200, r.text
    assert c.post(f"{SITE}/deployments", json={"environment": "edge"}).status_code == 201
    err = error(c.delete(f"{ORG}/environments/edge"), 409, "in-use")
    assert "web/site" in err["message"]
    assert c.delete(f"{SITE}/deployments/edge").status_code == 200
    assert c.delete(f"{ORG}/environments/edge").status_code == 200
    assert c.delete(f"{SITE}/deployments/staging").json() == {"deleted": ["deployment/site@staging"]}
    error(c.get(f"{SITE}/deployments/staging"), 404)
    error(c.delete(f"{SITE}/deployments/staging"), 404)
    assert [d["environment"] for d in c.get(f"{SITE}/deployments").json()["items"]] == ["development"]
    assert all(d["environment"] != "staging" for d in setup.agent.desired()["deployments"])
    events = c.get("/audit", params={"organization": "default", "limit": 5}).json()["items"]
    assert any(e["action"] == "undeploy" and e["outcome"] == "succeeded" for e in events)


def test_endpoint_urls_come_from_the_reported_gateways(setup: Setup) -> None:
    c = setup.client
    dep = c.post(f"{SITE}/deployments", json={"environment": "development"}).json()
    assert [e["urls"] for e in dep["endpoints"]] == [{"external": None, "internal": None, "project": None}] * 2
    r = setup.agent.status([{"id": dep["id"], "release": dep["release"], "state": "ready", "message": "",
                             "replicas": [{"index": 0, "state": "ready", "pid": 1, "port": 2, "restarts": 0,
                                           "message": ""}]}],
                           gateways("development", 9000, ("web",)))
    assert r.status_code == 200, r.text
    view = c.get(f"{SITE}/deployments/development").json()
    assert view["state"] == "ready" and view["observedRelease"] == dep["release"]
    web, admin = view["endpoints"]
    assert web == {"name": "web", "type": "REST", "visibility": ["Public"], "basePath": "/", "urls": {
        "external": "http://127.0.0.1:9000/web/site/v1", "internal": "http://127.0.0.1:9001/web/site/v1",
        "project": "http://127.0.0.1:9002/web/site/v1"}}
    assert admin["urls"] == {"external": None, "internal": "http://127.0.0.1:9001/web/site/v1/admin",
                             "project": "http://127.0.0.1:9002/web/site/v1/admin"}
    eps = c.get(f"{ORG}/endpoints", params={"environment": "development", "project": "web"}).json()["items"]
    assert [(e["component"], e["endpoint"], e["state"]) for e in eps] == [("site", "web", "ready"),
                                                                         ("site", "admin", "ready")]
    assert eps[0]["urls"] == web["urls"]
    assert c.get(f"{ORG}/endpoints", params={"environment": "staging"}).json() == {"items": []}
    # a report saying it crashes
    setup.agent.status([{"id": dep["id"], "release": dep["release"], "state": "crash-loop",
                         "message": "exited with 1 three times in a row"}], gateways("development", 9000, ("web",)))
    view = c.get(f"{SITE}/deployments/development").json()
    assert (view["state"], view["message"]) == ("crash-loop", "exited with 1 three times in a row")


# -- task runs ------------------------------------------------------------------------------------------------------


def test_runs_lifecycle(setup: Setup) -> None:
    c, agent = setup.client, setup.agent
    err = error(c.post(f"{SITE}/runs", json={"environment": "development"}), 422, field="component")
    assert "web-app" in err["message"]
    error(c.post(f"{JOB}/runs", json={"environment": "development"}), 409, "not-deployed")
    error(c.post(f"{JOB}/runs", json={"environment": "nowhere"}), 404, field="environment")
    error(c.post(f"{JOB}/runs", json={}), 422, field="environment")
    dep = c.post(f"{JOB}/deployments", json={"environment": "development"}).json()
    r = c.post(f"{JOB}/runs", json={"environment": "development"})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["id"].startswith("run_") and len(run["id"]) == 20
    assert (run["state"], run["trigger"], run["requestedBy"], run["deployment"]) == ("queued", "manual", "admin",
                                                                                   dep["id"])
    assert run["startedAt"] is None and run["endedAt"] is None and run["exitCode"] is None
    assert [x["id"] for x in agent.desired()["runs"]] == [run["id"]]
    report = {"id": run["id"], "deployment": dep["id"], "environment": "development", "project": "web",
              "component": "job", "trigger": "manual", "state": "running", "startedAt": "2026-03-01T10:00:00Z",
              "endedAt": None, "exitCode": None, "message": ""}
    assert agent.runs([report]).json() == {"recorded": 1}
    shown = c.get(f"{ORG}/task-runs/{run['id']}").json()
    assert shown["state"] == "running" and shown["startedAt"].startswith("2026-03-01T10:00:00")
    assert agent.desired()["runs"] == []
    assert agent.runs([{**report, "state": "succeeded", "endedAt": "2026-03-01T10:00:02Z", "exitCode": 0,
                        "message": "exited with 0 after 2.0s"}]).json() == {"recorded": 1}
    # a late 'running' does not undo the end
    agent.runs([report])
    shown = c.get(f"{ORG}/task-runs/{run['id']}").json()
    assert (shown["state"], shown["exitCode"], shown["message"]) == ("succeeded", 0, "exited with 0 after 2.0s")
    second = c.post(f"{JOB}/runs", json={"environment": "development"}).json()
    listed = c.get(f"{JOB}/runs", params={"environment": "development"}).json()["items"]
    assert [x["id"] for x in listed] == [second["id"], run["id"]]
    assert c.get(f"{JOB}/runs", params={"environment": "staging"}).json() == {"items": []}
    assert len(c.get(f"{JOB}/runs", params={"limit": 1}).json()["items"]) == 1
    error(c.get(f"{ORG}/task-runs/run_0000000000000000"), 404)
    # undeploying fails the runs that never started
    assert c.delete(f"{JOB}/deployments/development").status_code == 200
    assert c.get(f"{ORG}/task-runs/{second['id']}").json()["state"] == "failed"


# -- logs -----------------------------------------------------------------------------------------------------------


def _line(dep: dict[str, Any], text: str, run: str | None = None, stream: str = "stdout") -> dict[str, Any]:
    return {"deployment": dep["id"], "run": run, "environment": dep["environment"], "project": dep["project"],
            "component": dep["component"], "replica": None if run else 0, "stream": stream,
            "at": "2026-03-01T10:00:00Z", "line": text}


def test_logs_tail_after_and_errors(setup: Setup) -> None:
    c, agent = setup.client, setup.agent
    dep = c.post(f"{SITE}/deployments", json={"environment": "development"}).json()
    assert agent.logs([_line(dep, f"line {i}") for i in range(10)] + [_line(dep, "oops", stream="stderr")]).json() \
        == {"accepted": 11}
    logs = f"{SITE}/logs"
    page = c.get(logs, params={"environment": "development"}).json()
    assert [x["line"] for x in page["items"]] == [f"line {i}" for i in range(10)] + ["oops"]
    assert page["next"] == page["items"][-1]["id"]
    first = page["items"][0]
    assert set(first) == {"id", "at", "replica", "stream", "line", "run"}
    assert (first["replica"], first["stream"], first["run"]) == (0, "stdout", None)
    tail = c.get(logs, params={"environment": "development", "limit": 3}).json()
    assert [x["line"] for x in tail["items"]] == ["line 8", "line 9", "oops"]
    assert tail["more"] is True  # older lines exist before the tail
    assert c.get(logs, params={"environment": "development", "limit": 100}).json()["more"] is False
    after = c.get(logs, params={"environment": "development", "after": page["items"][7]["id"], "limit": 2}).json()
    assert [x["line"] for x in after["items"]] == ["line 8", "line 9"]
    assert after["next"] == page["items"][9]["id"]
    empty = c.get(logs, params={"environment": "development", "after": page["next"]}).json()
    assert empty == {"items": [], "next": page["next"], "more": False}
    assert c.get(logs, params={"environment": "production"}).json() == {"items": [], "next": -1, "more": False}
    error(c.get(logs), 422, field="environment")
    error(c.get(logs, params={"environment": "nowhere"}), 422, field="environment")
    error(c.get(logs, params={"environment": "development", "run": "run_0000000000000000"}), 404, field="run")
    error(c.get(f"{ORG}/projects/web/components/nothing/logs", params={"environment": "development"}), 404)


def test_follow_a_run_until_it_ends(setup: Setup) -> None:
    c, agent = setup.client, setup.agent
    dep = c.post(f"{JOB}/deployments", json={"environment": "development"}).json()
    run = c.post(f"{JOB}/runs", json={"environment": "development"}).json()
    agent.logs([_line(dep, "another run's line", run="run_" + "b" * 16)])
    events: list[dict[str, Any]] = []

    def follow() -> None:
        with httpx.stream("GET", setup.server.api + f"{JOB}/logs", headers=c.headers, timeout=60,
                          params={"environment": "development", "follow": "true", "run": run["id"]}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-ndjson")
            for line in r.iter_lines():
                if line:
                    events.append(json.loads(line))

    def states() -> list[str]:
        return [e["run"]["state"] for e in list(events) if e.get("event") == "run"]

    thread = threading.Thread(target=follow)
    thread.start()
    poll(states, lambda seen: seen == ["queued"])  # the stream is open and has said how the run stands
    base = {"id": run["id"], "deployment": dep["id"], "environment": "development", "project": "web",
            "component": "job", "trigger": "manual"}
    agent.runs([{**base, "state": "running", "startedAt": "2026-03-01T10:00:00Z"}])
    agent.logs([_line(dep, "task starting", run=run["id"])])
    poll(states, lambda seen: "running" in seen, every=0.05)  # the stream has seen the run start
    agent.runs([{**base, "state": "failed", "startedAt": "2026-03-01T10:00:00Z", "endedAt": "2026-03-01T10:00:01Z",
                 "exitCode": 3, "message": "exited with 3"}])
    agent.logs([_line(dep, "task done, exit 3", run=run["id"])])  # the last line may come after the end
    thread.join(30)
    assert not thread.is_alive(), "the stream did not end with the run"
    lines = [e["line"] for e in events if "line" in e]
    assert lines == ["task starting", "task done, exit 3"]
    seen = states()
    assert seen[0] == "queued" and seen[-1] == "failed" and "running" in seen
    assert events[-1].get("event") == "run" or events[-1].get("line") == "task done, exit 3"
    assert [x["line"] for x in c.get(f"{JOB}/logs", params={"environment": "development", "run": run["id"]})
            .json()["items"]] == lines


def test_follow_streams_new_lines(setup: Setup) -> None:
    c, agent = setup.client, setup.agent
    dep = c.post(f"{SITE}/deployments", json={"environment": "development"}).json()
    last = c.get(f"{SITE}/logs", params={"environment": "development"}).json()["next"]
    got: list[dict[str, Any]] = []
    with httpx.stream("GET", setup.server.api + f"{SITE}/logs", headers=c.headers, timeout=30,
                      params={"environment": "development", "follow": "true", "after": last}) as r:
        assert r.status_code == 200
        agent.logs([_line(dep, "fresh 1"), _line(dep, "fresh 2")])
        for line in r.iter_lines():
            if line:
                got.append(json.loads(line))
            if len(got) == 2:
                break
    assert [x["line"] for x in got] == ["fresh 1", "fresh 2"]


# -- permissions and deletion ---------------------------------------------------------------------------------------


def test_viewer_reads_developer_deploys_and_runs(setup: Setup) -> None:
    viewer = user(setup, "viewer")
    developer = user(setup, "developer", project="web")
    staging_dev = user(setup, "developer", environment="staging")
    err = error(viewer.post(f"{SITE}/deployments", json={"environment": "development"}), 403, "forbidden")
    assert "deployments:create" in err["message"]
    assert "deployments:delete" in error(viewer.delete(f"{SITE}/deployments/development"), 403)["message"]
    assert "runs:create" in error(viewer.post(f"{JOB}/runs", json={"environment": "development"}), 403)["message"]
    assert viewer.get(f"{SITE}/deployments/development").status_code == 200
    assert viewer.get(f"{SITE}/logs", params={"environment": "development"}).status_code == 200
    assert viewer.get(f"{ORG}/deployments").json()["items"]
    # production requires approval: the developer's deploy waits for the admin's
    r = developer.post(f"{SITE}/deployments", json={"environment": "production"})
    assert r.status_code == 202, r.text
    pending = r.json()["approval"]
    assert (pending["state"], pending["environment"], r.json()["deployment"]) == ("pending", "production", None)
    approved = setup.client.post(f"{ORG}/approvals/{pending['id']}/approve")
    assert approved.status_code == 201, approved.text
    assert approved.json()["deployment"]["requestedBy"].startswith("developer-")
    assert developer.post(f"{JOB}/deployments", json={"environment": "development"}).status_code in (200, 201)
    assert developer.post(f"{JOB}/runs", json={"environment": "development"}).status_code == 201
    assert developer.delete(f"{SITE}/deployments/production").status_code == 200
    # an environment-scoped developer deploys in that environment only
    assert "deployments:create" in error(staging_dev.post(f"{SITE}/deployments", json={"environment": "production"}),
                                         403)["message"]
    assert staging_dev.post(f"{SITE}/deployments", json={"environment": "staging"}).status_code == 201
    assert staging_dev.delete(f"{SITE}/deployments/staging").status_code == 200
    # someone without a role in the organization sees nothing of it
    admin = setup.client
    assert admin.post("/users", json={"name": "outsider"}).status_code == 201
    outsider = setup.server.client(admin.post("/users/outsider/tokens", json={"name": "t"}).json()["token"])
    error(outsider.get(f"{ORG}/deployments"), 403)
    error(outsider.get(f"{ORG}/endpoints"), 403)


def test_deleting_a_component_forgets_its_deployments_logs_and_runs(setup: Setup) -> None:
    c, agent = setup.client, setup.agent
    build(c, "gone", "task", {"type": "manual-task"}, app="task")
    dep = c.post(f"{ORG}/projects/gone/components/task/deployments", json={"environment": "development"}).json()
    run = c.post(f"{ORG}/projects/gone/components/task/runs", json={"environment": "development"}).json()
    assert agent.logs([_line(dep, "hello")]).json() == {"accepted": 1}
    assert c.delete(f"{ORG}/projects/gone/components/task").status_code == 200
    assert c.get(f"{ORG}/deployments", params={"project": "gone"}).json() == {"items": []}
    error(c.get(f"{ORG}/task-runs/{run['id']}"), 404)
    assert all(d["project"] != "gone" for d in agent.desired()["deployments"])
    # a component of the same name starts with nothing
    build(c, "gone", "task", {"type": "manual-task"}, app="task")
    assert c.get(f"{ORG}/projects/gone/components/task/logs", params={"environment": "development"}).json()[
        "items"] == []
    assert c.get(f"{ORG}/projects/gone/components/task/runs").json() == {"items": []}
    # and a whole project
    c.post(f"{ORG}/projects/gone/components/task/deployments", json={"environment": "development"})
    assert c.delete(f"{ORG}/projects/gone").status_code == 200
    assert c.get(f"{ORG}/deployments", params={"project": "gone"}).json() == {"items": []}
