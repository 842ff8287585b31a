"""`cellplane dataplane run --kubernetes`: what it refuses before it starts (one line, a non-zero exit), and the data
plane an agent registers as type kubernetes on a real control plane."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from buildkit import BuildServer
from cellplane.sealing import public_key_text
from kubecluster import KubeCluster

ORG = "/organizations/default"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cellplane.cli.main", "dataplane", "run", "--token", "t",
                           "--controlplane", "http://127.0.0.1:9", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "KUBERNETES_SERVICE_HOST": "", **(env or {})})


def test_a_missing_or_unreadable_kubeconfig_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    missing = _run("--kubernetes", "--kubeconfig", str(tmp_path / "nope.yaml"))
    assert missing.returncode != 0
    assert missing.stderr.strip() == (f"error: --kubeconfig {tmp_path / 'nope.yaml'}: cannot read: "
                                      "No such file or directory")
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: Config\n")
    result = _run("--kubernetes", "--kubeconfig", str(broken))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "not a usable kubeconfig (no 'clusters' entry)" in result.stderr
    nothing = _run("--kubernetes")
    assert nothing.returncode != 0
    assert nothing.stderr.strip() == ("error: no Kubernetes configuration: pass --kubeconfig FILE, or run the agent "
                                      "in a pod with a service account")
    assert "go with --kubernetes" in _run("--kubeconfig", str(broken)).stderr


def test_an_api_server_that_refuses_the_agents_credentials_is_one_line_and_a_non_zero_exit(
        kube_cluster: KubeCluster, tmp_path: Path) -> None:
    refused = tmp_path / "refused.kubeconfig"
    refused.write_text(kube_cluster.kubeconfig.read_text().replace(kube_cluster.admin_token, "not-a-token"))
    result = _run("--kubernetes", "--kubeconfig", str(refused), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: the Kubernetes API server at {kube_cluster.server} cannot be used: 401 Unauthorized: "
                      "Unauthorized"], result.stderr
    assert "Traceback" not in result.stderr


def test_an_agent_registering_with_the_kubernetes_runtime_makes_its_data_plane_of_type_kubernetes(
        build_server: BuildServer) -> None:
    c = build_server.client
    body = {"agentId": "kube-agent", "publicKey": public_key_text(X25519PrivateKey.generate()),
            "runtime": "kubernetes"}
    r = c.put(f"{ORG}/dataplanes/kube/agent", json=body)
    assert r.status_code == 200, r.text
    plane = c.get(f"{ORG}/dataplanes/kube")
    assert plane.status_code == 200, plane.text
    assert plane.json()["spec"]["type"] == "kubernetes"
    local = c.put(f"{ORG}/dataplanes/here/agent", json={**body, "runtime": "local", "agentId": "local-agent"})
    assert local.status_code == 200, local.text
    assert c.get(f"{ORG}/dataplanes/here").json()["spec"]["type"] == "local"
    refused = c.put(f"{ORG}/dataplanes/kube/agent", json={**body, "runtime": "nomad"})
    assert refused.status_code == 422 and "runtime" in refused.text
