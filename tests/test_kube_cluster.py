"""The test cluster itself (tests/kubecluster.py): a real API server with working controllers, scheduler, fake
nodes and RBAC, so that the Kubernetes data plane's tests can rely on it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kubecluster import KubeCluster, KubeError, gateway_crd_names


def _namespace(cluster: KubeCluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{"name": "web", "image": "registry.invalid/web@sha256:" + "0" * 64,
                                "ports": [{"containerPort": 8080}]}]}},
        },
    }


def test_the_cluster_serves_readyz_and_the_gateway_api_crds_are_established(kube_cluster: KubeCluster) -> None:
    with kube_cluster.client() as c:
        assert c.get("/readyz").text == "ok"
    names = gateway_crd_names(kube_cluster.tools)
    assert "httproutes.gateway.networking.k8s.io" in names and "gateways.gateway.networking.k8s.io" in names
    for name in names:
        crd = kube_cluster.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True", name
    assert kube_cluster.get("/apis/gateway.networking.k8s.io/v1/httproutes")["items"] == []


def test_a_deployment_of_two_replicas_on_the_fake_node_becomes_available(kube_cluster: KubeCluster) -> None:
    ns = _namespace(kube_cluster)
    applied = kube_cluster.apply(f"/apis/apps/v1/namespaces/{ns}/deployments/web", _deployment("web", 2))
    assert {m["manager"] for m in applied["metadata"]["managedFields"]} == {"cellplane-tests"}

    def available() -> dict[str, Any] | None:
        d = kube_cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
        conditions = {c["type"]: c["status"] for c in d["status"].get("conditions", [])}
        return d if conditions.get("Available") == "True" and d["status"].get("readyReplicas") == 2 else None

    deployment = kube_cluster.wait_for("deployment web Available with 2 ready replicas", available)
    assert deployment["status"]["availableReplicas"] == 2
    pods = kube_cluster.get(f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == "kwok-node"  # the scheduler bound it
        assert pod["status"]["phase"] == "Running"  # kwok played the kubelet
        assert pod["status"]["podIP"]


def test_rbac_denies_a_token_without_a_binding(kube_cluster: KubeCluster) -> None:
    ns = _namespace(kube_cluster)
    token = kube_cluster.mint_token(ns, "unbound")
    with pytest.raises(KubeError) as denied:
        kube_cluster.get(f"/api/v1/namespaces/{ns}/secrets", token=token)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{ns}:unbound" in str(denied.value)

    kube_cluster.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "read-secrets"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]})
    kube_cluster.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "read-secrets"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets"},
        "subjects": [{"kind": "ServiceAccount", "name": "unbound", "namespace": ns}]})
    assert kube_cluster.get(f"/api/v1/namespaces/{ns}/secrets", token=token)["kind"] == "SecretList"
    with pytest.raises(KubeError) as still_denied:
        kube_cluster.get(f"/api/v1/namespaces/{ns}/configmaps", token=token)
    assert still_denied.value.status == 403


def test_a_deleted_namespace_is_gone_with_what_it_held(kube_cluster: KubeCluster) -> None:
    ns = _namespace(kube_cluster)
    kube_cluster.post(f"/api/v1/namespaces/{ns}/configmaps",
                      {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}})
    kube_cluster.delete(f"/api/v1/namespaces/{ns}")

    def gone() -> bool:
        try:
            kube_cluster.get(f"/api/v1/namespaces/{ns}")
        except KubeError as e:
            return e.status == 404
        return False

    kube_cluster.wait_for(f"namespace {ns} deleted by the namespace controller", gone)
    with pytest.raises(KubeError) as missing:
        kube_cluster.get(f"/api/v1/namespaces/{ns}/configmaps/settings")
    assert missing.value.status == 404
