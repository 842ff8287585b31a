"""The whole pipeline onto a Kubernetes data plane: a real control plane with a registry, a real build pushing its
image, `cellplane dataplane run --kubernetes` as a process against the test cluster (tests/kubecluster.py), and
an organization whose development environment is bound to another data plane and staging to the Kubernetes one.
Promotion moves the same build, by the same image digest, into the cluster; the deployment is ready (kwok's fake
node runs the pod) with the URLs of the gateways the agent was given."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from buildkit import BuildServer
from cellplane.kubernetes import names
from dataplanekit import AgentProcess, build_app, deploy, poll, service, wait_state
from kubecluster import KubeCluster, KubeError
from liveserver import CELLPLANE, doc
from registrykit import BASE_REPOSITORY, BASE_TAG, LocalRegistry

ORG = "/organizations/default"
EXTERNAL = "https://apps.kube.test"


@pytest.fixture(scope="module")
def kube_agent(build_server: BuildServer, registry: LocalRegistry, kube_cluster: KubeCluster,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    c = build_server.client
    r = c.post("/apply", json={"documents": [
        doc("Organization", "default", {"registry": {"url": registry.url,
                                                     "baseImages": {"python": f"{BASE_REPOSITORY}:{BASE_TAG}"}}}),
        doc("DataPlane", "home", {}, organization="default"),
        doc("DataPlane", "kube", {}, organization="default"),
        doc("Environment", "development", {"dataPlane": "home"}, organization="default"),
        doc("Environment", "staging", {"dataPlane": "kube"}, organization="default"),
    ]})
    assert r.status_code == 200, r.text
    try:
        kube_cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": "cellplane-system"}})
    except KubeError as e:
        if e.status != 409:
            raise
    data = tmp_path_factory.mktemp("kube-dp") / "data"
    data.mkdir(parents=True)
    log_path = data.parent / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env.update({"CELLPLANE_TOKEN": build_server.server.admin_token, "CELLPLANE_CONFIG": os.devnull + ".none"})
    process = subprocess.Popen(
        [str(CELLPLANE), "dataplane", "run", "--controlplane", build_server.server.url, "--data-dir", str(data),
         "--kubernetes", "--kubeconfig", str(kube_cluster.kubeconfig), "--name", "kube", "--no-bind",
         "--external-url", EXTERNAL, "--internal-url", "http://gateway.internal.kube.test"],
        stdout=log_path.open("a"), stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True)
    agent = AgentProcess(process, data, log_path)
    try:
        poll(lambda: process.poll() is None and agent.gateway("staging"), bool, timeout=60)
    except AssertionError:
        agent.stop()
        raise AssertionError(f"the agent did not report staging's gateways:\n{agent.log()[-3000:]}") from None
    try:
        yield agent
    finally:
        agent.stop()
        # the routes stay with the stopped agent (the cluster keeps serving); the session's other modules expect none
        kube_cluster.delete("/apis/gateway.networking.k8s.io/v1/namespaces/cellplane-system/httproutes"
                            f"?labelSelector={names.DATA_PLANE}%3Dkube")


def test_a_build_promoted_from_another_data_plane_runs_in_the_cluster_by_the_same_digest_with_its_urls(
        build_server: BuildServer, kube_agent: AgentProcess, kube_cluster: KubeCluster) -> None:
    c = build_server.client
    build = build_app(c, "kpipe", "echo", service(8080))
    image: dict[str, Any] = build["image"]
    deploy(c, "kpipe", "echo", "development", build=build["id"])
    r = c.post(f"{ORG}/projects/kpipe/components/echo/promotions", json={"from": "development", "to": "staging"})
    assert r.status_code in (200, 201), r.text
    staged = wait_state(c, "kpipe", "echo", env="staging", timeout=120)
    assert staged["dataPlane"] == "kube"
    assert staged["endpoints"][0]["urls"]["external"] == f"{EXTERNAL}/kpipe/echo/v1"
    assert [r["state"] for r in staged["replicas"]] == ["ready"]
    assert c.get(f"{ORG}/dataplanes/kube").json()["spec"]["type"] == "kubernetes"

    namespace = names.namespace("default", "kpipe", "staging")
    running = kube_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{names.workload('echo', 'v1')}")
    assert running["spec"]["template"]["spec"]["containers"][0]["image"] == image["reference"]
    developed = c.get(f"{ORG}/dataplanes/home/desired-state", params={"wait": 0}).json()
    [dev] = [d for d in developed["deployments"] if d["component"] == "echo"]
    assert dev["artifact"]["image"] == image["reference"]  # build once, deploy many: the same digest
    assert "@" + image["digest"] in image["reference"]
