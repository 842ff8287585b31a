"""A deployment's ``scaling`` on Kubernetes, the pure parts (cellplane.kubernetes.autoscaling): the
HorizontalPodAutoscaler beside a Deployment without ``replicas``, valid for Kubernetes 1.30 to 1.37; the agent's
RBAC for it and for ``deployments/scale``; the report of a deployment scaled to zero and its ``ScalingReport``
from written-out objects. test_kube_scaling.py shows the same against the real test cluster."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.contract import DesiredResources, DesiredScaling
from cellplane.kubernetes import KeyOpener, autoscaling, health, inventory, names, render_state
from cellplane.kubernetes.install import RULES
from kubestates import deployment, endpoint, shop_state

VERSIONS = tuple(f"1.{minor}" for minor in range(30, 38))
KEY = X25519PrivateKey.generate()
OPENER = KeyOpener(KEY)
NS = "acme--shop--development"


def scaling(**fields: Any) -> DesiredScaling:
    values: dict[str, Any] = {"minReplicas": 0, "maxReplicas": 3, "targetConcurrency": 10, "idleSeconds": 300,
                              "scaleDownDelaySeconds": 30, **fields}
    return DesiredScaling(**values)


@pytest.fixture(scope="module", autouse=True)
def schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads its schema files at every call: kept once read (as test_kube_render.py does)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kubernetes_validate.utils, "schema_contents",
                      functools.cache(kubernetes_validate.utils.schema_contents))
        yield


def scaled_objects(**scaling_fields: Any) -> list[dict[str, Any]]:
    """The shop's objects with its ``orders`` service (2 replicas, 500m CPU) and a worker autoscaled."""
    state = shop_state(KEY)
    orders, *rest = state.deployments
    orders = orders.model_copy(update={"scaling": scaling(**scaling_fields)})
    worker = deployment("shop", "mailer", type_="worker",
                        scaling=scaling(minReplicas=2, maxReplicas=5, targetConcurrency=2.5, targetRps=40.5))
    return render_state(state.model_copy(update={"deployments": [orders, *rest, worker]}), OPENER)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) <= 1
    return found[0] if found else None


def test_an_autoscaled_service_gets_a_deployment_without_replicas_and_an_hpa_valid_for_every_version() -> None:
    objects = scaled_objects()
    dep = find(objects, "Deployment", "orders--v1")
    hpa = find(objects, "HorizontalPodAutoscaler", "orders--v1")
    assert dep is not None and hpa is not None
    assert "replicas" not in dep["spec"]
    assert hpa["metadata"]["namespace"] == NS and hpa["metadata"]["labels"] == dep["metadata"]["labels"]
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orders--v1"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 3)  # zero is the agent's, never the HPA's
    in_flight, cpu = spec["metrics"]
    assert in_flight == {"type": "Object", "object": {
        "describedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orders--v1"},
        "metric": {"name": "cellplane_requests_in_flight"},
        "target": {"type": "AverageValue", "averageValue": "10"}}}
    assert cpu == {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                               "averageUtilization": 80}}}
    assert spec["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 30}}
    for obj in objects:
        if obj["kind"] in ("HorizontalPodAutoscaler", "Deployment"):
            for version in VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)
    assert ("autoscaling/v2", "HorizontalPodAutoscaler", NS, "orders--v1") in inventory(objects)


def test_a_fractional_target_an_rps_target_and_no_cpu_shape_the_hpas_metrics() -> None:
    hpa = find(scaled_objects(), "HorizontalPodAutoscaler", "mailer--v1")
    assert hpa is not None
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    targets = {m["object"]["metric"]["name"]: m["object"]["target"]["averageValue"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cellplane_requests_in_flight": "2500m", "cellplane_requests_per_second": "40500m"}
    assert autoscaling.quantity(0.0004) == "1m" and autoscaling.quantity(7.0) == "7"


def test_a_long_scale_down_delay_is_cut_to_the_api_servers_bound_and_max_never_falls_below_min() -> None:
    hpa = find(scaled_objects(scaleDownDelaySeconds=7200.5, minReplicas=4, maxReplicas=4),
               "HorizontalPodAutoscaler", "orders--v1")
    assert hpa is not None
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 3600
    kubernetes_validate.validate(hpa, "1.37", strict=True)


def test_without_scaling_the_deployment_keeps_its_replicas_and_gets_no_hpa_and_tasks_never_get_one() -> None:
    objects = render_state(shop_state(KEY), OPENER)
    dep = find(objects, "Deployment", "orders--v1")
    assert dep is not None and dep["spec"]["replicas"] == 2
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    state = shop_state(KEY)
    tasks = [d.model_copy(update={"scaling": scaling(minReplicas=1)}) for d in state.deployments
             if d.type in ("scheduled-task", "manual-task")]
    objects = render_state(state.model_copy(update={"deployments": tasks}), OPENER)
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]


def test_the_agents_role_may_write_hpas_and_patch_deployments_scale_and_nothing_more_of_them() -> None:
    granted = {(group, resource): verbs for group, resources, verbs in RULES for resource in resources}
    assert granted[("autoscaling", "horizontalpodautoscalers")] == ("list", "create", "patch", "delete")
    assert granted[("apps", "deployments/scale")] == ("patch",)


D = deployment("shop", "orders", id="dep_000000orders", endpoints=[endpoint("api", 8080, "Public")],
               scaling=scaling())


def live_deployment(replicas: int, ready: int) -> dict[str, Any]:
    return {"metadata": {"name": "orders--v1", "namespace": NS, "generation": 2},
            "spec": {"replicas": replicas,
                     "template": {"metadata": {"labels": {names.RELEASE: names.label_value(D.release)}}}},
            "status": {"observedGeneration": 2, "replicas": ready, "updatedReplicas": ready, "readyReplicas": ready,
                       "availableReplicas": ready}}


def live_hpa(desired: int, *conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {"status": {"currentReplicas": desired, "desiredReplicas": desired, "conditions": [
        {"type": kind, "status": status, "message": text} for kind, status, text in conditions]}}


def pods(ready: int, terminating: int = 1) -> list[dict[str, Any]]:
    """``ready`` pods and ``terminating`` ones being deleted (which the report does not count)."""
    return ([{"metadata": {"name": f"orders-{i}"}} for i in range(ready)]
            + [{"metadata": {"name": f"old-{i}", "deletionTimestamp": "2026-12-07T20:00:00Z"}}
               for i in range(terminating)])


def test_a_min_zero_deployment_at_zero_replicas_is_scaled_to_zero_and_a_fixed_one_is_idle() -> None:
    report = health.service_report(D, live_deployment(0, 0), [])
    assert (report.state, report.message) == ("scaled-to-zero", "no replicas: the next request wakes one")
    fixed = D.model_copy(update={"scaling": scaling(minReplicas=1)})
    assert health.service_report(fixed, live_deployment(0, 0), []).state == "idle"


def test_the_scaling_report_says_the_agents_reason_while_the_count_is_its_own_else_the_hpas() -> None:
    decision = autoscaling.Decision(0, "idle for 300 s")
    report = autoscaling.scaling_report(D, live_deployment(0, 0), [], live_hpa(0), decision, wakes=True)
    assert (report.current, report.desired, report.reason) == (0, 0, "idle for 300 s")
    limited = live_hpa(3, ("ScalingLimited", "True", "the desired replica count is more than the maximum"))
    report = autoscaling.scaling_report(D, live_deployment(3, 2), pods(2), limited, decision, wakes=True)
    assert (report.current, report.desired) == (2, 3)
    assert report.reason == "the HPA: the desired replica count is more than the maximum"
    failing = live_hpa(1, ("ScalingActive", "False", "unable to get metric cellplane_requests_in_flight"))
    assert "unable to get metric" in autoscaling.scaling_report(D, live_deployment(1, 1), pods(1), failing, None,
                                                                wakes=True).reason
    assert autoscaling.scaling_report(D, live_deployment(1, 1), pods(1), live_hpa(1), None, wakes=False).reason == \
        autoscaling.NO_WAKE
    pinned = D.model_copy(update={"scaling": scaling(minReplicas=2),
                                  "resources": DesiredResources(cpu="250m")})
    assert autoscaling.scaling_report(pinned, None, [], None, None, wakes=False).desired == 2
