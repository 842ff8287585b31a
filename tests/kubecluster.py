"""A real Kubernetes cluster on 127.0.0.1 for tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes), built from source by scripts/ensure-kube-tools.sh (``make kubetools``).

``kube_cluster`` (session scope) starts them under one temporary directory, each in a process group of its
own, on free ports:

- etcd with ``--unsafe-no-fsync`` (a test cluster's data is thrown away);
- kube-apiserver with envtest-like flags: static token authentication (``tokens.csv``: an admin in
  ``system:masters`` and ``nobody``, a user with no binding), ServiceAccount tokens signed with an EC key
  (so :meth:`KubeCluster.mint_token` can issue more through the TokenRequest API), RBAC authorization (so
  least-privilege roles can be tested), a serving certificate from a CA generated here with ``cryptography``;
- kube-controller-manager and kube-scheduler with the admin kubeconfig, no leader election and no serving
  port of their own;
- kwok with its default stages (node Ready with a Lease heartbeat; pods Running/Ready, Succeeded when their
  containers are done, gone when deleted) and ours from tools/kube/stages/ (:func:`kwok_stages`: an image
  repository ending in ``/never-pulls`` stays Pending in ErrImagePull/ImagePullBackOff, ``/exits-N`` makes a
  Job's pod exit N, ``/crash-loops`` crash loops), managing every node; the fixture creates one node,
  ``kwok-node``.

Then it waits for ``/readyz``, installs the Gateway API standard CRDs (copied from the sigs.k8s.io/gateway-api
module at build time) and waits until they are Established. Cost once built: about ten seconds of start-up on
two busy cores and about 730 MB of memory for the five processes (docs/development.md, "The test cluster").
Teardown stops every process group, one after the other (SIGTERM, then SIGKILL), in about a second.

Missing binaries fail under CI (``make test`` builds them) and skip elsewhere, with one line naming
``make kubetools``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from liveserver import free_port

ROOT = Path(__file__).resolve().parent.parent
ENSURE = ROOT / "scripts" / "ensure-kube-tools.sh"
STAGES = ROOT / "tools" / "kube" / "stages"  # our kwok stages: failures the fake node shows on request
PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_NAME = "kwok-node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"


def _in_ci() -> bool:  # as conftest's: CI=true fails what would skip
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def kube_tools_dir() -> Path | None:
    """The cache dir of the built programs (scripts/ensure-kube-tools.sh --dir), or None when not built."""
    done = subprocess.run(["bash", str(ENSURE), "--dir"], capture_output=True, text=True)
    path = Path(done.stdout.strip())
    if done.returncode != 0 or not all((path / "bin" / p).is_file() for p in PROGRAMS):
        return None
    return path


class KubeError(Exception):
    """The API server answered with an error status (``status`` and the Status object's message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass
class KubeCluster:
    server: str  # https://127.0.0.1:PORT
    ca_path: Path
    admin_token: str
    kubeconfig: Path
    tools: Path
    root: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ca_bytes(self) -> bytes:
        return self.ca_path.read_bytes()

    def client(self, token: str | None = None) -> httpx.Client:
        """An httpx client for the API server that trusts its CA, authenticated with ``token`` (the admin's
        by default). The caller closes it."""
        return httpx.Client(
            base_url=self.server, verify=ssl.create_default_context(cafile=self.ca_path), timeout=30,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
        )

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                content_type: str = "application/json") -> Any:
        """One JSON request: the decoded answer, or :class:`KubeError` for an error status."""
        with self.client(token) as c:
            content = None if body is None else json.dumps(body).encode()
            r = c.request(method, path, content=content, headers={"Content-Type": content_type})
        if r.status_code >= 400:
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text
            raise KubeError(r.status_code, message)
        return r.json() if r.content else None

    def get(self, path: str, *, token: str | None = None) -> Any:
        return self.request("GET", path, token=token)

    def post(self, path: str, body: Any, *, token: str | None = None) -> Any:
        return self.request("POST", path, body, token=token)

    def delete(self, path: str, *, token: str | None = None) -> Any:
        return self.request("DELETE", path, token=token)

    def apply(self, path: str, obj: dict[str, Any], *, field_manager: str = "cellplane-tests",
              token: str | None = None) -> Any:
        """Server-side apply of ``obj`` at its object ``path`` (``.../namespaces/N/deployments/NAME``), forcing
        conflicts, as the agent will: creates or updates it and answers the object as stored."""
        return self.request("PATCH", f"{path}?fieldManager={field_manager}&force=true", obj, token=token,
                            content_type="application/apply-patch+yaml")

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.2)

    def mint_token(self, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """A token for ``namespace/service_account`` (created if missing) through the TokenRequest API: a
        real ServiceAccount identity, with exactly the permissions its RBAC bindings give."""
        try:
            self.post(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                      {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service_account}})
        except KubeError as e:
            if e.status != 409:
                raise
        answer = self.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": seconds}},
        )
        return str(answer["status"]["token"])

    def log(self, program: str, lines: int = 30) -> str:
        """The last ``lines`` lines of ``program``'s log (for failure messages)."""
        text = (self.root / "logs" / f"{program}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop every process group one after the other, newest first (etcd last: an API server whose etcd is
        gone waits for it before exiting): SIGTERM, then SIGKILL after 10 s. About a second in all."""
        for proc in reversed(list(self.processes.values())):
            _signal_group(proc, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.processes.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


# --- certificates and keys --------------------------------------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)


def _pki(pki: Path) -> None:
    """A CA, the API server's serving certificate (127.0.0.1, localhost and the in-cluster names) and the
    ServiceAccount signing key pair; EC P-256, made in a few milliseconds."""
    pki.mkdir()
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cellplane-test-cluster-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    service_ip = ipaddress.IPv4Network(SERVICE_CIDR)[1]  # the `kubernetes` Service's address
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(service_ip),
        *(x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                    "kubernetes.default.svc.cluster.local")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(pki / "ca.key", ca_key)
    (pki / "apiserver.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki / "apiserver.key", key)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _kubeconfig(path: Path, server: str, ca: Path, token: str) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority-data":
                                                  base64.b64encode(ca.read_bytes()).decode()}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


# --- start-up ---------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: Linux's PR_SET_PDEATHSIG, so that a test run killed outright (no teardown)
    leaves no cluster process behind: the kernel sends SIGKILL when the thread that started it exits."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _spawn(cluster: KubeCluster, program: str, args: list[str]) -> None:
    log = (cluster.root / "logs" / f"{program}.log").open("wb")
    cluster.processes[program] = subprocess.Popen(
        [str(cluster.tools / "bin" / program), *args], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True, cwd=cluster.root,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    log.close()


def _alive(cluster: KubeCluster) -> None:
    for program, proc in cluster.processes.items():
        if proc.poll() is not None:
            raise RuntimeError(f"{program} exited with {proc.returncode}:\n{cluster.log(program)}")


def _ready(cluster: KubeCluster, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    def probe() -> bool:
        _alive(cluster)
        try:
            return check()
        except (httpx.HTTPError, KubeError):
            return False
    cluster.wait_for(what, probe, timeout)


def _readyz(cluster: KubeCluster) -> bool:
    with cluster.client() as c:
        return c.get("/readyz").status_code == 200


def _apply_manifest(cluster: KubeCluster, doc: dict[str, Any]) -> None:
    """Create one cluster-scoped object of the Gateway API bundle (CRDs and its ValidatingAdmissionPolicy)."""
    group, _, version = doc["apiVersion"].rpartition("/")
    plural = {"CustomResourceDefinition": "customresourcedefinitions",
              "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
              "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings"}[doc["kind"]]
    cluster.post(f"/apis/{group}/{version}/{plural}", doc)


def _established(cluster: KubeCluster, name: str) -> bool:
    crd = cluster.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    return any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"].get("conditions", []))


def gateway_crd_names(tools: Path) -> list[str]:
    names = []
    for path in sorted((tools / "crds" / "gateway-api").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names.append(doc["metadata"]["name"])
    return names


def kwok_stages(tools: Path) -> str:
    """kwok's configuration: its default stages (from the build cache) and then ours (tools/kube/stages/*.yaml,
    read from the repository at each start, so they are outside the build's cache key). Ours have weight 1 and
    select pods by an image repository marker (``/never-pulls``, ``/exits-N``, ``/crash-loops``): where one
    matches, kwok takes it over a default stage (weight 0); every other pod follows the defaults."""
    ours = sorted(STAGES.glob("*.yaml"))
    defaults = (tools / "kwok" / "stages.yaml").read_text().rstrip().removesuffix("---")
    return "\n---\n".join([defaults.rstrip(), *(p.read_text().strip() for p in ours)]) + "\n"


def start_cluster(tools: Path, root: Path) -> KubeCluster:
    """Start the whole cluster under ``root``; on any failure stop what was started and raise."""
    (root / "logs").mkdir(parents=True)
    _pki(root / "pki")
    pki = root / "pki"
    admin_token = secrets.token_urlsafe(32)
    (root / "tokens.csv").write_text(
        f'{admin_token},admin,admin-uid,"system:masters"\n{secrets.token_urlsafe(32)},nobody,nobody-uid\n')
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    cluster = KubeCluster(server=server, ca_path=pki / "ca.crt", admin_token=admin_token,
                          kubeconfig=root / "admin.kubeconfig", tools=tools, root=root)
    _kubeconfig(cluster.kubeconfig, server, cluster.ca_path, admin_token)
    try:
        _spawn(cluster, "etcd", [
            "--name=test", f"--data-dir={root / 'etcd'}", "--log-level=warn", "--unsafe-no-fsync",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=test=http://127.0.0.1:{peer_port}",
        ])
        _spawn(cluster, "kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{etcd_port}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--token-auth-file={root / 'tokens.csv'}", "--authorization-mode=RBAC", "--anonymous-auth=false",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            "--endpoint-reconciler-type=none",  # as envtest: 127.0.0.1 cannot be the `kubernetes` Endpoints
            "--v=0",
        ])
        _ready(cluster, "kube-apiserver /readyz", lambda: _readyz(cluster))
        common = [f"--kubeconfig={cluster.kubeconfig}", "--leader-elect=false", "--secure-port=0", "--v=0"]
        _spawn(cluster, "kube-controller-manager", [
            *common, f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={cluster.ca_path}", f"--cluster-cidr={POD_CIDR}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--use-service-account-credentials=false",
        ])
        _spawn(cluster, "kube-scheduler", common)
        (root / "kwok.yaml").write_text(kwok_stages(tools))
        _spawn(cluster, "kwok", [
            f"--kubeconfig={cluster.kubeconfig}", f"--config={root / 'kwok.yaml'}", "--manage-all-nodes=true",
            "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/24", "--node-ip=192.0.2.1",
        ])
        cluster.post("/api/v1/nodes", _node(NODE_NAME))
        for path in sorted((tools / "crds" / "gateway-api").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    _apply_manifest(cluster, doc)
        names = gateway_crd_names(tools)
        _ready(cluster, "the Gateway API CRDs Established", lambda: all(_established(cluster, n) for n in names))
        _ready(cluster, f"node {NODE_NAME} Ready", lambda: node_ready(cluster, NODE_NAME))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node(name: str) -> dict[str, Any]:
    """A fake node as kwokctl makes one: kwok's node-initialize stage then reports it Ready."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok"}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                   "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                   "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake"},
                   "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]},
    }


def node_ready(cluster: KubeCluster, name: str) -> bool:
    node = cluster.get(f"/api/v1/nodes/{name}")
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """The test cluster, shared by the whole session; started on first use."""
    tools = kube_tools_dir()
    if tools is None:
        message = "the test cluster's programs are not built; run `make kubetools` (scripts/ensure-kube-tools.sh)"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    cluster = start_cluster(tools, tmp_path_factory.mktemp("kube"))
    try:
        yield cluster
    finally:
        cluster.stop()


def main() -> None:
    """`python tests/kubecluster.py`: start a test cluster by hand, print its kubeconfig, stop it on Ctrl-C."""
    import tempfile

    tools = kube_tools_dir()
    if tools is None:
        raise SystemExit("kubecluster: the test cluster's programs are not built; run `make kubetools`")
    started = time.monotonic()
    cluster = start_cluster(tools, Path(tempfile.mkdtemp(prefix="cellplane-kube-")))
    print(f"kubecluster: up in {time.monotonic() - started:.1f} s at {cluster.server}")
    print(f"export KUBECONFIG={cluster.kubeconfig}   # logs: {cluster.root / 'logs'}; Ctrl-C stops it")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
