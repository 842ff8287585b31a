"""A deployment's ``scaling`` on Kubernetes: a HorizontalPodAutoscaler for 1..N, the agent for 0 <-> 1.

KEDA's split, with Cellplane's own activator in place of KEDA's HTTP interceptor (docs/kubernetes.md, "Scaling"):

- ``hpa`` renders an ``autoscaling/v2`` HorizontalPodAutoscaler beside the deployment's Deployment (same name),
  for ``max(minReplicas, 1)``..``maxReplicas``. Its metrics: ``cellplane_requests_in_flight`` of the Deployment
  (an ``Object`` metric with an ``AverageValue`` target of ``targetConcurrency``: the HPA divides the deployment's
  requests in flight by its pods, so it wants ``ceil(in flight / targetConcurrency)`` replicas, the scaler's rule);
  with ``targetRps``, ``cellplane_requests_per_second`` the same way; with ``resources.cpu``, CPU utilization
  80 %. The counts are the agent's gateway's (it is the only one that sees every request of a deployment, and it
  sends them to the deployment's Service, not to a pod: so an ``Object`` metric of the Deployment, not a ``Pods``
  one, which would need a series per pod); a custom-metrics adapter serves them to the HPA from the agent's
  Prometheus endpoint (the prometheus-adapter rule is in the docs). ``scaleDownDelaySeconds`` is the HPA's
  scale-down stabilization window. The Deployment itself is rendered without ``replicas``: server-side apply then
  never fights the HPA (or the agent) over the count.
- An HPA does nothing while its target is at 0 replicas, and cannot go there itself (``minReplicas`` >= 1 without
  an alpha feature gate), so the agent owns 0 <-> 1 through the Deployment's ``/scale`` subresource
  (``client.scale``): to 0 after the idle period, to 1 when the in-cluster gateway's activator is woken. That
  needs the agent to serve the gateways (``--serve-gateways``): without them nothing would wake a deployment at
  zero, so ``minReplicas`` 0 runs as 1 and the report says why (``NO_WAKE``).

``scaling_report`` makes the contract's ``ScalingReport`` from the Deployment's and the HPA's status and the agent's
own last decision (its reason wins while the count is the agent's: at 0, or just woken). Cost: building dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cellplane.contract import DesiredDeployment, ScalingReport
from cellplane.kubernetes import names
from cellplane.kubernetes.workloads import TASK_TYPES

API_VERSION = "autoscaling/v2"
KIND = "HorizontalPodAutoscaler"
IN_FLIGHT = "cellplane_requests_in_flight"  # the agent's gauge per (namespace, deployment): requests in flight
PER_SECOND = "cellplane_requests_per_second"  # and requests per second over the last metrics window
CPU_UTILIZATION = 80  # percent of the requested CPU (requests = limits) the HPA aims at when resources.cpu is set
MAX_WINDOW = 3600  # the API server's bound on a stabilization window
NO_WAKE = ("minReplicas 0 runs as 1: scaling to zero needs the agent to serve the gateways (--serve-gateways), "
           "which wake a deployment at zero")


@dataclass(frozen=True)
class Decision:
    """The agent's own last change of a deployment's replica count through ``/scale``, and why."""

    replicas: int
    reason: str


def autoscaled(d: DesiredDeployment) -> bool:
    """Whether the deployment's replica count follows its load (an HPA beside its Deployment)."""
    return d.scaling is not None and d.type not in TASK_TYPES


def floor(d: DesiredDeployment) -> int:
    """The fewest replicas the HPA keeps: ``max(minReplicas, 1)`` (zero is the agent's)."""
    assert d.scaling is not None
    return max(d.scaling.minReplicas, 1)


def quantity(value: float) -> str:
    """A Kubernetes quantity for a positive number: whole numbers as they are, else in thousandths (``2500m``)."""
    if value == int(value):
        return str(int(value))
    return f"{max(1, round(value * 1000))}m"


def _object_metric(name: str, workload: str, per_replica: float) -> dict[str, Any]:
    return {"type": "Object", "object": {
        "describedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
        "metric": {"name": name},
        "target": {"type": "AverageValue", "averageValue": quantity(per_replica)}}}


def hpa(d: DesiredDeployment, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """The deployment's HorizontalPodAutoscaler (see the module's docstring)."""
    scaling = d.scaling
    assert scaling is not None
    workload = names.workload(d.component, d.version)
    low = floor(d)
    metrics = [_object_metric(IN_FLIGHT, workload, scaling.targetConcurrency)]
    if scaling.targetRps is not None:
        metrics.append(_object_metric(PER_SECOND, workload, scaling.targetRps))
    if d.resources.cpu:
        metrics.append({"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": CPU_UTILIZATION}}})
    window = min(MAX_WINDOW, math.ceil(scaling.scaleDownDelaySeconds))
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": workload, "namespace": namespace, "labels": labels},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
                     "minReplicas": low, "maxReplicas": max(scaling.maxReplicas, low), "metrics": metrics,
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}}}}


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def hpa_reason(live: dict[str, Any] | None) -> str:
    """Why the HPA wants the count it wants, in its own words: the limit it hit, or why it cannot compute one."""
    if live is None:
        return "no HorizontalPodAutoscaler yet"
    limited = _condition(live, "ScalingLimited")
    if limited is not None and limited.get("status") == "True":
        return f"the HPA: {limited.get('message') or limited.get('reason')}"
    active = _condition(live, "ScalingActive")
    if active is not None and active.get("status") == "False":
        return f"the HPA: {active.get('message') or active.get('reason')}"
    able = _condition(live, "AbleToScale")
    if able is not None and able.get("status") == "False":
        return f"the HPA: {able.get('message') or able.get('reason')}"
    status = live.get("status") or {}
    if "desiredReplicas" in status:
        return f"the HPA wants {status['desiredReplicas']} from the load"
    return "the HPA has not computed a count yet"


def scaling_report(d: DesiredDeployment, deployment: dict[str, Any] | None, pods: list[dict[str, Any]],
                   live_hpa: dict[str, Any] | None, decision: Decision | None, *, wakes: bool) -> ScalingReport:
    """The deployment's ``ScalingReport``: ``current`` its pods that are not being deleted (ready or starting:
    the Deployment's own status lags behind them), ``desired`` its spec's count (what the HPA or the agent last
    set), the reason the agent's while the count is its own (0, or the 1 it woke to), else the HPA's. ``wakes``:
    the agent serves the gateways (else ``NO_WAKE`` is said)."""
    assert d.scaling is not None
    spec = (deployment or {}).get("spec") or {}
    current = sum(1 for p in pods if not p["metadata"].get("deletionTimestamp"))
    desired = int(spec.get("replicas", floor(d)) if deployment is not None else floor(d))
    if decision is not None and decision.replicas == desired:  # (the runtime forgets one the HPA overrode)
        reason = decision.reason
    elif d.scaling.minReplicas == 0 and not wakes:
        reason = NO_WAKE
    else:
        reason = hpa_reason(live_hpa)
    return ScalingReport(current=min(current, 10000), desired=min(desired, 10000), reason=reason[:2000])
