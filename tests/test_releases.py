"""Releases through a real control plane and a real data plane: promotion along the pipeline, approvals by someone
else, rollback of artifact and configuration, two tracks served at once, auto-deploy, and preview environments."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, BuildServer, component, upload, wait
from dataplanekit import AgentProcess, build_app, deploy, deployment, service, wait_state
from liveserver import fails, ok, run_cli

ORG = "/organizations/default"


@pytest.fixture(autouse=True)
def _plane(dataplane: AgentProcess) -> None:
    """Every test here needs the module's data plane running."""


def comp(project: str, name: str) -> str:
    return f"{ORG}/projects/{project}/components/{name}"


def url(agent: AgentProcess, project: str, name: str, version: str = "v1", env: str = "development",
        timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not agent.gateway(env).get("external"):
        assert time.monotonic() < deadline, f"no gateway for {env}: {agent.status()}"
        time.sleep(0.2)
    return f"{agent.gateway(env)['external']}/{project}/{name}/{version}/"


def get(address: str, timeout: float = 30) -> dict[str, Any]:
    """The JSON answer of a routed URL, retried while the route is being swapped in."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(address, timeout=10)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{address} does not answer 200"
        time.sleep(0.2)


def answers_with(address: str, key: str, value: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = get(address, timeout)
        if body.get(key) == value:
            return body
        assert time.monotonic() < deadline, f"{address}: {key} is {body.get(key)!r}, not {value!r}"
        time.sleep(0.3)


def user(c: httpx.Client, server: Any, role: str, **scope: str) -> tuple[str, httpx.Client, str]:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    assert c.post("/users", json={"name": name}).status_code == 201
    token = c.post(f"/users/{name}/tokens", json={"name": "t"}).json()["token"]
    r = c.post(f"{ORG}/rolebindings", json={"user": name, "role": role, **scope})
    assert r.status_code == 201, r.text
    return name, server.client(token), token


def problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    if code:
        assert body["code"] == code, body
    return body


def history(c: httpx.Client, project: str, name: str, **params: Any) -> list[dict[str, Any]]:
    r = c.get(comp(project, name) + "/releases", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


# -- promotion and approvals ----------------------------------------------------------------------------------------


def test_promotion_only_along_the_pipeline_with_the_target_configuration(build_server: BuildServer,
                                                                         dataplane: AgentProcess) -> None:
    c = build_server.client
    build_app(c, "promo", "api", service(8080, configuration={"env": [
        {"name": "GREETING", "value": "hello", "environments": {"staging": "hello from staging"}}]}))
    dev = deploy(c, "promo", "api")
    wait_state(c, "promo", "api")
    assert answers_with(url(dataplane, "promo", "api"), "greeting", "hello")["release"] == dev["rollout"]

    # not a path of the default pipeline (development → staging → production)
    r = c.post(comp("promo", "api") + "/promotions", json={"from": "development", "to": "production"})
    err = problem(r, 422)
    assert [d["field"] for d in err["details"]] == ["to"]
    assert "development → staging" in err["message"]
    problem(c.post(comp("promo", "api") + "/promotions", json={"from": "staging", "to": "production"}), 409,
            "not-deployed")
    problem(c.post(comp("promo", "api") + "/promotions", json={"from": "development", "to": "nowhere"}), 404)
    assert c.get(comp("promo", "api") + "/deployments/production").status_code == 404  # nothing changed

    # along the path, with the CLI: the same artifact, with staging's configuration
    result = ok(run_cli(build_server.server, "promote", "api", "-p", "promo", "--from", "development",
                        "--to", "staging"))
    assert "Deployed api" in result.stdout and "/promo/api/v1" in result.stdout
    staged = wait_state(c, "promo", "api", env="staging")
    assert staged["artifact"] == dev["artifact"] and staged["build"] == dev["build"]
    assert staged["release"] != dev["release"]
    assert answers_with(url(dataplane, "promo", "api", env="staging"), "greeting", "hello from staging")
    again = c.post(comp("promo", "api") + "/promotions", json={"from": "development", "to": "staging"})
    assert again.status_code == 200 and again.json()["action"] == "unchanged"

    events = history(c, "promo", "api")
    assert [(e["environment"], e["action"], e["current"]) for e in events] == [
        ("staging", "promote", True), ("development", "deploy", True)]
    assert events[0]["note"] == f"from development ({dev['release']})"
    shown = ok(run_cli(build_server.server, "releases", "api", "-p", "promo", "--env", "staging")).stdout
    rows = shown.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[:4] == ["*", staged["release"], "staging", "default"]


def test_production_waits_for_the_approval_of_someone_else(build_server: BuildServer,
                                                           dataplane: AgentProcess) -> None:
    c = build_server.client
    build_app(c, "gate", "api", service(8080))
    deploy(c, "gate", "api")
    deploy(c, "gate", "api", "staging")
    dev_name, developer, dev_token = user(c, build_server.server, "developer")
    approver_name, approver, _ = user(c, build_server.server, "approver", environment="production")
    _, staging_approver, _ = user(c, build_server.server, "approver", environment="staging")

    # the developer asks; nothing runs in production yet
    r = developer.post(comp("gate", "api") + "/promotions", json={"from": "staging", "to": "production"})
    assert r.status_code == 202, r.text
    request = r.json()["approval"]
    assert (request["state"], request["requestedBy"], request["from"]) == ("pending", dev_name, "staging")
    problem(c.get(comp("gate", "api") + "/deployments/production"), 404)
    listed = ok(run_cli(build_server.server, "approvals")).stdout
    assert request["id"] in listed and dev_name in listed

    # never the requester, not even with the approver's permission elsewhere; not someone without it
    said = fails(run_cli(build_server.server, "approve", request["id"], token=dev_token))
    assert "deployments:approve" in said
    problem(staging_approver.post(f"{ORG}/approvals/{request['id']}/approve"), 403)
    assert c.post(f"{ORG}/rolebindings", json={"user": dev_name, "role": "approver"}).status_code == 201
    own = problem(developer.post(f"{ORG}/approvals/{request['id']}/approve"), 403, "own-request")
    assert "someone else" in own["message"]
    problem(c.get(comp("gate", "api") + "/deployments/production"), 404)

    # the approver approves: it runs
    r = approver.post(f"{ORG}/approvals/{request['id']}/approve")
    assert r.status_code == 201, r.text
    assert r.json()["deployment"]["requestedBy"] == dev_name
    prod = wait_state(c, "gate", "api", env="production")
    assert get(url(dataplane, "gate", "api", env="production"))["release"] == prod["rollout"]
    problem(approver.post(f"{ORG}/approvals/{request['id']}/approve"), 409, "not-pending")

    # a deploy into production asks too; a rejection says why and changes nothing
    r = developer.post(comp("gate", "api") + "/deployments", json={"environment": "production",
                                                                  "build": prod["build"]["id"]})
    assert r.status_code == 200 and r.json()["release"] == prod["release"]  # the same release: nothing to ask
    c.put(comp("gate", "api") + "/config/MODE", json={"value": "strict"}, params={"env": "production"})
    assert deployment(c, "gate", "api", "production")["release"] == prod["release"]  # waits for approval
    r = developer.post(comp("gate", "api") + "/deployments", json={"environment": "production"})
    assert r.status_code == 202, r.text
    second = r.json()["approval"]
    problem(approver.post(f"{ORG}/approvals/{second['id']}/reject", json={"reason": ""}), 422)
    rejected = approver.post(f"{ORG}/approvals/{second['id']}/reject", json={"reason": "freeze until Monday"})
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert deployment(c, "gate", "api", "production")["release"] == prod["release"]
    every = {a["id"]: a for a in c.get(f"{ORG}/approvals", params={"state": "all"}).json()["items"]}
    assert every[second["id"]]["reason"] == "freeze until Monday"
    assert every[request["id"]]["decidedBy"] == approver_name

    # reading production's release needs config:read there; an undeploy supersedes what was pending
    _, dev_env_only, _ = user(c, build_server.server, "developer", environment="development")
    problem(dev_env_only.get(f"{ORG}/releases/{prod['release']}"), 403)
    assert approver.get(f"{ORG}/releases/{prod['release']}").status_code == 200
    third = developer.post(comp("gate", "api") + "/deployments", json={"environment": "production"}).json()
    assert third["approval"]["state"] == "pending"
    assert c.delete(comp("gate", "api") + "/deployments/production").status_code == 200
    assert c.get(f"{ORG}/approvals/{third['approval']['id']}").json()["state"] == "superseded"
    problem(approver.post(f"{ORG}/approvals/{third['approval']['id']}/approve"), 409, "not-pending")

    audit = c.get("/audit", params={"organization": "default", "limit": 200}).json()["items"]
    seen = {(e["action"], e["outcome"], e["actor"]) for e in audit}
    assert ("approval.approve", "denied", dev_name) in seen
    assert ("approval.approve", "succeeded", approver_name) in seen
    assert ("approval.reject", "succeeded", approver_name) in seen
    assert ("promote", "succeeded", dev_name) in seen


# -- rollback -------------------------------------------------------------------------------------------------------


def test_rollback_restores_the_previous_artifact_and_configuration(build_server: BuildServer,
                                                                  dataplane: AgentProcess, tmp_path: Path) -> None:
    c = build_server.client
    first_build = build_app(c, "back", "api", service(8080))
    assert c.put(comp("back", "api") + "/config/GREETING", json={"value": "one"}).status_code in (200, 201)
    assert c.put(comp("back", "api") + "/config/TOKEN", json={"value": "s3cret-one", "secret": True}).status_code \
        in (200, 201)
    r1 = deploy(c, "back", "api")
    address = url(dataplane, "back", "api")
    answers_with(address, "greeting", "one")

    changed = tmp_path / "echo"
    shutil.copytree(APPS / "echo", changed)
    (changed / "VERSION").write_text("2\n")
    second_build = wait(c, upload(c, "back", "api", changed))
    assert second_build["artifact"] != first_build["artifact"]
    r2 = deploy(c, "back", "api", build=second_build["id"])
    assert r2["release"] != r1["release"]
    # a configuration change in development is a new release of the same artifact (one per change)
    c.put(comp("back", "api") + "/config/TOKEN", json={"value": "s3cret-two", "secret": True})
    r3a = deployment(c, "back", "api")
    c.put(comp("back", "api") + "/config/GREETING", json={"value": "two"})
    r3 = deployment(c, "back", "api")
    assert r3["artifact"] == second_build["artifact"]
    assert len({r1["release"], r2["release"], r3a["release"], r3["release"]}) == 4
    answers_with(address, "greeting", "two")

    # the previous release: artifact 2, with the configuration it had
    result = ok(run_cli(build_server.server, "rollback", "api", "-p", "back", "--env", "development"))
    assert "Deployed api" in result.stdout
    back = deployment(c, "back", "api")
    assert (back["release"], back["artifact"]) == (r3a["release"], second_build["artifact"])
    answers_with(address, "greeting", "one")
    assert get(address + "env?name=TOKEN")["value"] == "s3cret-two"
    # and release 1 by name: artifact 1 and its secret
    out = c.post(comp("back", "api") + "/deployments/development/rollback", json={"to": r1["release"]})
    assert out.status_code == 200 and out.json()["action"] == "updated", out.text
    wait_state(c, "back", "api")
    back = deployment(c, "back", "api")
    assert (back["release"], back["artifact"]) == (r1["release"], first_build["artifact"])
    body = answers_with(address, "release", back["rollout"])
    assert body["greeting"] == "one"
    assert get(address + "env?name=TOKEN")["value"] == "s3cret-one"
    assert [e["action"] for e in history(c, "back", "api", environment="development")] == [
        "rollback", "rollback", "update", "update", "deploy", "deploy"]

    # only to a release that ran there
    problem(c.post(comp("back", "api") + "/deployments/development/rollback", json={"to": "rffffffffff"}), 404)
    staged = deploy(c, "back", "api", "staging")
    err = problem(c.post(comp("back", "api") + "/deployments/development/rollback",
                         json={"to": staged["release"]}), 422)
    assert [d["field"] for d in err["details"]] == ["to"]

    # diff: configuration keys and the artifact, never a secret's value
    d = c.get(f"{ORG}/releases/{r1['release']}/diff/{r3['release']}").json()
    assert d["artifact"] == {"from": first_build["artifact"], "to": second_build["artifact"]}
    conf = {x["key"]: x for x in d["configuration"]}
    assert conf["GREETING"] == {"key": "GREETING", "change": "changed", "secret": False, "from": "one", "to": "two"}
    assert conf["TOKEN"] == {"key": "TOKEN", "change": "changed", "secret": True}
    shown = ok(run_cli(build_server.server, "diff", r1["release"], r3["release"])).stdout
    assert "GREETING: one → two" in shown and "TOKEN: secret changed" in shown
    release = c.get(f"{ORG}/releases/{r1['release']}").json()
    every = str(d) + shown + str(release) + str(history(c, "back", "api"))
    assert "s3cret" not in every
    assert {x["key"]: x["value"] for x in release["configuration"]} == {"GREETING": "one", "TOKEN": "********"}
    db = (build_server.server.data_dir / "cellplane.db").read_bytes()
    assert b"s3cret-one" not in db and b"s3cret-two" not in db


def test_deploying_the_same_release_twice_changes_nothing(build_server: BuildServer, dataplane: AgentProcess) -> None:
    c = build_server.client
    build_app(c, "same", "api", service(8080))
    first = deploy(c, "same", "api")
    ready = wait_state(c, "same", "api")
    pid = ready["replicas"][0]["pid"]
    result = ok(run_cli(build_server.server, "deploy", "api", "-p", "same", "--env", "development"))
    assert first["release"] in result.stdout
    again = deployment(c, "same", "api")
    assert (again["release"], again["updatedAt"], again["replicas"][0]["pid"]) == (first["release"],
                                                                                  first["updatedAt"], pid)
    assert len(history(c, "same", "api")) == 1


# -- tracks ---------------------------------------------------------------------------------------------------------


def test_two_tracks_are_served_at_once_and_the_newest_minor_version_wins(build_server: BuildServer,
                                                                         dataplane: AgentProcess) -> None:
    c = build_server.client
    component(c, "tracks", "api", service(8080, tracks=[
        {"name": "main", "version": "2.0", "autoDeploy": True},
        {"name": "release-1.x", "version": "v1.3"},
        {"name": "release-1.2", "version": "1.2"}]))
    # a build of main deploys itself to the pipeline's first environment
    main = wait(c, upload(c, "tracks", "api", APPS / "echo", track="main"))
    assert main["state"] == "succeeded"
    deadline = time.monotonic() + 30
    while c.get(comp("tracks", "api") + "/deployments/development").status_code != 200:
        assert time.monotonic() < deadline, "main was not auto-deployed"
        time.sleep(0.3)
    v2 = wait_state(c, "tracks", "api", track="main")
    assert (v2["track"], v2["version"], v2["build"]["id"]) == ("main", "2.0", main["id"])
    assert history(c, "tracks", "api")[0]["action"] == "auto-deploy"

    for track in ("release-1.2", "release-1.x"):
        assert wait(c, upload(c, "tracks", "api", APPS / "echo", track=track))["state"] == "succeeded"
    old = deploy(c, "tracks", "api", track="release-1.2")
    wait_state(c, "tracks", "api", track="release-1.2")
    v1_url, v2_url = url(dataplane, "tracks", "api", "v1"), url(dataplane, "tracks", "api", "v2")
    assert get(v1_url)["release"] == old["rollout"] and get(v2_url)["release"] == v2["rollout"]

    # 1.3 replaces 1.2 on v1; v2 stays
    new = deploy(c, "tracks", "api", track="release-1.x")
    wait_state(c, "tracks", "api", track="release-1.x")
    answers_with(v1_url, "release", new["rollout"])
    assert get(v2_url)["release"] == v2["rollout"]
    superseded = deployment(c, "tracks", "api", track="release-1.2")
    assert superseded["state"] == "superseded" and "release-1.x (version 1.3) serves v1" in superseded["message"]
    err = problem(c.get(comp("tracks", "api") + "/deployments/development"), 422)
    assert [d["field"] for d in err["details"]] == ["track"]
    endpoints = c.get(f"{ORG}/endpoints", params={"project": "tracks"}).json()["items"]
    assert {(e["track"], re.search(r"/api/(v[0-9]+)", e["urls"]["external"]).group(1)) for e in endpoints} == {
        ("main", "v2"), ("release-1.x", "v1"), ("release-1.2", "v1")}

    # undeploying 1.3 gives v1 back to 1.2
    ok(run_cli(build_server.server, "undeploy", "api", "-p", "tracks", "--env", "development",
               "--track", "release-1.x"))
    answers_with(v1_url, "release", old["rollout"])


# -- previews -------------------------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin:/usr/local/bin",
                        "HOME": str(repo)})


def test_a_preview_environment_is_created_and_fully_removed(build_server: BuildServer, dataplane: AgentProcess,
                                                            tmp_path: Path) -> None:
    c = build_server.client
    repo = tmp_path / "repo"
    shutil.copytree(APPS / "echo", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "main")
    git(repo, "checkout", "-q", "-b", "feature/login")
    (repo / "FEATURE").write_text("login\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feature")
    component(c, "pre", "api", service(8080, source={"repository": str(repo), "branch": "main"}))
    component(c, "pre", "upl", service(8080))  # uploaded sources: no branches to preview

    result = run_cli(build_server.server, "preview", "create", "-p", "pre", "-b", "feature/login")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = c.get(f"{ORG}/projects/pre/previews").json()["items"]
    assert len(listed) == 1
    preview = listed[0]
    env = preview["environment"]
    assert env.startswith("pv-pre-feature-login-") and env in result.stdout
    skipped = {b["component"]: b.get("skipped") for b in preview["builds"]}
    assert skipped["upl"] and skipped["api"] is None
    dep = wait_state(c, "pre", "api", env=env)
    assert dep["track"] == "feature/login"
    build = c.get(f"{ORG}/builds/{dep['build']['id']}").json()
    assert build["source"]["branch"] == "feature/login"
    assert get(url(dataplane, "pre", "api", env=env))["release"] == dep["rollout"]
    problem(c.post(f"{ORG}/projects/pre/previews", json={"branch": "feature/login"}), 409, "already-exists")
    environment = c.get(f"{ORG}/environments/{env}").json()
    assert environment["spec"]["dataPlane"] == "local" and environment["spec"]["requiresApproval"] is False

    gone = ok(run_cli(build_server.server, "preview", "delete", "-p", "pre", "-b", "feature/login")).stdout
    assert f"environment/{env} deleted" in gone and f"deployment/api@{env} deleted" in gone
    assert c.get(f"{ORG}/environments/{env}").status_code == 404
    assert c.get(f"{ORG}/deployments", params={"environment": env}).json()["items"] == []
    assert c.get(f"{ORG}/projects/pre/previews").json()["items"] == []
    assert c.get(f"{ORG}/builds/{dep['build']['id']}").status_code == 404
    assert history(c, "pre", "api") == []
    deadline = time.monotonic() + 30
    while dataplane.gateway(env):
        assert time.monotonic() < deadline, "the data plane still serves the preview environment"
        time.sleep(0.3)
    problem(c.delete(f"{ORG}/projects/pre/previews", params={"branch": "feature/login"}), 404)
