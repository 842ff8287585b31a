"""The Kubernetes runtime driven from tests and benchmarks: an in-memory ``RuntimeHost`` (what the runtime hands
back is gathered), an asyncio loop in a thread (the runtime's background work goes on between calls, as in the
agent), a handle on a runtime and its cluster (``Kube``), the data plane's objects read back by label, and desired
states written with ``desiredkit``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.contract import AccessLineSent, DeploymentReport, DesiredState, LogLineSent, TaskRunSent
from cellplane.dataplane.localstate import LocalState
from cellplane.kubernetes import names
from cellplane.kubernetes.runtime import KubernetesRuntime
from desiredkit import state_wire
from kubecluster import KubeCluster

T = TypeVar("T")
IMAGE = "registry.cellplane.test/acme/shop-api@sha256:" + "ab" * 32
PLANE = "kube-test"
KINDS = {"Namespace": "/api/v1/namespaces", "NetworkPolicy": "/apis/networking.k8s.io/v1/networkpolicies",
         "ConfigMap": "/api/v1/configmaps", "Secret": "/api/v1/secrets", "Service": "/api/v1/services",
         "Deployment": "/apis/apps/v1/deployments", "CronJob": "/apis/batch/v1/cronjobs", "Job": "/apis/batch/v1/jobs",
         "Gateway": "/apis/gateway.networking.k8s.io/v1/gateways",
         "HTTPRoute": "/apis/gateway.networking.k8s.io/v1/httproutes"}


class Host:
    """The agent's ``RuntimeHost``, in memory: its data directory and key, and everything the runtime hands back
    (log lines, task runs, access lines, metrics points, spans; ``changes`` counts the status nudges)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.state = LocalState(root)
        self.key = X25519PrivateKey.generate()
        self.logs: list[LogLineSent] = []
        self.runs: list[TaskRunSent] = []
        self.access: list[AccessLineSent] = []
        self.metrics: list[Any] = []
        self.spans: list[Any] = []
        self.changes = 0

    def fetch_artifact(self, project: str, digest: str, dest: Path) -> None:
        raise AssertionError("a Kubernetes data plane runs images, never artifacts")

    def changed(self) -> None:
        self.changes += 1

    def reconcile_later(self, seconds: float) -> None:
        pass

    def log(self, line: LogLineSent) -> None:
        self.logs.append(line)

    def task_run(self, report: TaskRunSent) -> None:
        self.runs.append(report)

    def access_line(self, line: AccessLineSent) -> None:
        self.access.append(line)

    def metric(self, point: Any) -> None:
        self.metrics.append(point)

    def span(self, span: Any) -> None:
        self.spans.append(span)


class Loop:
    """An asyncio loop in a thread: the runtime's background work goes on between the tests' calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="kube-runtime-loop")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Kube:
    def __init__(self, cluster: KubeCluster, runtime: KubernetesRuntime, host: Host, loop: Loop) -> None:
        self.cluster, self.runtime, self.host, self.loop = cluster, runtime, host, loop

    def apply(self, state: DesiredState) -> None:
        self.loop.run(self.runtime.apply(state))

    def report(self, deployment: str) -> DeploymentReport | None:
        status = self.loop.run(self.runtime.status())
        return next((d for d in status.deployments if d.id == deployment), None)

    def wait_report(self, deployment: str, check: Callable[[DeploymentReport], bool], what: str,
                    timeout: float = 90) -> DeploymentReport:
        def probe() -> DeploymentReport | None:
            report = self.report(deployment)
            return report if report is not None and check(report) else None
        try:
            return self.cluster.wait_for(what, probe, timeout)
        except AssertionError:
            raise AssertionError(f"{what}; last report: {self.report(deployment)}") from None


def managed(cluster: KubeCluster, plane: str = PLANE) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every object labelled as data plane ``plane``'s, by (kind, namespace, name)."""
    selector = f"{names.DATA_PLANE}={plane}"
    out = {}
    for kind, path in KINDS.items():
        for obj in cluster.get(f"{path}?labelSelector={selector}")["items"]:
            meta = obj["metadata"]
            out[(kind, meta.get("namespace", ""), meta["name"])] = obj
    return out


def versions(cluster: KubeCluster, plane: str = PLANE) -> dict[tuple[str, str, str], str]:
    return {k: o["metadata"]["resourceVersion"] for k, o in managed(cluster, plane).items()}


def state(*deployments: dict[str, Any], runs: list[dict[str, Any]] | None = None, revision: str = "rev",
          plane: str = PLANE) -> DesiredState:
    return DesiredState.from_wire(state_wire(list(deployments), organization="acme", dataPlane=plane,
                                             revision=revision, runs=runs or []))


PLURALS = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Secret": "secrets",
           "ConfigMap": "configmaps", "Service": "services", "PersistentVolumeClaim": "persistentvolumeclaims",
           "Pod": "pods", "Deployment": "deployments", "CronJob": "cronjobs", "Job": "jobs",
           "NetworkPolicy": "networkpolicies", "ClusterRole": "clusterroles",
           "ClusterRoleBinding": "clusterrolebindings", "Gateway": "gateways", "HTTPRoute": "httproutes"}


def path_of(obj: dict[str, Any]) -> str:
    """The API path of an object (its collection's path and its name)."""
    group_version = obj["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    namespace = obj["metadata"].get("namespace")
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{where}/{PLURALS[obj['kind']]}/{obj['metadata']['name']}"
