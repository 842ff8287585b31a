"""The whole pipeline across data plane types: a real control plane with a registry, a real build pushing its
image, development served by a local agent (`cellplane dataplane run`, the workloads as local processes behind its
gateway), staging and production by `cellplane dataplane run --kubernetes` as a process against the test cluster
(tests/kubecluster.py; the agent is tests/kubeagentkit.py's ``kube_agent``). Build once, deploy many: the build
answers through the local gateway, promotion moves the same image digest into the cluster (ready on kwok's fake
node, with the URLs of the gateways the agent was given), production waits for someone else's approval, and a
rollback in staging puts the first digest back."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, BuildServer, failed_why, upload, wait
from cellplane.kubernetes import names
from dataplanekit import AgentProcess, build_app, deploy, deployment, poll, service, start_agent, wait_state
from kubeagentkit import EXTERNAL
from kubecluster import KubeCluster, KubeError
from liveserver import as_json, ok, run_cli

ORG = "/organizations/default"


@pytest.fixture(scope="module")
def home_agent(build_server: BuildServer, kube_agent: AgentProcess,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """The local data plane "home" (development): a real agent process running the workloads on this machine."""
    agent = start_agent(build_server.server, tmp_path_factory.mktemp("home-dp") / "data", build_server.cache,
                        "--name", "home", "--no-bind")
    try:
        yield agent
    finally:
        agent.stop()


def answer(agent: AgentProcess, project: str, name: str, release: str, timeout: float = 60) -> dict[str, Any]:
    """The JSON answer of the component through the agent's development gateway (real HTTP on 127.0.0.1), once it
    is the one of ``release`` (retried while the route is being swapped in)."""
    address = f"{agent.gateway('development')['external']}/{project}/{name}/v1/"

    def fetch() -> dict[str, Any]:
        try:
            r = httpx.get(address, timeout=10)
            return r.json() if r.status_code == 200 else {"status": r.status_code}
        except (httpx.HTTPError, ValueError) as e:
            return {"error": repr(e)}
    return dict(poll(fetch, lambda body: body.get("release") == release, timeout=timeout))


def image_in_cluster(cluster: KubeCluster, env: str, name: str) -> str:
    namespace = names.namespace("default", "kpipe", env)
    running = cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{names.workload(name, 'v1')}")
    return str(running["spec"]["template"]["spec"]["containers"][0]["image"])


def test_one_build_answers_on_the_local_data_plane_and_runs_in_the_cluster_by_its_digest_through_approval_and_rollback(
        build_server: BuildServer, kube_agent: AgentProcess, home_agent: AgentProcess, kube_cluster: KubeCluster,
        tmp_path: Path) -> None:
    c = build_server.client
    comp = f"{ORG}/projects/kpipe/components/echo"
    build = build_app(c, "kpipe", "echo", service(8080))
    shown = as_json(ok(run_cli(build_server.server, "build", "show", build["id"], "-o", "json")))
    image: dict[str, Any] = shown["image"]
    assert image == build["image"] and "@" + image["digest"] in image["reference"]

    # development: the local agent runs it as a local process, answering through its gateway
    dev = deploy(c, "kpipe", "echo", "development", build=build["id"])
    developed = wait_state(c, "kpipe", "echo", env="development")
    assert developed["dataPlane"] == "home"
    assert answer(home_agent, "kpipe", "echo", dev["rollout"])["app"] == "echo"
    assert not kube_agent.gateway("development")  # the Kubernetes agent serves no development

    # staging: the same image digest in the cluster's Deployment, ready on kwok's node, with its URL
    r = c.post(f"{comp}/promotions", json={"from": "development", "to": "staging"})
    assert r.status_code in (200, 201), r.text
    staged = wait_state(c, "kpipe", "echo", env="staging", timeout=120)
    assert staged["dataPlane"] == "kube"
    assert staged["endpoints"][0]["urls"]["external"] == f"{EXTERNAL}/kpipe/echo/v1"
    assert [r["state"] for r in staged["replicas"]] == ["ready"]
    assert c.get(f"{ORG}/dataplanes/kube").json()["spec"]["type"] == "kubernetes"
    assert c.get(f"{ORG}/dataplanes/home").json()["spec"].get("type", "local") == "local"
    assert image_in_cluster(kube_cluster, "staging", "echo") == image["reference"]
    assert answer(home_agent, "kpipe", "echo", dev["rollout"])["release"] == dev["rollout"]  # development still answers

    # production: someone asks, nothing runs in the cluster until someone else approves; then the same digest
    requester = f"developer-{uuid.uuid4().hex[:6]}"
    assert c.post("/users", json={"name": requester}).status_code == 201
    token = c.post(f"/users/{requester}/tokens", json={"name": "t"}).json()["token"]
    assert c.post(f"{ORG}/rolebindings", json={"user": requester, "role": "developer"}).status_code == 201
    r = build_server.server.client(token).post(f"{comp}/promotions", json={"from": "staging", "to": "production"})
    assert r.status_code == 202, r.text
    pending = r.json()["approval"]
    assert pending["state"] == "pending"
    assert c.get(f"{comp}/deployments/production").status_code == 404
    with pytest.raises(KubeError) as absent:
        image_in_cluster(kube_cluster, "production", "echo")
    assert absent.value.status == 404
    approved = c.post(f"{ORG}/approvals/{pending['id']}/approve")
    assert approved.status_code == 201, approved.text
    produced = wait_state(c, "kpipe", "echo", env="production", timeout=120)
    assert (produced["dataPlane"], [r["state"] for r in produced["replicas"]]) == ("kube", ["ready"])
    assert produced["artifact"] == staged["artifact"] == developed["artifact"]
    assert image_in_cluster(kube_cluster, "production", "echo") == image["reference"]

    # a second build (one file changed) along development -> staging, then staging rolls back to the first
    changed = tmp_path / "echo"
    shutil.copytree(APPS / "echo", changed)
    (changed / "VERSION").write_text("2\n")
    second = wait(c, upload(c, "kpipe", "echo", changed))
    assert second["state"] == "succeeded", failed_why(c, second)
    assert second["image"]["digest"] != image["digest"]
    dev2 = deploy(c, "kpipe", "echo", "development", build=second["id"])
    assert answer(home_agent, "kpipe", "echo", dev2["rollout"])["release"] == dev2["rollout"]
    assert c.post(f"{comp}/promotions", json={"from": "development", "to": "staging"}).status_code in (200, 201)
    wait_state(c, "kpipe", "echo", env="staging", timeout=120)
    assert image_in_cluster(kube_cluster, "staging", "echo") == second["image"]["reference"]
    out = c.post(f"{comp}/deployments/staging/rollback", json={"to": staged["release"]})
    assert out.status_code == 200 and out.json()["action"] == "updated", out.text
    back = wait_state(c, "kpipe", "echo", env="staging", timeout=120)
    assert (back["release"], back["artifact"]) == (staged["release"], staged["artifact"])
    assert image_in_cluster(kube_cluster, "staging", "echo") == image["reference"]
    assert image_in_cluster(kube_cluster, "production", "echo") == image["reference"]  # production untouched
    assert deployment(c, "kpipe", "echo", "development")["release"] == dev2["release"]
