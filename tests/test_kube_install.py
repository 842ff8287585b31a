"""A Kubernetes data plane's install manifest (kubernetes/install.py, `cellplane dataplane manifest --kubernetes`):
every object valid for Kubernetes 1.30 to 1.37, applied to the real test cluster (tests/kubecluster.py), and the
agent's ServiceAccount token, minted through the TokenRequest API, allowed exactly what the runtime needs: it
applies and deletes every object the renderer makes for a realistic project, and is refused (403) RBAC writes,
Secret reads by name, nodes, CRDs and pods/exec."""

from __future__ import annotations

import asyncio
import base64
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.contract import DesiredState
from cellplane.dataplane.settings import AgentSettings
from cellplane.kubernetes import KeyOpener, names, render_state
from cellplane.kubernetes.install import AGENT, RULES, TOKEN_SECRET, InstallOptions, manifest
from cellplane.kubernetes.runtime import KubernetesRuntime, KubernetesSettings
from cellplane.sealing import public_key_text, seal
from desiredkit import deployment_wire, state_wire
from kubecluster import KubeCluster, KubeError
from kuberuntimekit import Host, path_of
from kubestates import shop_state

KEY = X25519PrivateKey.generate()
VERSIONS = tuple(f"1.{minor}" for minor in range(30, 38))
SYSTEM = "cellplane-system"
TOKEN = "cp_agent-token-3b9d1f-plaintext"
OPTIONS = InstallOptions(name="cluster-1", organization="acme", controlplane="https://cp.example.com",
                         image="registry.example.com/cellplane/agent@sha256:" + "cd" * 32,
                         environments=("development", "production"))


@pytest.fixture(scope="module", autouse=True)
def schemas_read_once() -> Iterator[None]:
    """As in test_kube_render: kubernetes-validate's schema files parsed once per module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kubernetes_validate.utils, "schema_contents",
                      functools.cache(kubernetes_validate.utils.schema_contents))
        yield


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    program = str(Path(sys.executable).parent / "cellplane")
    return subprocess.run([program, "--server", "https://cp.example.com", "--org", "acme", *args],
                          capture_output=True, text=True, input=stdin, timeout=60)


def test_every_object_of_the_manifest_validates_strictly_against_kubernetes_1_30_to_1_37() -> None:
    objects = manifest(InstallOptions(**{**OPTIONS.__dict__, "token": TOKEN, "storage_class": "standard"}))
    for obj in objects:
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} against {version}: "
                            f"{'.'.join(map(str, e.path))}: {e.message}")
    assert [o["kind"] for o in objects] == [
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret", "PersistentVolumeClaim",
        "Deployment", "Service", "Service", "Service", "Service"]


def test_the_agents_role_names_every_verb_it_grants_and_never_a_wildcard_rbac_crd_node_or_exec() -> None:
    role = find(manifest(OPTIONS), "ClusterRole")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert not any("*" in part for triple in granted for part in triple)
    assert not {g for g, _, _ in granted} & {"rbac.authorization.k8s.io", "apiextensions.k8s.io",
                                              "admissionregistration.k8s.io", "certificates.k8s.io"}
    assert not {r for _, r, _ in granted} & {"nodes", "pods/exec", "pods/attach", "pods/portforward",
                                              "serviceaccounts/token", "persistentvolumes"}
    assert not {v for _, _, v in granted} & {"escalate", "bind", "impersonate", "deletecollection", "update"}
    assert ("", "secrets", "get") not in granted  # the runtime lists its own Secrets by label, never reads by name
    assert ("", "pods/log", "get") in granted and ("gateway.networking.k8s.io", "httproutes", "patch") in granted
    assert len(role["rules"]) == len(RULES)


def test_the_agent_runs_non_root_read_only_with_its_cached_state_on_a_volume_claim_and_one_replica() -> None:
    objects = manifest(OPTIONS)
    dep = find(objects, "Deployment", AGENT)
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == OPTIONS.image and pod["serviceAccountName"] == AGENT
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["runAsUser"] > 0
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    args = container["args"]
    assert args[:2] == ["--org", "acme"] and args[2:5] == ["dataplane", "run", "--kubernetes"]
    assert args[args.index("--controlplane") + 1] == "https://cp.example.com"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == find(objects, "PersistentVolumeClaim")[
        "metadata"]["name"]
    assert volumes["token"]["secret"]["secretName"] == TOKEN_SECRET
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container)
    assert container["startupProbe"]["tcpSocket"] == {"port": "metrics"} and "--metrics-port" in args
    bare = find(manifest(InstallOptions(**{**OPTIONS.__dict__, "serve_gateways": False})), "Deployment")
    (alone,) = bare["spec"]["template"]["spec"]["containers"]
    # without the gateways nothing listens in the agent's pod (no metrics endpoint either): no port to probe
    assert not {"ports", "startupProbe", "livenessProbe", "readinessProbe"} & set(alone)
    ephemeral = manifest(InstallOptions(**{**OPTIONS.__dict__, "persistent": False}))
    assert not [o for o in ephemeral if o["kind"] == "PersistentVolumeClaim"]
    assert {v["name"]: v for v in find(ephemeral, "Deployment")["spec"]["template"]["spec"]["volumes"]}[
        "data"] == {"name": "data", "emptyDir": {}}


def test_the_gateway_services_select_the_pods_the_rendered_network_policies_admit() -> None:
    objects = manifest(OPTIONS)
    rendered = render_state(shop_state(KEY), KeyOpener(KEY))
    admitted = [peer for o in rendered if o["kind"] == "NetworkPolicy"
                for rule in o["spec"].get("ingress", []) for peer in rule["from"] if "namespaceSelector" in peer]
    assert admitted
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert set(services) == {"gateway--development--external", "gateway--development--internal",
                             "gateway--production--external", "gateway--production--internal"}
    selectors = [s["spec"]["selector"] for s in services.values()]
    for peer in admitted:
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": SYSTEM}
        assert peer["podSelector"]["matchLabels"] in selectors
    routes = [o for o in rendered if o["kind"] == "HTTPRoute"]
    assert routes and all(ref["name"] in services for r in routes for rule in r["spec"]["rules"]
                          for ref in rule["backendRefs"])
    for obj in objects:  # never labelled as the agent's own, so its pruning never deletes the install
        assert obj["metadata"]["labels"].get("app.kubernetes.io/managed-by") != "cellplane"


def test_the_cli_prints_the_manifest_with_the_token_only_when_given_a_token_file(tmp_path: Path) -> None:
    done = cli("dataplane", "manifest", "--kubernetes", "--name", "cluster-1", "--environment", "development",
               "--image", OPTIONS.image)
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert f"create secret generic {TOKEN_SECRET}" in done.stderr
    token_file = tmp_path / "agent.token"
    token_file.write_text(TOKEN + "\n")
    done = cli("dataplane", "manifest", "--kubernetes", "--name", "cluster-1", "--token-file", str(token_file),
               "--namespace", "platform", "--control-plane", "https://cp.internal:8780",
               "--external-url", "https://apps.example.com")
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    secret = find(docs, "Secret", TOKEN_SECRET)
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN and secret["metadata"]["namespace"] == "platform"
    assert TOKEN not in done.stderr
    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--controlplane") + 1] == "https://cp.internal:8780"
    assert args[args.index("--external-url") + 1] == "https://apps.example.com" and "--internal-url" not in args
    refused = cli("dataplane", "manifest", "--name", "cluster-1")
    assert refused.returncode != 0 and "--kubernetes" in refused.stderr


# --- against the real test cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The manifest the CLI prints, applied document by document (server-side, as `kubectl apply --server-side`)
    by the admin; the agent's ServiceAccount token minted through the TokenRequest API."""
    token_file = tmp_path_factory.mktemp("install") / "agent.token"
    token_file.write_text(TOKEN)
    printed = cli("dataplane", "manifest", "--kubernetes", "--name", OPTIONS.name, "--image", OPTIONS.image,
                  "--token-file", str(token_file), *(f"--environment={e}" for e in OPTIONS.environments))
    assert printed.returncode == 0, printed.stderr
    objects = list(yaml.safe_load_all(printed.stdout))
    assert objects == manifest(InstallOptions(**{**OPTIONS.__dict__, "token": TOKEN}))
    for obj in objects:
        kube_cluster.apply(path_of(obj), obj)
    yield kube_cluster.mint_token(SYSTEM, AGENT)
    for obj in reversed(objects):
        if obj["kind"] != "Namespace":
            kube_cluster.delete(path_of(obj))


def allowed(cluster: KubeCluster, token: str, verb: str, resource: str, *, group: str = "",
            namespace: str | None = None, subresource: str | None = None) -> bool:
    """What the API server's authorizer says for the token (a SelfSubjectAccessReview, as `kubectl auth can-i`)."""
    attributes: dict[str, Any] = {"verb": verb, "resource": resource, "group": group}
    if namespace:
        attributes["namespace"] = namespace
    if subresource:
        attributes["subresource"] = subresource
    review = cluster.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                          {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                           "spec": {"resourceAttributes": attributes}}, token=token)
    return bool(review["status"]["allowed"])


def refused(call: Any) -> int:
    with pytest.raises(KubeError) as caught:
        call()
    return caught.value.status


def test_the_manifest_applies_to_the_cluster_and_the_agent_deployment_waits_on_its_objects(
        kube_cluster: KubeCluster, installed: str) -> None:
    dep = kube_cluster.get(f"/apis/apps/v1/namespaces/{SYSTEM}/deployments/{AGENT}")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == AGENT
    secret = kube_cluster.get(f"/api/v1/namespaces/{SYSTEM}/secrets/{TOKEN_SECRET}")
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN
    ns = kube_cluster.get(f"/api/v1/namespaces/{SYSTEM}")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # the agent's pod passes the restricted pod security admission: its ReplicaSet makes it
    kube_cluster.wait_for("the agent's pod", lambda: kube_cluster.get(
        f"/api/v1/namespaces/{SYSTEM}/pods?labelSelector=app.kubernetes.io/name%3D{AGENT}")["items"])


def test_the_agents_token_applies_lists_and_deletes_everything_the_renderer_makes_for_a_project(
        kube_cluster: KubeCluster, installed: str) -> None:
    rendered = render_state(shop_state(KEY, organization="rbac"), KeyOpener(KEY))
    assert {o["kind"] for o in rendered} == {"Namespace", "NetworkPolicy", "ConfigMap", "Secret", "Service",
                                             "Deployment", "CronJob", "Job", "Gateway", "HTTPRoute"}
    for obj in rendered:  # server-side apply creates each: the agent's field manager, with its token
        kube_cluster.apply(path_of(obj), obj, field_manager="cellplane", token=installed)
    for obj in rendered:  # and applies them again (the drift correction's path)
        kube_cluster.apply(path_of(obj), obj, field_manager="cellplane", token=installed)
    cells = {o["metadata"]["namespace"] for o in rendered if o["kind"] == "Deployment"}
    for ns in cells:
        for listed in ("/api/v1/namespaces/{ns}/pods", "/apis/apps/v1/namespaces/{ns}/deployments",
                       "/apis/batch/v1/namespaces/{ns}/jobs", "/api/v1/namespaces/{ns}/secrets"):
            kube_cluster.get(listed.format(ns=ns) + "?labelSelector=app.kubernetes.io/managed-by%3Dcellplane",
                             token=installed)
        assert allowed(kube_cluster, installed, "get", "pods", namespace=ns, subresource="log")
    for obj in reversed(rendered):  # pruning: namespaces last
        kube_cluster.delete(path_of(obj), token=installed)


def test_the_agents_token_is_refused_rbac_writes_secrets_by_name_nodes_crds_and_exec(
        kube_cluster: KubeCluster, installed: str) -> None:
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "agent-wants-admin"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": AGENT, "namespace": SYSTEM}]}
    assert refused(lambda: kube_cluster.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding,
                                             token=installed)) == 403
    role = find(manifest(OPTIONS), "ClusterRole")
    wider = {**role, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}
    assert refused(lambda: kube_cluster.apply(path_of(role), wider, token=installed)) == 403
    assert refused(lambda: kube_cluster.get(f"/api/v1/namespaces/kube-system/secrets/{TOKEN_SECRET}",
                                            token=installed)) == 403
    assert refused(lambda: kube_cluster.get(f"/api/v1/namespaces/{SYSTEM}/secrets/{TOKEN_SECRET}",
                                            token=installed)) == 403
    assert refused(lambda: kube_cluster.delete("/api/v1/nodes/kwok-node", token=installed)) == 403
    assert refused(lambda: kube_cluster.get("/api/v1/nodes", token=installed)) == 403
    assert refused(lambda: kube_cluster.delete(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/httproutes.gateway.networking.k8s.io",
        token=installed)) == 403
    assert refused(lambda: kube_cluster.post(f"/api/v1/namespaces/{SYSTEM}/serviceaccounts/{AGENT}/token",
                                             {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                              "spec": {}}, token=installed)) == 403
    for resource, subresource, verb in (("pods", "exec", "create"), ("pods", "attach", "create"),
                                        ("pods", "portforward", "create"), ("pods", None, "create"),
                                        ("persistentvolumes", None, "list"), ("serviceaccounts", None, "create")):
        assert not allowed(kube_cluster, installed, verb, resource, namespace=SYSTEM, subresource=subresource), \
            f"{verb} {resource}/{subresource}"
    assert allowed(kube_cluster, installed, "list", "secrets", namespace="kube-system")  # said in the docs


def test_server_side_apply_of_a_new_object_needs_create_so_the_role_grants_it(
        kube_cluster: KubeCluster, installed: str) -> None:
    """Why ``create`` is in the role: without it, the agent's first apply of an object is refused."""
    role = find(manifest(OPTIONS), "ClusterRole")
    narrower = {**role, "metadata": {"name": "agent-without-create"},
                "rules": [{**r, "verbs": [v for v in r["verbs"] if v != "create"]} for r in role["rules"]]}
    kube_cluster.apply(path_of(narrower), narrower)
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "agent-without-create"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "agent-without-create"},
               "subjects": [{"kind": "ServiceAccount", "name": "no-create", "namespace": SYSTEM}]}
    kube_cluster.apply(path_of(binding), binding)
    token = kube_cluster.mint_token(SYSTEM, "no-create")
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe", "namespace": SYSTEM},
              "data": {"a": "1"}}
    try:
        assert refused(lambda: kube_cluster.apply(path_of(config), config, token=token)) == 403
        kube_cluster.apply(path_of(config), config, field_manager="cellplane", token=installed)
        config["data"] = {"a": "2"}  # an object that exists: patch alone is enough
        kube_cluster.apply(path_of(config), config, field_manager="cellplane", token=token)
    finally:
        for obj in (config, binding, narrower):
            kube_cluster.delete(path_of(obj))


# --- the Kubernetes runtime with the agent's token: least privilege proven by use ---------------------------


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


def test_the_kubernetes_runtime_with_the_agents_token_deploys_a_service_to_ready_and_prunes_it(
        kube_cluster: KubeCluster, installed: str, tmp_path: Path) -> None:
    host = Host(tmp_path / "agent")
    settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=host.state.root,
                             name=OPTIONS.name, organization=OPTIONS.organization, runtime="kubernetes")
    runtime = KubernetesRuntime(settings, KubernetesSettings(
        kubeconfig=agent_kubeconfig(kube_cluster, installed, tmp_path / "agent.kubeconfig"),
        drift_interval=3600, observe_interval=0.3))
    password = seal(public_key_text(host.key), "s3cret", "development/shop/api/DB_PASSWORD")
    wire = deployment_wire(
        id="dep_00000000inst", release="r1",
        artifact={"digest": "sha256:" + "0" * 64, "image": "registry.example.com/acme/api@sha256:" + "ab" * 32},
        endpoints=[{"name": "api", "port": 8080, "type": "REST", "basePath": "/", "visibility": ["Public"]}],
        env=[{"name": "DB_PASSWORD", "sealed": password}],
        files=[{"name": "app.conf", "mountPath": "/etc/app/app.conf", "content": "workers = 2\n"}])

    def desired(deployments: list[dict[str, Any]], revision: str) -> DesiredState:
        return DesiredState.from_wire(state_wire(deployments, organization=OPTIONS.organization,
                                                 dataPlane=OPTIONS.name, revision=revision))

    async def scenario() -> tuple[Any, Any]:
        await runtime.start(host, None)
        try:
            await runtime.apply(desired([wire], "one"))
            assert runtime.errors == {}
            deadline = asyncio.get_running_loop().time() + 90
            while True:
                report = next((d for d in (await runtime.status()).deployments if d.id == "dep_00000000inst"), None)
                if report is not None and report.state == "ready":
                    break
                assert asyncio.get_running_loop().time() < deadline, f"not ready: {report}"
                await asyncio.sleep(0.3)
            await runtime.apply(desired([], "two"))
            return report, runtime.pruned
        finally:
            await runtime.stop()
            await runtime.close()

    report, pruned = asyncio.run(scenario())
    assert [r.state for r in report.replicas] == ["ready"]
    assert pruned > 0
    ns = names.namespace("acme", "shop", "development")
    assert kube_cluster.wait_for("the cell pruned", lambda: _gone_or_terminating(kube_cluster, ns))
    for obj in manifest(OPTIONS):  # and nothing of the install was taken for a leftover
        kube_cluster.get(path_of(obj))


def _gone_or_terminating(cluster: KubeCluster, namespace: str) -> bool:
    try:
        return cluster.get(f"/api/v1/namespaces/{namespace}").get("status", {}).get("phase") == "Terminating"
    except KubeError as e:
        return e.status == 404
