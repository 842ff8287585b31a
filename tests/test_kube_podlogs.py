"""Pod logs through the real API server: a node of this module's own whose "kubelet" is an HTTPS server in the
test (the API server proxies ``pods/log`` to the node's address and kubelet port, and verifies no kubelet
certificate when it was given no CA, as the test cluster's is), so the runtime's log streams and a failing pod's
last lines go the whole way: the runtime, lightkube, kube-apiserver, the node's endpoint. kwok plays the rest of
the node (Ready, pods Running). The fake kubelet ends every stream after writing everything it has (old lines
too, as ``sinceSeconds``' whole seconds also do), so each line shipped once proves the resume and the de-duplication.
"""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cellplane.dataplane.settings import AgentSettings
from cellplane.kubernetes import names
from cellplane.kubernetes.runtime import KubernetesRuntime, KubernetesSettings
from desiredkit import deployment_wire
from kubecluster import NODE_NAME, KubeCluster, KubeError
from kuberuntimekit import IMAGE, Host, Kube, Loop, state
from liveserver import free_port

NODE = "logs-node"


class FakeKubelet:
    """``/containerLogs/{namespace}/{pod}/{container}``: a growing log (one line more per request), every line
    with its timestamp when asked, fractions of a second trimmed as the kubelet writes them."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.lines: list[tuple[str, str]] = []
        self.requests: list[str] = []
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                kubelet.requests.append(self.path)
                now = datetime.datetime.now(datetime.UTC)
                stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"
                kubelet.lines.append((stamp, f"hello {len(kubelet.lines) + 1}"))
                with_stamps = "timestamps=true" in self.path
                if "tailLines" in self.path:
                    body = "".join(f"{text}\n" for _, text in kubelet.lines[-2:])
                else:
                    body = "".join(f"{s} {text}\n" if with_stamps else f"{text}\n" for s, text in kubelet.lines)
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kubelet")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
        (root / "kubelet.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (root / "kubelet.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(root / "kubelet.crt", root / "kubelet.key")
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _node(port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "type": "kwok"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                     {"type": "Hostname", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}


def _cordon(cluster: KubeCluster, node: str, on: bool) -> None:
    cluster.request("PATCH", f"/api/v1/nodes/{node}", {"spec": {"unschedulable": on}},
                    content_type="application/merge-patch+json")


@pytest.fixture(scope="module")
def kube(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kube, FakeKubelet]]:
    root = tmp_path_factory.mktemp("kube-logs")
    kubelet = FakeKubelet(root)
    try:
        kube_cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": "cellplane-system"}})
    except KubeError as e:
        if e.status != 409:
            raise
    kube_cluster.post("/api/v1/nodes", _node(kubelet.port))
    _cordon(kube_cluster, NODE_NAME, True)  # this module's pods go to its own node
    host = Host(root / "agent")
    settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=host.state.root, name="logs",
                             organization="acme", runtime="kubernetes")
    runtime = KubernetesRuntime(settings, KubernetesSettings(kubeconfig=kube_cluster.kubeconfig, drift_interval=3600,
                                                             observe_interval=0.3))
    loop = Loop()
    loop.run(runtime.start(host, None))
    try:
        yield Kube(kube_cluster, runtime, host, loop), kubelet
    finally:
        loop.run(runtime.apply(state(plane="logs")))  # pruned: its pods leave the node before it goes
        loop.run(runtime.stop())
        loop.run(runtime.close())
        loop.close()
        _cordon(kube_cluster, NODE_NAME, False)
        kube_cluster.delete(f"/api/v1/nodes/{NODE}")
        kubelet.close()


def test_a_running_pods_output_is_shipped_once_per_line_across_ended_streams_and_a_failing_pod_shows_its_last_lines(
        kube: tuple[Kube, FakeKubelet]) -> None:
    k, kubelet = kube
    web = deployment_wire(id="dep_0000000000lg", project="logs", component="web",
                          artifact={"digest": "sha256:" + "5" * 64, "image": IMAGE})
    k.apply(state(web, plane="logs"))
    k.wait_report("dep_0000000000lg", lambda r: r.state == "ready", "the service ready")
    namespace = names.namespace("acme", "logs", "development")
    [pod] = k.cluster.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
    assert pod["spec"]["nodeName"] == NODE

    def shipped() -> list[str]:
        return [line.line for line in k.host.logs if line.deployment == "dep_0000000000lg"]

    k.cluster.wait_for("four lines shipped", lambda: len(shipped()) >= 4, 60)
    lines = shipped()
    assert lines == [f"hello {i}" for i in range(1, len(lines) + 1)]  # each once, in order, across streams
    first = next(line for line in k.host.logs if line.deployment == "dep_0000000000lg")
    assert (first.stream, first.replica, first.component, first.at) == ("stdout", 0, "web", kubelet.lines[0][0])
    follows = [r for r in kubelet.requests if "follow=true" in r]
    assert len(follows) >= 2 and all("timestamps=true" in r and "sinceSeconds=" in r for r in follows)

    k.cluster.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/status", {"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "app", "image": IMAGE, "imageID": "", "ready": False, "restartCount": 2,
                               "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                               "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}},
        content_type="application/merge-patch+json")
    report = k.wait_report("dep_0000000000lg", lambda r: "last lines" in r.message, "the last lines in the report")
    assert report.state == "crash-loop"
    assert report.message.startswith("replica 0: CrashLoopBackOff: exited with 1, restarted 2 times (last lines: hello")
    assert any("tailLines=5" in r for r in kubelet.requests)
