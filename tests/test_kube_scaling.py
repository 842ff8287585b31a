"""A deployment's ``scaling`` on the real test cluster (tests/kubecluster.py: kube-apiserver, etcd, the controller
manager with its HPA controller, the scheduler, kwok's fake node), through the Kubernetes runtime running with the
agent's own ServiceAccount token (the install manifest's ClusterRole: its RBAC is what is exercised) and serving the
gateways (``--serve-gateways``); the gateway's activator is stood in for by calling the runtime's ``wake`` as it
will.

A service with ``scaling`` {min 0, max 3} gets its HorizontalPodAutoscaler (1..3) beside a Deployment whose
``replicas`` the agent does not own; the agent's ``/scale`` to 0 takes the pods away (the route is empty first,
the report says scaled-to-zero), a wake-up brings a ready pod back (kwok) and the route its upstream, a pod that
crash loops fails the wake-up with the reason; with
``minReplicas`` 2 the cluster's HPA controller scales the Deployment itself, and a Deployment put at 0 is put back
by the agent; without ``scaling`` the HPA is pruned and ``replicas`` is the agent's again. A second runtime without
the gateways runs minReplicas 0 as 1. As in test_kube_gateway.py, the only stand-in is the resolver, which maps the
endpoint's Service to an HTTP server of the test on 127.0.0.1 (no cluster DNS, and kwok runs no container).
"""

from __future__ import annotations

import base64
import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cellplane.contract import DesiredState
from cellplane.dataplane.agent import AgentSettings
from cellplane.gateway.routes import Upstream
from cellplane.kubernetes import autoscaling, names
from cellplane.kubernetes.gateways import ServeGateways
from cellplane.kubernetes.install import AGENT, InstallOptions, manifest
from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.runtime import KubernetesRuntime, KubernetesSettings
from desiredkit import deployment_wire, state_wire
from gatewaykit import App
from kubecluster import KubeCluster, KubeError
from kuberuntimekit import Host, Kube, Loop, path_of

PLANE = "kube-scaling-test"
COLD = "x-cellplane-cold-start"  # the activator's header on a response to a held request
SYSTEM = "cellplane-scaling"  # this module's install (its system namespace: the Gateways go there)
IMAGE = "registry.cellplane.test/acme/orders@sha256:" + "ef" * 32
CRASH_LOOPS = "registry.cellplane.test/acme/crash-loops@sha256:" + "ef" * 32  # the test cluster's crash-loop stage
DEPLOYMENT = "dep_000scaleorders"
NS = names.namespace("acme", "elastic", "development")
WORKLOAD = names.workload("orders", "v1")
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments/{WORKLOAD}"
HPA = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/{WORKLOAD}"
OPTIONS = InstallOptions(name=PLANE, organization="acme", controlplane="https://cp.example.com",
                         image="registry.example.com/cellplane/agent@sha256:" + "cd" * 32, token="t",
                         environments=("development",), persistent=False,
                         layout=ClusterLayout(system_namespace=SYSTEM))


def agent_kubeconfig(cluster: KubeCluster, token: str, path: Path) -> Path:
    """A kubeconfig holding the agent's ServiceAccount token (what the pod's in-cluster configuration amounts to)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "agent",
        "clusters": [{"name": "test", "cluster": {"server": cluster.server, "certificate-authority-data":
                                                  base64.b64encode(cluster.ca_bytes).decode()}}],
        "users": [{"name": "agent", "user": {"token": token}}],
        "contexts": [{"name": "agent", "context": {"cluster": "test", "user": "agent"}}]}))
    path.chmod(0o600)
    return path


class Cell(Kube):
    """The runtime (the agent's token, serving the gateways) on a loop of its own, and the Service's stand-in."""

    def __init__(self, cluster: KubeCluster, root: Path, kubeconfig: Path, loop: Loop) -> None:
        self.app = App("orders")
        loop.run(self.app.start())
        host = Host(root)
        settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=root, name=PLANE,
                                 organization="acme", runtime="kubernetes", metrics_interval=0.5)
        runtime = KubernetesRuntime(settings, KubernetesSettings(
            kubeconfig=kubeconfig, drift_interval=3600, observe_interval=0.3, follow_logs=False,
            layout=OPTIONS.layout, gateways=ServeGateways("127.0.0.1", 0, 0, resolver=self.resolve)))
        super().__init__(cluster, runtime, host, loop)

    def resolve(self, service: str, namespace: str, port: int) -> Upstream:
        assert (service, namespace) == (names.service("orders", "v1", "api"), NS)
        return self.app.upstream

    def get(self, path: str) -> httpx.Response:
        assert self.runtime.gateways is not None
        port = self.runtime.gateways.port("external", "development")
        return httpx.get(f"http://127.0.0.1:{port}/elastic/orders/v1{path}", timeout=10)

    def scale(self, replicas: int, reason: str, deployment: str = DEPLOYMENT) -> None:
        self.loop.run(self.runtime.scale(deployment, replicas, reason))

    def wake(self, deployment: str = DEPLOYMENT) -> None:
        """What the gateway's activator calls when it holds a request (on the agent's loop)."""
        async def wake() -> None:
            self.runtime.wake(deployment)
        self.loop.run(wake())

    def upstreams(self) -> tuple[Upstream, ...]:
        """The upstreams the agent's gateway routes the deployment's endpoint to."""
        assert self.runtime.gateways is not None and self.runtime.gateways.table is not None
        (backend,) = [b for b in self.runtime.gateways.table.backends if b.deployment == DEPLOYMENT]
        assert backend.wake  # minReplicas 0: held and woken, never a 503
        return backend.upstreams

    def system_lines(self, deployment: str = DEPLOYMENT) -> list[str]:
        return [x.line for x in self.host.logs if x.stream == "system" and x.deployment == deployment]


@pytest.fixture(scope="module")
def agent_token(kube_cluster: KubeCluster) -> Iterator[str]:
    """The install's namespace, ServiceAccount and ClusterRole with its binding, applied by the admin; a token of
    the agent's ServiceAccount minted through the TokenRequest API."""
    objects = [o for o in manifest(OPTIONS)
               if o["kind"] in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    for obj in objects:
        kube_cluster.apply(path_of(obj), obj)
    yield kube_cluster.mint_token(SYSTEM, AGENT)
    for obj in reversed(objects):
        if obj["kind"] != "Namespace":
            kube_cluster.delete(path_of(obj))


@pytest.fixture(scope="module")
def cell(kube_cluster: KubeCluster, agent_token: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cell]:
    root = tmp_path_factory.mktemp("kube-scaling")
    loop = Loop()
    c = Cell(kube_cluster, root / "agent", agent_kubeconfig(kube_cluster, agent_token, root / "kubeconfig"), loop)
    loop.run(c.runtime.start(c.host, None))
    try:
        yield c
    finally:
        try:
            c.apply(state(revision="empty"))  # the cell pruned
        finally:
            loop.run(c.runtime.stop())
            loop.run(c.runtime.close())
            loop.run(c.app.stop())
            loop.close()


def orders(scaling: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"project": "elastic", "release": "r1",
                              **({"scaling": scaling} if scaling is not None else {}), **fields}
    return deployment_wire(
        id=DEPLOYMENT, component="orders", **values,
        artifact={"digest": "sha256:" + "0" * 64, "image": IMAGE},
        endpoints=[{"name": "api", "port": 8080, "type": "REST", "basePath": "/", "visibility": ["Public"]}])


def scaling(**fields: Any) -> dict[str, Any]:
    return {"minReplicas": 0, "maxReplicas": 3, "targetConcurrency": 10, "idleSeconds": 300,
            "scaleDownDelaySeconds": 30, **fields}


def state(*deployments: dict[str, Any], revision: str = "rev", plane: str = PLANE) -> DesiredState:
    return DesiredState.from_wire(state_wire(list(deployments), organization="acme", dataPlane=plane,
                                             revision=revision))


def owned_by(obj: dict[str, Any], manager: str, operation: str) -> dict[str, Any]:
    """The fields ``manager`` holds on ``obj`` through ``operation`` (Apply or Update)."""
    return next((m["fieldsV1"] for m in obj["metadata"].get("managedFields") or []
                 if m["manager"] == manager and m["operation"] == operation and not m.get("subresource")), {})


def answered(cell: Cell) -> httpx.Response | None:
    r = cell.get("/hello")
    return r if r.status_code == 200 else None


def test_a_service_with_scaling_gets_an_hpa_owned_by_the_agent_and_a_deployment_whose_count_it_leaves_alone(
        cell: Cell) -> None:
    cell.apply(state(orders(scaling())))
    assert cell.runtime.errors == {}
    hpa = cell.cluster.get(HPA)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert hpa["spec"]["metrics"][0]["object"]["metric"]["name"] == autoscaling.IN_FLIGHT
    assert owned_by(hpa, "cellplane", "Apply")["f:spec"]["f:maxReplicas"] == {}
    deployment = cell.cluster.get(DEPLOYMENTS)
    assert deployment["spec"]["replicas"] == 1  # the API server's default for a new Deployment
    assert "f:replicas" not in owned_by(deployment, "cellplane", "Apply")["f:spec"]
    report = cell.wait_report(DEPLOYMENT, lambda r: r.state == "ready", "the autoscaled service ready")
    assert report.scaling is not None and (report.scaling.current, report.scaling.desired) == (1, 1)
    r = cell.cluster.wait_for("the endpoint answering through the agent's gateway", lambda: answered(cell), 30)
    assert r.json()["app"] == "orders"


def test_at_zero_the_pods_go_and_a_wake_up_scales_to_one_and_routes_the_ready_pod_at_once(cell: Cell) -> None:
    cell.scale(0, "idle for 300 s")
    assert cell.upstreams() == ()  # out of the routes before the /scale (a request now is held and wakes it)
    report = cell.wait_report(DEPLOYMENT, lambda r: r.state == "scaled-to-zero" and not r.replicas,
                              "the deployment scaled to zero")
    assert report.scaling is not None
    assert (report.scaling.current, report.scaling.desired, report.scaling.reason) == (0, 0, "idle for 300 s")
    assert cell.cluster.wait_for("the pods gone", lambda: not cell.cluster.get(
        f"/api/v1/namespaces/{NS}/pods?labelSelector={names.INSTANCE}={WORKLOAD}")["items"], 30)
    assert cell.system_lines() == ["scaled to zero: idle for 300 s"]
    assert "f:replicas" not in owned_by(cell.cluster.get(DEPLOYMENTS), "cellplane", "Apply")["f:spec"]
    cell.apply(state(orders(scaling()), revision="again"))  # a reconcile changes nothing about the count
    assert cell.cluster.get(DEPLOYMENTS)["spec"]["replicas"] == 0

    started = time.monotonic()
    cell.wake()
    cell.wake()  # a wake-up under way: nothing more
    r = cell.cluster.wait_for("the woken pod ready and routed", lambda: answered(cell), 60)
    woken = time.monotonic() - started
    assert r.json()["app"] == "orders"
    report = cell.wait_report(DEPLOYMENT, lambda r: r.state == "ready", "the woken deployment ready")
    assert report.scaling is not None and report.scaling.reason == "woken by a request"
    scaled, ready = cell.system_lines()[1:]
    assert scaled == "scaled to 1 replica: woken by a request"
    assert ready.startswith("woken by a request: replica ready in ")
    assert cell.runtime.wakeups.woken == 1
    print(f"from the wake-up to the first answer through the gateway: {woken:.2f} s ({ready})")


def test_a_wake_up_whose_pod_crash_loops_fails_at_once_with_the_reason(cell: Cell) -> None:
    flaky = deployment_wire(id="dep_000scaleflaky", project="elastic", component="flaky", release="r1",
                            scaling=scaling(), artifact={"digest": "sha256:" + "0" * 64, "image": CRASH_LOOPS},
                            endpoints=[{"name": "api", "port": 8080, "type": "REST", "basePath": "/",
                                        "visibility": ["Public"]}])
    cell.apply(state(orders(scaling()), flaky, revision="flaky"))
    cell.wait_report("dep_000scaleflaky", lambda r: r.state == "crash-loop", "the flaky service crash looping")
    cell.scale(0, "idle for 300 s", "dep_000scaleflaky")
    cell.wait_report("dep_000scaleflaky", lambda r: r.state == "scaled-to-zero" and not r.replicas, "flaky at zero")
    cell.wake("dep_000scaleflaky")
    failed = cell.cluster.wait_for("the wake-up failed", lambda: [
        x for x in cell.system_lines("dep_000scaleflaky") if x.startswith("wake-up failed")], 30)
    assert failed[0].startswith("wake-up failed: replica 0: CrashLoopBackOff: exited with 1")
    assert cell.runtime.wakeups.woken == 1


def test_a_new_release_of_a_deployment_at_zero_starts_one_replica_as_a_local_rollout_does(cell: Cell) -> None:
    cell.scale(0, "idle for 300 s")
    cell.wait_report(DEPLOYMENT, lambda r: r.state == "scaled-to-zero" and not r.replicas, "at zero")
    cell.apply(state(orders(scaling(), release="r2"), revision="r2"))
    report = cell.wait_report(DEPLOYMENT, lambda r: r.state == "ready" and r.release == "r2" and len(r.replicas) == 1,
                              "the new release's replica ready")
    assert report.scaling is not None and report.scaling.reason == "release r2 deployed at zero: one replica started"
    assert cell.cluster.wait_for("the new release routed", lambda: answered(cell), 10)


def test_a_request_at_zero_is_held_wakes_the_deployment_through_the_gateway_and_idle_takes_it_back_to_zero(
        cell: Cell) -> None:
    """The activator's end to end: the agent's gateway holds the requests for a deployment at zero and calls the
    runtime's wake once, the Deployment goes to 1, the kwok pod is ready, every request is answered with the
    cold-start header; idle past its period (1 s here), the agent's scaler takes it back to zero."""
    cell.apply(state(orders(scaling(idleSeconds=1)), revision="idle"))
    cell.wait_report(DEPLOYMENT, lambda r: r.state == "scaled-to-zero" and not r.replicas
                     and r.scaling is not None and r.scaling.reason == "idle for 1 s", "idle -> zero", 30)
    lines = len(cell.system_lines())
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: cell.get("/hello"), range(10)))
    assert [r.status_code for r in answers] == [200] * 10, [r.text for r in answers if r.status_code != 200]
    # the requests held for the wake-up say so (a request that came once the pod was routed was not held)
    seconds = sorted(float(r.headers[COLD]) for r in answers if COLD in r.headers)
    assert seconds
    woken = cell.system_lines()[lines:]
    assert woken[:2] == ["scaled to 1 replica: woken by a request", woken[1]] and woken[1].startswith(
        "woken by a request: replica ready in ")
    assert "woken by a request" not in " ".join(woken[2:])  # one wake-up for the ten
    print(f"10 requests at zero answered, {len(seconds)} held {seconds[0]:.3f} to {seconds[-1]:.3f} s ({woken[1]})")
    points = cell.cluster.wait_for("a scaling point with the cold start", lambda: [
        p for p in cell.host.metrics if getattr(p, "kind", "") == "scaling" and p.coldStarts], 10)
    assert points[0].component == "orders" and points[0].coldStartSeconds > 0
    cell.wait_report(DEPLOYMENT, lambda r: r.state == "scaled-to-zero" and not r.replicas, "idle -> zero again", 30)
    assert cell.cluster.get(DEPLOYMENTS)["spec"]["replicas"] == 0


def test_the_agents_prometheus_endpoint_serves_the_hpas_gauges_per_deployment(cell: Cell) -> None:
    assert cell.runtime.gateways is not None
    text = cell.runtime.gateways.prometheus()
    assert f'cellplane_requests_in_flight{{namespace="{NS}",deployment="{WORKLOAD}"}}' in text
    assert f'cellplane_requests_per_second{{namespace="{NS}",deployment="{WORKLOAD}"}}' in text


def test_with_min_two_the_clusters_hpa_controller_scales_the_deployment_and_the_agent_puts_back_a_zero(
        cell: Cell) -> None:
    cell.apply(state(orders(scaling(minReplicas=1)), revision="min1"))  # (back from zero: the agent's, "minReplicas 1")
    cell.wait_report(DEPLOYMENT, lambda r: r.state == "ready" and len(r.replicas) == 1, "one replica")
    cell.apply(state(orders(scaling(minReplicas=2)), revision="min2"))
    assert cell.cluster.get(HPA)["spec"]["minReplicas"] == 2
    report = cell.wait_report(DEPLOYMENT, lambda r: r.state == "ready" and len(r.replicas) == 2,
                              "the HPA controller's two replicas ready")
    assert report.scaling is not None and report.scaling.desired == 2 and report.scaling.reason.startswith("the HPA")
    cell.cluster.request("PATCH", f"{DEPLOYMENTS}/scale", {"spec": {"replicas": 0}},
                         content_type="application/merge-patch+json")  # someone scales it to zero by hand
    report = cell.wait_report(DEPLOYMENT, lambda r: r.state == "ready" and len(r.replicas) == 2
                              and r.scaling is not None and r.scaling.reason == "minReplicas 2",
                              "the agent putting the zero back to two")
    assert "scaled to 2 replicas: minReplicas 2" in [line.line for line in cell.host.logs]


def test_scaling_removed_prunes_the_hpa_and_gives_the_deployment_its_replicas_back(cell: Cell) -> None:
    cell.apply(state(orders(replicas=1), revision="fixed"))
    with pytest.raises(KubeError) as gone:
        cell.cluster.get(HPA)
    assert gone.value.status == 404
    deployment = cell.cluster.get(DEPLOYMENTS)
    assert deployment["spec"]["replicas"] == 1
    assert "f:replicas" in owned_by(deployment, "cellplane", "Apply")["f:spec"]
    report = cell.wait_report(DEPLOYMENT, lambda r: r.state == "ready" and len(r.replicas) == 1,
                              "the fixed deployment at one replica")
    assert report.scaling is None


def test_a_fixed_deployment_given_scaling_keeps_its_replicas_while_the_hpa_takes_over(cell: Cell) -> None:
    """Server-side apply would drop ``replicas`` that only the agent's apply owned, and the API server default
    them to 1: the agent writes the count through ``/scale`` first, which keeps owning it."""
    cell.apply(state(orders(replicas=2), revision="two"))
    cell.wait_report(DEPLOYMENT, lambda r: r.state == "ready" and len(r.replicas) == 2, "two fixed replicas")
    cell.apply(state(orders(scaling(minReplicas=1), replicas=2), revision="two-scaled"))
    deployment = cell.cluster.get(DEPLOYMENTS)
    assert deployment["spec"]["replicas"] == 2
    assert "f:replicas" not in owned_by(deployment, "cellplane", "Apply")["f:spec"]
    assert cell.cluster.get(HPA)["spec"]["minReplicas"] == 1
    report = cell.wait_report(DEPLOYMENT, lambda r: r.scaling is not None, "the scaling report")
    assert report.state == "ready" and len(report.replicas) == 2


def test_without_the_agents_gateways_min_zero_runs_as_one_and_a_deployment_put_at_zero_comes_back(
        kube_cluster: KubeCluster, tmp_path: Path) -> None:
    plane = "kube-scaling-nogw"
    loop = Loop()
    host = Host(tmp_path)
    settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=tmp_path, name=plane,
                             organization="acme", runtime="kubernetes")
    kube = Kube(kube_cluster, KubernetesRuntime(settings, KubernetesSettings(
        kubeconfig=kube_cluster.kubeconfig, drift_interval=3600, observe_interval=0.3, follow_logs=False,
        layout=OPTIONS.layout)),
        host, loop)
    wire = orders(scaling(), project="elastic-nogw")
    path = f"/apis/apps/v1/namespaces/{names.namespace('acme', 'elastic-nogw', 'development')}/deployments/{WORKLOAD}"
    loop.run(kube.runtime.start(host, None))
    try:
        kube.apply(state(wire, plane=plane))
        report = kube.wait_report(DEPLOYMENT, lambda r: r.state == "ready", "min 0 running as one")
        assert report.scaling is not None and report.scaling.reason == autoscaling.NO_WAKE
        kube_cluster.request("PATCH", f"{path}/scale", {"spec": {"replicas": 0}},
                             content_type="application/merge-patch+json")
        line = f"scaled to 1 replica: {autoscaling.NO_WAKE}"
        kube_cluster.wait_for("the agent putting the zero back to one",
                              lambda: line in [x.line for x in host.logs], 30)
        kube.wait_report(DEPLOYMENT, lambda r: r.state == "ready" and len(r.replicas) == 1, "one replica again")
        assert kube_cluster.get(path)["spec"]["replicas"] == 1
        kube.apply(state(plane=plane, revision="empty"))
    finally:
        loop.run(kube.runtime.stop())
        loop.run(kube.runtime.close())
        loop.close()
