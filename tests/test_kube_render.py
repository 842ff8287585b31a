"""The desired state rendered as Kubernetes objects (cellplane.kubernetes): valid for Kubernetes 1.30 to 1.37,
zero trust by NetworkPolicy, secrets only in Secrets, deterministic. Pure functions: no cluster needed."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import gatewayapi
from cellplane.contract import DesiredState
from cellplane.kubernetes import ClusterLayout, KeyOpener, inventory, render, render_state
from cellplane.kubernetes.render import render_deployment
from kubestates import CONSUMER_SECRET, DB_PASSWORD, SECRETS, TLS_KEY, deployment, endpoint, shop_state

VERSIONS = tuple(f"1.{minor}" for minor in range(30, 38))
KEY = X25519PrivateKey.generate()
OPENER = KeyOpener(KEY)
NS = "acme--shop--development"


@pytest.fixture(scope="module", autouse=True)
def schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads and parses its schema files (megabytes of JSON) at every call: kept once read, the
    validation of every object against eight versions takes 1 s instead of 6."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kubernetes_validate.utils, "schema_contents",
                      functools.cache(kubernetes_validate.utils.schema_contents))
        yield


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    rendering = render(shop_state(KEY), OPENER)
    assert rendering.blocked == {}
    return rendering.objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_every_object_validates_strictly_against_every_kubernetes_version_from_1_30_to_1_37(objects):
    kinds = set()
    for obj in objects:
        kinds.add(obj["kind"])
        if obj["kind"] in gatewayapi.CRDS:
            gatewayapi.validate(obj)
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} against {version}: "
                            f"{'.'.join(map(str, e.path))}: {e.message}")
    assert kinds == {"Namespace", "NetworkPolicy", "ConfigMap", "Secret", "Service", "Deployment", "CronJob", "Job",
                     "Gateway", "HTTPRoute"}


def test_the_strict_validation_refuses_a_field_kubernetes_does_not_know(objects):
    deployment_obj = json.loads(json.dumps(find(objects, "Deployment", "orders--v1")))
    deployment_obj["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment_obj, "1.37", strict=True)
    route = json.loads(json.dumps(next(o for o in objects if o["kind"] == "HTTPRoute")))
    route["spec"]["rules"][0]["matches"][0]["path"]["regex"] = "/x"
    with pytest.raises(gatewayapi.jsonschema.ValidationError):
        gatewayapi.validate(route)


def test_the_cell_is_a_namespace_that_enforces_the_restricted_pod_security_level(objects):
    ns = find(objects, "Namespace", NS)
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["cellplane.dev/project"] == "shop" and labels["cellplane.dev/environment"] == "development"
    assert labels["cellplane.dev/organization"] == "acme" and labels["cellplane.dev/data-plane"] == "cluster-1"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] not in ("Namespace", "Gateway", "HTTPRoute")} \
        == {NS}


def test_a_service_runs_its_image_by_digest_with_replicas_resources_probes_and_a_non_root_context(objects):
    dep = find(objects, "Deployment", "orders--v1")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/acme/orders@sha256:" + "ab" * 32
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"},
                                      "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert container["readinessProbe"] == {"httpGet": {"path": "/api/healthz", "port": 8080}, "initialDelaySeconds": 0,
                                           "periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 3}
    assert container["livenessProbe"]["tcpSocket"] == {"port": 8080}
    assert container["livenessProbe"]["initialDelaySeconds"] == 5
    assert [p["containerPort"] for p in container["ports"]] == [8080, 8083, 8081, 9090, 8082, 9100]
    assert pod["terminationGracePeriodSeconds"] == 15
    assert pod["restartPolicy"] == "Always" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    labels = dep["metadata"]["labels"]
    assert labels["cellplane.dev/deployment"] == "dep_shop_orders_development"
    assert labels["cellplane.dev/release"] == "rel_orders_1"
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_a_service_without_a_readiness_probe_is_ready_when_its_first_port_accepts_connections(objects):
    (container,) = find(objects, "Deployment", "inventory--v1")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["tcpSocket"] == {"port": 8080}
    assert "livenessProbe" not in container


def test_variables_files_and_connections_reach_the_container_and_secrets_only_by_reference(objects):
    (container,) = find(objects, "Deployment", "orders--v1")["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["LOG_LEVEL"] == "debug"
    assert env["DB_PASSWORD"] == {"secretKeyRef": {"name": "orders--v1", "key": "env.DB_PASSWORD"}}
    assert env["INVENTORY_URL"] == f"http://inventory--v1--http.{NS}.svc.cluster.local:8080/stock"
    gateway = "http://gateway--development--internal.cellplane-system.svc.cluster.local:8080"
    assert env["BILLING_URL"] == gateway + "/billing/invoices/v2"
    assert env["BILLING_KEY"] == "ck_billing"
    assert env["BILLING_SECRET"] == {"secretKeyRef": {"name": "orders--v1", "key": "connection.billing"}}
    assert env["BILLING_TOKEN_URL"] == gateway + "/_cellplane/token"
    assert env["WEATHER_URL"] == "https://api.weather.example/v3"
    assert env["PORT"] == "8080" and env["CELLPLANE_RELEASE"] == "rel_orders_1"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/app/config/settings.toml"] == {"name": "config", "mountPath": "/app/config/settings.toml",
                                                   "subPath": "file.settings", "readOnly": True}
    assert mounts["/app/tls/key.pem"]["name"] == "secret" and mounts["/tmp"]["name"] == "tmp"
    config_map = find(objects, "ConfigMap", "orders--v1")
    assert config_map["data"] == {"file.settings": "mode = 'prod'\n"}
    secret = find(objects, "Secret", "orders--v1")
    assert secret["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "env.DB_PASSWORD": DB_PASSWORD, "file.tls-key": TLS_KEY, "connection.billing": CONSUMER_SECRET}


def test_no_secret_plaintext_appears_anywhere_but_in_the_data_of_a_secret(objects):
    encoded = {base64.b64encode(s.encode()).decode() for s in SECRETS}
    for obj in objects:
        if obj["kind"] == "Secret":
            obj = {**obj, "data": {}}
        text = json.dumps(obj)
        assert not [s for s in (*SECRETS, *encoded) if s in text], f"{obj['kind']}/{obj['metadata']['name']}"


def test_each_endpoint_gets_a_service_on_its_port_selecting_the_deployments_pods(objects):
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert sorted(services) == ["inventory--v1--http", "orders--v1--admin", "orders--v1--api", "orders--v1--graphql",
                                "orders--v1--grpc", "orders--v1--internal", "orders--v1--metrics"]
    api = services["orders--v1--api"]["spec"]
    assert api["ports"] == [{"name": "http-8080", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]
    assert api["selector"] == find(objects, "Deployment", "orders--v1")["spec"]["selector"]["matchLabels"]


def test_a_scheduled_task_is_a_cronjob_and_a_manual_run_a_job_that_runs_once(objects):
    cron = find(objects, "CronJob", "nightly--v1")["spec"]
    assert (cron["schedule"], cron["timeZone"], cron["concurrencyPolicy"]) == ("0 3 * * *", "Europe/Berlin", "Forbid")
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and cron["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert "readinessProbe" not in pod["containers"][0] and "ports" not in pod["containers"][0]
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert len(jobs) == 1
    job = jobs[0]
    assert job["metadata"]["labels"]["cellplane.dev/run"] == "run_0123456789abcdef"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["CELLPLANE_TASK_RUN"] == "run_0123456789abcdef"
    assert env["DB_PASSWORD"] == {"secretKeyRef": {"name": "migrate--v1", "key": "env.DB_PASSWORD"}}
    assert not [o for o in objects if o["kind"] in ("Deployment", "CronJob") and "migrate" in o["metadata"]["name"]]


def test_the_cell_denies_everything_but_dns_and_what_each_deployment_declares(objects):
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    (dns,) = policies["allow-dns"]["egress"]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    orders = policies["orders--v1"]
    same_cell, internal, external = orders["ingress"]
    assert same_cell["from"] == [{"podSelector": {}}]
    assert [p["port"] for p in same_cell["ports"]] == [8080, 8083, 8081, 9090, 8082, 9100]
    assert internal["from"][0]["podSelector"]["matchLabels"] == {"cellplane.dev/gateway-internal": "true"}
    assert internal["from"][0]["namespaceSelector"] == {"matchLabels": {
        "kubernetes.io/metadata.name": "cellplane-system"}}
    assert [p["port"] for p in internal["ports"]] == [8080, 8083, 8081, 9090]
    assert external["from"][0]["podSelector"]["matchLabels"] == {"cellplane.dev/gateway-external": "true"}
    assert [p["port"] for p in external["ports"]] == [8080, 8083]
    to_inventory, to_gateway, to_weather, to_legacy = orders["egress"]
    assert to_inventory == {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "inventory",
                                                                    "app.kubernetes.io/instance": "inventory--v1"}}}],
                            "ports": [{"protocol": "TCP", "port": 8080}]}
    assert to_gateway["ports"] == [{"protocol": "TCP", "port": "i-development"}]  # the gateway pods' named port
    assert to_gateway["to"][0]["podSelector"]["matchLabels"] == {"cellplane.dev/gateway-internal": "true"}
    assert to_weather == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}],
                          "ports": [{"protocol": "TCP", "port": 443}]}
    assert to_legacy == {"to": [{"ipBlock": {"cidr": "10.20.30.40/32"}}], "ports": [{"protocol": "TCP", "port": 5432}]}
    inventory_policy = policies["inventory--v1"]
    assert inventory_policy["policyTypes"] == ["Ingress"] and len(inventory_policy["ingress"]) == 1
    assert "nightly--v1" not in policies and "migrate--v1" not in policies


def test_public_endpoints_are_routed_on_both_gateways_organization_ones_on_the_internal_one(objects):
    routes = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "HTTPRoute"}
    assert sorted(routes) == ["development--shop--orders--v1--admin--internal",
                              "development--shop--orders--v1--api--external",
                              "development--shop--orders--v1--api--internal",
                              "development--shop--orders--v1--graphql--external",
                              "development--shop--orders--v1--graphql--internal"]
    api = routes["development--shop--orders--v1--api--external"]
    assert api["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                  "name": "development--external"}]
    (rule,) = api["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/shop/orders/v1/api"}}]
    assert rule["backendRefs"] == [{"group": "", "kind": "Service", "name": "gateway--development--external",
                                    "port": 8080}]
    gateways = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Gateway"}
    assert sorted(gateways) == ["development--external", "development--internal"]
    assert gateways["development--external"]["spec"]["gatewayClassName"] == "cellplane"


def test_the_same_state_sealed_twice_renders_byte_identical_objects_in_a_fixed_order():
    first, second = render_state(shop_state(KEY), OPENER), render_state(shop_state(KEY), OPENER)
    assert json.dumps(first) == json.dumps(second)
    assert len(inventory(first)) == len(first)
    assert ("apps/v1", "Deployment", NS, "orders--v1") in inventory(first)
    assert ("v1", "Namespace", "", NS) in inventory(first)


def checksum(objects: list[dict[str, Any]]) -> str:
    template = find(objects, "Deployment", "orders--v1")["spec"]["template"]
    return str(template["metadata"]["annotations"]["cellplane.dev/configuration"])


def test_a_changed_secret_or_file_changes_the_pod_templates_checksum_and_so_rolls_new_pods(objects):
    before = checksum(objects)
    assert checksum(render_state(shop_state(KEY, db_password="another-password"), OPENER)) != before
    state = shop_state(KEY)
    orders = state.deployments[0]
    changed = orders.model_copy(update={"files": [orders.files[0].model_copy(update={"content": "mode = 'x'\n"}),
                                                  orders.files[1]]})
    other = state.model_copy(update={"deployments": [changed, *state.deployments[1:]]})
    assert checksum(render_state(other, OPENER)) != before
    assert checksum(render_state(shop_state(KEY, log_level="info"), OPENER)) == before  # in the template itself


def test_the_checksum_is_keyed_so_another_data_planes_key_gives_another(objects):
    other = X25519PrivateKey.generate()
    assert checksum(render_state(shop_state(other), KeyOpener(other))) != checksum(objects)


def blocked_state(**fields: Any) -> DesiredState:
    state = shop_state(KEY)
    return state.model_copy(update={"deployments": [deployment("shop", "web", **fields), *state.deployments]})


def test_a_release_without_an_image_is_blocked_saying_a_kubernetes_data_plane_needs_a_registry():
    rendering = render(blocked_state(image=False, endpoints=[endpoint("http", 8080, "Public")]), OPENER)
    assert "registry" in rendering.blocked["dep_shop_web_development"]
    assert not [o for o in rendering.objects if o["metadata"]["name"].startswith("web")]
    assert find(rendering.objects, "Namespace", NS)  # the cell stays: what runs there keeps running


def test_a_deployment_the_control_plane_blocked_renders_nothing_and_says_why():
    rendering = render(blocked_state(blocked="dependency 'db': no such component"), OPENER)
    assert rendering.blocked == {"dep_shop_web_development": "dependency 'db': no such component"}


def test_a_secret_this_data_planes_key_cannot_open_blocks_the_deployment():
    from cellplane.contract import DesiredEnv
    from kubestates import sealed

    stranger = X25519PrivateKey.generate()
    rendering = render(blocked_state(env=[DesiredEnv(name="TOKEN", sealed=sealed(stranger, "x", "a/b/c/TOKEN"))]),
                       OPENER)
    assert "cannot be opened" in rendering.blocked["dep_shop_web_development"]
    rendering = render(blocked_state(env=[DesiredEnv(name="TOKEN", sealed=None)]), OPENER)
    assert "register the agent" in rendering.blocked["dep_shop_web_development"]


def test_a_schedule_with_seconds_is_blocked_because_cronjobs_run_by_the_minute():
    from cellplane.contract import DesiredSchedule

    rendering = render(blocked_state(type_="scheduled-task", schedule=DesiredSchedule(cron="0 3 * * * 30")), OPENER)
    assert "by the minute" in rendering.blocked["dep_shop_web_development"]


def test_an_autoscaled_service_leaves_its_replicas_to_the_autoscaler():
    state = shop_state(KEY)
    objects = render_deployment(state, state.deployments[0], OPENER, ClusterLayout(), autoscaled=True)
    assert "replicas" not in find(objects, "Deployment", "orders--v1")["spec"]


def test_a_cluster_layout_moves_the_gateways_and_the_dns_the_cell_points_at():
    layout = ClusterLayout(system_namespace="cp-edge", gateway_class="eg", gateway_port=9000,
                           cluster_domain="k8s.internal", hostname="apps.example.com")
    objects = render_state(shop_state(KEY), OPENER, layout)
    (container,) = find(objects, "Deployment", "orders--v1")["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["BILLING_URL"].startswith("http://gateway--development--internal.cp-edge.svc."
                                                       "k8s.internal:9000/")
    external = find(objects, "Gateway", "development--external")
    assert external["metadata"]["namespace"] == "cp-edge" and external["spec"]["gatewayClassName"] == "eg"
    assert external["spec"]["listeners"][0]["hostname"] == "apps.example.com"
    for obj in objects:
        if obj["kind"] in gatewayapi.CRDS:
            gatewayapi.validate(obj)


def test_a_worker_without_endpoints_gets_a_deployment_but_no_service_route_probe_or_policy_of_its_own():
    state = shop_state(KEY)
    worker = deployment("shop", "mailer", type_="worker")
    udp = deployment("shop", "syslog", endpoints=[endpoint("logs", 5140, "Project", "UDP")])
    objects = render_state(state.model_copy(update={"deployments": [*state.deployments, worker, udp]}), OPENER)
    (container,) = find(objects, "Deployment", "mailer--v1")["spec"]["template"]["spec"]["containers"]
    assert "ports" not in container and "readinessProbe" not in container and "PORT" not in env_of(container)
    assert not [o for o in objects if o["metadata"]["name"].startswith("mailer") and o["kind"] != "Deployment"]
    assert find(objects, "Service", "syslog--v1--logs")["spec"]["ports"][0]["protocol"] == "UDP"
    (udp_container,) = find(objects, "Deployment", "syslog--v1")["spec"]["template"]["spec"]["containers"]
    assert "readinessProbe" not in udp_container  # no TCP connect to wait for
    assert find(objects, "NetworkPolicy", "syslog--v1")["spec"]["ingress"][0]["ports"] == [
        {"protocol": "UDP", "port": 5140}]
    assert not [o for o in objects if o["kind"] == "HTTPRoute" and "syslog" in o["metadata"]["name"]]
    for obj in objects:
        if obj["metadata"]["name"].startswith(("mailer", "syslog")):
            kubernetes_validate.validate(obj, "1.37", strict=True)
