"""The Cellplane gateway served by the Kubernetes runtime (``--serve-gateways``), against the real test cluster
(tests/kubecluster.py: kube-apiserver, etcd, controller manager, scheduler, kwok's fake node).

A service with a Public and an Organization endpoint is deployed to the cluster; its pod becomes ready on the kwok
node. Cluster DNS does not exist on the test machine and kwok runs no container, so the runtime is given a resolver
that maps the endpoints' Services to the test's own HTTP servers on 127.0.0.1: that is the only stand-in. Requests
go over real HTTP to the runtime's external and internal listeners; access lines reach the runtime's host (the
agent's ``RuntimeHost`` kept in memory, as in test_kube_runtime.py). One cluster, one runtime, the tests in order.
Then: the listeners' port pairs per environment (no cluster), the install manifest with ``serve_gateways`` applied
(the gateway Services' endpoints are the agent's pod), and ``cellplane dataplane run --kubernetes --serve-gateways``
as a process against a real control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import kubernetes_validate
import pytest

from cellplane.contract import AccessLineSent, DesiredState
from cellplane.dataplane.agent import AgentSettings
from cellplane.gateway.auth import secret_digest
from cellplane.gateway.routes import Upstream
from cellplane.kubernetes import names
from cellplane.kubernetes.gateways import ClusterGateways, ServeGateways
from cellplane.kubernetes.install import InstallOptions, manifest
from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.observe import Observed
from cellplane.kubernetes.runtime import KubernetesRuntime, KubernetesSettings
from dataplanekit import AgentProcess, poll
from desiredkit import deployment_wire, state_wire
from gatewaykit import App
from kubecluster import KubeCluster, KubeError
from kuberuntimekit import Host, path_of
from liveserver import CELLPLANE, LiveServer, doc, free_port

T = TypeVar("T")
IMAGE = "registry.cellplane.test/acme/orders@sha256:" + "cd" * 32
PLANE = "kube-gateway-test"
NS = names.namespace("acme", "sales", "development")
KEY = "the-api-key-of-shop-front"
DEPLOYMENT = "dep_00000orders"


class Cell:
    """The runtime on an asyncio loop of its own (as the agent's loop runs it), the stand-ins for the Services."""

    def __init__(self, cluster: KubeCluster, root: Path) -> None:
        self.cluster = cluster
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="kube-gateway-loop")
        self.thread.start()
        self.apps = {"api": App("api"), "admin": App("admin")}
        for app in self.apps.values():
            self.run(app.start())
        self.resolved: list[tuple[str, str, int]] = []
        self.host = Host(root)
        settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=root, name=PLANE,
                                 organization="acme", runtime="kubernetes", metrics_interval=0.2)
        self.runtime = KubernetesRuntime(settings, KubernetesSettings(
            kubeconfig=cluster.kubeconfig, drift_interval=3600, observe_interval=0.3, follow_logs=False,
            gateways=ServeGateways("127.0.0.1", 0, 0, resolver=self.resolve)))

    def resolve(self, service: str, namespace: str, port: int) -> Upstream:
        """The Services of the deployment's endpoints -> the test's servers (cluster DNS is not here)."""
        self.resolved.append((service, namespace, port))
        endpoint = {names.service("orders", "v1", e): e for e in self.apps}[service]
        return self.apps[endpoint].upstream

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def url(self, kind: str, path: str) -> str:
        port = self.runtime.gateways.port(kind, "development") if self.runtime.gateways else None
        assert port, f"no {kind} listener"
        return f"http://127.0.0.1:{port}{path}"

    def close(self) -> None:
        self.run(self.runtime.stop())
        self.run(self.runtime.close())
        for app in self.apps.values():
            self.run(app.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def cell(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cell]:
    try:  # what the data plane's manifest installs: its system namespace
        kube_cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": "cellplane-system"}})
    except KubeError as e:
        if e.status != 409:
            raise
    c = Cell(kube_cluster, tmp_path_factory.mktemp("kube-gateway"))
    c.run(c.runtime.start(c.host, None))
    try:
        yield c
    finally:
        c.close()


def orders() -> dict[str, Any]:
    return deployment_wire(
        id=DEPLOYMENT, project="sales", component="orders", release="r1",
        artifact={"digest": "sha256:" + "0" * 64, "image": IMAGE},
        endpoints=[{"name": "api", "port": 8080, "type": "REST", "basePath": "/", "visibility": ["Public"]},
                   {"name": "admin", "port": 9000, "type": "REST", "basePath": "/admin",
                    "visibility": ["Organization"]}])


def state(*deployments: dict[str, Any], revision: str = "rev") -> DesiredState:
    grant = {"consumerKey": "ck_front", "secretDigest": secret_digest(KEY.encode()), "environment": "development",
             "project": "shop", "component": "front",
             "target": {"project": "sales", "component": "orders", "endpoint": "admin"}}
    return DesiredState.from_wire(state_wire(list(deployments), organization="acme", dataPlane=PLANE,
                                             revision=revision, grants=[grant] if deployments else []))


def test_a_public_endpoint_answers_through_the_agents_external_listener_once_its_pod_is_ready(cell: Cell) -> None:
    cell.run(cell.runtime.apply(state(orders())))
    # routed at once, to nothing until the pod is ready: the gateway's usual 503, never 404
    first = httpx.get(cell.url("external", "/sales/orders/v1/hello"), timeout=10)
    assert first.status_code in (200, 503)

    def answered() -> httpx.Response | None:
        r = httpx.get(cell.url("external", "/sales/orders/v1/hello"), timeout=10)
        return r if r.status_code == 200 else None
    r = cell.cluster.wait_for("the Public endpoint answering through the external listener", answered, 90)
    assert r.json()["app"] == "api" and r.json()["path"] == "/hello"
    assert (names.service("orders", "v1", "api"), NS, 8080) in cell.resolved
    gateways = cell.run(cell.runtime.status()).gateways
    assert gateways["development"].external == ("http://gateway--development--external.cellplane-system.svc."
                                                "cluster.local:8080")


def test_an_organization_endpoint_is_refused_outside_and_served_inside_with_a_connections_api_key(
        cell: Cell) -> None:
    outside = httpx.get(cell.url("external", "/sales/orders/v1/admin/users"), timeout=10)
    assert outside.status_code == 403 and "is not public" in outside.text
    assert cell.apps["admin"].requests == 0
    no_key = httpx.get(cell.url("internal", "/sales/orders/v1/admin/users"), timeout=10)
    assert no_key.status_code == 403 and "Choreo-API-Key" in no_key.text
    wrong = httpx.get(cell.url("internal", "/sales/orders/v1/admin/users"), headers={"Choreo-API-Key": "nope"},
                      timeout=10)
    assert wrong.status_code == 403 and cell.apps["admin"].requests == 0
    inside = httpx.get(cell.url("internal", "/sales/orders/v1/admin/users"), headers={"Choreo-API-Key": KEY},
                       timeout=10)
    assert inside.status_code == 200 and inside.json()["app"] == "admin"
    assert inside.json()["path"] == "/admin/users"


def test_routed_requests_reach_the_host_as_access_lines_and_http_metrics_and_prometheus_scrapes_them(
        cell: Cell) -> None:
    def shipped() -> list[AccessLineSent]:
        lines = [a for a in cell.host.access if a.component == "orders"]
        return lines if any(a.endpoint == "admin" and a.consumer == "shop/front" for a in lines) else []
    lines = cell.cluster.wait_for("the access lines handed to the host", shipped, 10)
    assert {(a.environment, a.project) for a in lines} == {("development", "sales")}
    assert any(a.status == 200 and a.endpoint == "api" for a in lines)
    assert (cell.cluster.wait_for("http metrics handed to the host",
                                  lambda: [p for p in cell.host.metrics if "orders" in str(p)], 10))
    status = cell.run(cell.runtime.status())
    assert (status.gateways["development"].internal
            == "http://gateway--development--internal.cellplane-system.svc.cluster.local:8080")
    assert status.metrics_url is not None  # the agent's Prometheus endpoint, its bearer token as on a local agent
    assert httpx.get(status.metrics_url, timeout=10).status_code == 401
    scraped = httpx.get(status.metrics_url, headers={"Authorization": f"Bearer {cell.host.state.metrics_token()}"},
                        timeout=10)
    assert scraped.status_code == 200 and 'component="orders"' in scraped.text


def test_undeploying_removes_the_route(cell: Cell) -> None:
    cell.run(cell.runtime.apply(state(revision="gone")))  # the environment stays, the deployment goes
    r = httpx.get(cell.url("external", "/sales/orders/v1/hello"), timeout=10)
    assert r.status_code == 404


def four_free_ports() -> int:
    """A port such that it and the three after it are free now."""
    for _ in range(50):
        first = free_port()
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + 4):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise AssertionError("no four free ports in a row")


def test_each_environment_takes_the_next_pair_of_ports_and_keeps_it_across_restarts(tmp_path: Path) -> None:
    """No cluster needed: the listeners are opened from the desired state alone."""
    first = four_free_ports()
    settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=tmp_path, name=PLANE,
                             organization="acme", runtime="kubernetes")
    two = DesiredState.from_wire(state_wire([], organization="acme", dataPlane=PLANE, environments=[
        {"name": "staging", "production": False}, {"name": "production", "production": True}]))

    async def listeners(desired: DesiredState) -> dict[str, int]:
        g = ClusterGateways(settings, ServeGateways("127.0.0.1", first, first + 1), ClusterLayout())
        await g.start(Host(tmp_path))
        try:
            await g.update(desired, Observed())
            return g.gateway.listeners()
        finally:
            await g.close()

    opened = asyncio.run(listeners(two))
    assert opened == {"external/production": first, "internal/production": first + 1,
                      "external/staging": first + 2, "internal/staging": first + 3}
    only_staging = DesiredState.from_wire(state_wire([], organization="acme", dataPlane=PLANE,
                                                     environments=[{"name": "staging", "production": False}]))
    assert asyncio.run(listeners(only_staging)) == {"external/staging": first + 2, "internal/staging": first + 3}


def test_the_install_with_gateways_makes_the_agents_pod_every_gateway_services_endpoint(
        kube_cluster: KubeCluster) -> None:
    """The manifest asked for gateways validates strictly, and applied to the cluster, the gateway Services' endpoint
    slices list the agent's pod on the ports its ``--serve-gateways`` listeners take (first pair, then +2)."""
    system = "cellplane-gw-install"
    options = InstallOptions(name="gw-install", organization="acme", controlplane="https://cp.example.com",
                             image="registry.example.com/cellplane/agent@sha256:" + "cd" * 32, token="t",
                             environments=("development", "production"), persistent=False, serve_gateways=True,
                             layout=ClusterLayout(system_namespace=system))
    objects = manifest(options)
    for obj in objects:
        for version in ("1.30", "1.37"):
            kubernetes_validate.validate(obj, version, strict=True)
    (agent,) = [o for o in objects if o["kind"] == "Deployment"]
    args = agent["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--serve-gateways"):] == [
        "--serve-gateways", "--external-port", "8080", "--internal-port", "8081",
        "--gateway-environment", "development", "--gateway-environment", "production"]
    for obj in objects:
        kube_cluster.apply(path_of(obj), obj)
    try:
        def served() -> dict[str, set[int]] | None:
            slices = kube_cluster.get(f"/apis/discovery.k8s.io/v1/namespaces/{system}/endpointslices")["items"]
            out = {s["metadata"]["labels"]["kubernetes.io/service-name"]: {p["port"] for p in s.get("ports") or []}
                   for s in slices if s.get("endpoints")}
            return out if len(out) == 4 else None
        assert kube_cluster.wait_for("the gateway Services' endpoints: the agent's pod", served, 90) == {
            "gateway--development--external": {8080}, "gateway--development--internal": {8081},
            "gateway--production--external": {8082}, "gateway--production--internal": {8083}}
    finally:
        for obj in reversed(objects):
            if obj["kind"] != "Namespace":
                kube_cluster.delete(path_of(obj))


def test_the_agent_process_with_serve_gateways_listens_and_reports_the_gateway_services_urls(
        live_server: LiveServer, kube_cluster: KubeCluster, tmp_path: Path) -> None:
    """`cellplane dataplane run --kubernetes --serve-gateways` as a process against a real control plane: its
    listeners answer (the gateway's 404 for a path nothing is routed at) and it reports the gateway Services'
    in-cluster URLs."""
    c = live_server.client()
    r = c.post("/apply", json={"documents": [
        doc("Organization", "gwtest", {}), doc("DataPlane", "kubegw", {}, organization="gwtest"),
        doc("Environment", "qa", {"dataPlane": "kubegw"}, organization="gwtest")]})
    assert r.status_code == 200, r.text
    first = four_free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env.update({"CELLPLANE_TOKEN": live_server.admin_token, "CELLPLANE_CONFIG": os.devnull + ".none"})
    log_path = tmp_path / "agent.log"
    process = subprocess.Popen(
        [str(CELLPLANE), "--org", "gwtest", "dataplane", "run", "--controlplane", live_server.url,
         "--data-dir", str(tmp_path / "data"), "--kubernetes", "--kubeconfig", str(kube_cluster.kubeconfig),
         "--name", "kubegw", "--no-bind", "--serve-gateways", "--gateway-host", "127.0.0.1",
         "--external-port", str(first), "--internal-port", str(first + 1), "--gateway-environment", "qa"],
        stdout=log_path.open("a"), stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True)
    agent = AgentProcess(process, tmp_path / "data", log_path)
    try:
        try:
            gateway = poll(lambda: process.poll() is None and agent.gateway("qa"), bool, timeout=60)
        except AssertionError:
            raise AssertionError(f"the agent did not report qa's gateways:\n{agent.log()[-3000:]}") from None
        assert gateway["external"] == "http://gateway--qa--external.cellplane-system.svc.cluster.local:8080"
        for port in (first, first + 1):
            r = httpx.get(f"http://127.0.0.1:{port}/sales/orders/v1/", timeout=10)
            assert r.status_code == 404 and "nothing is routed" in r.text
    finally:
        assert agent.stop() == 0, agent.log()[-3000:]
