"""The Kubernetes data plane as a process, for tests and benchmarks: an organization whose development runs on a
local data plane ("home") and staging/production on a Kubernetes one ("kube"), with a registry for the build's
images, and `cellplane dataplane run --kubernetes` as a real process against the test cluster (tests/kubecluster.py)
long-polling the control plane for its desired state.

``kube_agent`` (module scope; registered as a plugin in conftest.py) is that agent next to the module's
``build_server`` and ``registry``; ``start_kube_agent`` starts one anywhere (the benchmarks do). Starting takes a
second or two: the agent registers, binds nothing (the environments name their data plane) and reports staging's
gateways once it has reconciled.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildkit import BuildServer
from cellplane.kubernetes import names
from dataplanekit import AgentProcess
from kubecluster import KubeCluster, KubeError
from liveserver import CELLPLANE, LiveServer, doc
from registrykit import BASE_REPOSITORY, BASE_TAG, LocalRegistry

EXTERNAL = "https://apps.kube.test"  # the gateways' URLs the agent is given (no listener: reported as is)
INTERNAL = "http://gateway.internal.kube.test"


def pipeline_documents(registry_url: str) -> list[dict[str, Any]]:
    """Organization "default" with ``registry_url`` (and the tiny Python base image pushed there), data planes
    "home" (local) and "kube", development on home, staging and production (approval required) on kube."""
    return [
        doc("Organization", "default", {"registry": {"url": registry_url,
                                                     "baseImages": {"python": f"{BASE_REPOSITORY}:{BASE_TAG}"}}}),
        doc("DataPlane", "home", {}, organization="default"),
        doc("DataPlane", "kube", {}, organization="default"),
        doc("Environment", "development", {"dataPlane": "home"}, organization="default"),
        doc("Environment", "staging", {"dataPlane": "kube"}, organization="default"),
        doc("Environment", "production", {"dataPlane": "kube", "production": True}, organization="default"),
    ]


def system_namespace(cluster: KubeCluster) -> None:
    """The agent's own namespace (where it keeps its inventory and the gateways' routes), once."""
    try:
        cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": "cellplane-system"}})
    except KubeError as e:
        if e.status != 409:
            raise


def start_kube_agent(server: LiveServer, cluster: KubeCluster, data_dir: Path, name: str = "kube",
                     environment: str = "staging", timeout: float = 60) -> AgentProcess:
    """`cellplane dataplane run --kubernetes --name NAME` against ``cluster``, its output in ``agent.log`` beside
    ``data_dir``; returns once it reports ``environment``'s gateways (RuntimeError with its log otherwise)."""
    system_namespace(cluster)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env.update({"CELLPLANE_TOKEN": server.admin_token, "CELLPLANE_CONFIG": os.devnull + ".none"})
    process = subprocess.Popen(
        [str(CELLPLANE), "dataplane", "run", "--controlplane", server.url, "--data-dir", str(data_dir),
         "--kubernetes", "--kubeconfig", str(cluster.kubeconfig), "--name", name, "--no-bind",
         "--external-url", EXTERNAL, "--internal-url", INTERNAL],
        stdout=log_path.open("a"), stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True)
    agent = AgentProcess(process, data_dir, log_path)
    deadline = time.monotonic() + timeout
    while not agent.gateway(environment):
        if process.poll() is not None or time.monotonic() > deadline:
            agent.stop()
            raise RuntimeError(f"the Kubernetes agent did not report {environment}'s gateways "
                               f"(exit code {process.returncode}):\n{agent.log()[-3000:]}")
        time.sleep(0.1)
    return agent


@pytest.fixture(scope="module")
def kube_agent(build_server: BuildServer, registry: LocalRegistry, kube_cluster: KubeCluster,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """The module's control plane set up with ``pipeline_documents`` and the Kubernetes agent "kube" serving its
    staging and production; at the end its routes are deleted (the session's other modules expect none)."""
    r = build_server.client.post("/apply", json={"documents": pipeline_documents(registry.url)})
    assert r.status_code == 200, r.text
    agent = start_kube_agent(build_server.server, kube_cluster, tmp_path_factory.mktemp("kube-dp") / "data")
    try:
        yield agent
    finally:
        agent.stop()
        # the routes stay with the stopped agent (the cluster keeps serving)
        kube_cluster.delete("/apis/gateway.networking.k8s.io/v1/namespaces/cellplane-system/httproutes"
                            f"?labelSelector={names.DATA_PLANE}%3Dkube")
