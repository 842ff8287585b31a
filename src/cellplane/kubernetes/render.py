"""A desired state rendered as Kubernetes objects: pure functions from the contract's models to plain dicts.

``render(state, opener)`` gives every object the data plane's cluster must hold, in a fixed order (kinds in
apply order, then namespace and name), the same bytes for the same state, and the deployments it could not
render with the reason (``Rendering.blocked``): a deployment the control plane blocked, one without an image by
digest, a secret this data plane's key does not open, a schedule Kubernetes cannot run. A blocked deployment
renders nothing of its own, but its cell still does: the runtime keeps what a blocked deployment already runs
(as the local data plane keeps a running release), it must not prune it. ``inventory`` is the set of
(apiVersion, kind, namespace, name) the runtime compares with what its labels find in the cluster to prune.

What each model becomes (docs/kubernetes.md has the table): a cell (organization, project, environment) a
namespace with pod-security "restricted" enforced and its NetworkPolicies (``network``); a service-like
deployment a Deployment (``workloads``), a Service per endpoint and HTTPRoutes (``routes``); a scheduled task a
CronJob; a manual run a Job; configuration a ConfigMap and a Secret (``config``); each environment a pair of
Gateways. Cost: about what building the dicts costs, plus one HMAC and one X25519 open per secret.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from cellplane.contract import DesiredDeployment, DesiredState, DesiredTarget
from cellplane.kubernetes import autoscaling, names, network, routes, workloads
from cellplane.kubernetes.config import Blocked, Configuration, PortOf, configuration
from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.opener import Opener

ORDER = ("Namespace", "NetworkPolicy", "ConfigMap", "Secret", "Service", "Deployment", "HorizontalPodAutoscaler",
         "CronJob", "Job", "Gateway", "HTTPRoute")
POD_SECURITY = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
Key = tuple[str, str, str, str]


@dataclass
class Rendering:
    objects: list[dict[str, Any]] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)  # deployment id -> why it renders nothing


def sort_key(obj: dict[str, Any]) -> tuple[int, str, str]:
    meta = obj["metadata"]
    return ORDER.index(obj["kind"]), meta.get("namespace", ""), meta["name"]


def inventory(objects: list[dict[str, Any]]) -> set[Key]:
    """(apiVersion, kind, namespace, name) of each object ("" for a cluster-scoped one's namespace)."""
    return {(o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects}


class _Targets:
    """The endpoint ports of the state's deployments, for connections inside the cluster."""

    def __init__(self, state: DesiredState) -> None:
        self.ports = {(d.environment, d.project, d.component, d.version, ep.name): ep.port
                      for d in state.deployments for ep in d.endpoints}

    def port_of(self, environment: str) -> PortOf:
        def port(target: DesiredTarget) -> int | None:
            return self.ports.get((environment, target.project, target.component, target.version, target.endpoint))
        return port


def namespace_object(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {**labels, **POD_SECURITY}}}


def _config_objects(d: DesiredDeployment, namespace: str, config: Configuration,
                    labels: dict[str, str]) -> list[dict[str, Any]]:
    name = names.workload(d.component, d.version)
    out: list[dict[str, Any]] = []
    if config.config:
        out.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels}, "data": config.config})
    if config.secret:  # the only place a secret's plaintext is written: base64 in the Secret's data
        out.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in config.secret.items()}})
    return out


def render_deployment(state: DesiredState, d: DesiredDeployment, opener: Opener, layout: ClusterLayout,
                      *, autoscaled: bool | None = None, targets: _Targets | None = None) -> list[dict[str, Any]]:
    """The objects of one deployment and of its manual runs in ``state`` (not its cell's). Raises ``Blocked``.
    ``autoscaled`` (None: whether the deployment has ``scaling``): its Deployment without ``replicas``; with
    ``scaling``, a HorizontalPodAutoscaler beside it (``autoscaling``)."""
    if d.blocked:
        raise Blocked(d.blocked)
    targets = targets or _Targets(state)
    port_of = targets.port_of(d.environment)
    namespace = names.namespace(state.organization, d.project, d.environment)
    cell = names.cell_labels(state.organization, state.dataPlane, d.project, d.environment)
    labels = names.deployment_labels(cell, d.component, d.version, d.type, d.id, d.release)
    config = configuration(d, state.organization, opener, layout, port_of)
    workloads.image_of(d)
    out = _config_objects(d, namespace, config, labels)
    if d.type == "scheduled-task":
        out.append(workloads.cron_job(d, namespace, config, labels))
    elif d.type != "manual-task":
        scaled = autoscaling.autoscaled(d)
        out.append(workloads.deployment(d, namespace, config, labels,
                                        autoscaled=scaled if autoscaled is None else autoscaled))
        if scaled:
            out.append(autoscaling.hpa(d, namespace, labels))
        out += network.services(d, namespace, labels)
        out += routes.http_routes(d, labels, layout)
    policy = network.deployment_policy(d, state.organization, namespace, labels, layout, port_of)
    if policy is not None:
        out.append(policy)
    for run in state.runs:
        if run.deployment == d.id:
            run_config = configuration(d, state.organization, opener, layout, port_of, run=run.id)
            out.append(workloads.run_job(d, run, namespace, run_config, labels))
    return out


def render(state: DesiredState, opener: Opener, layout: ClusterLayout | None = None) -> Rendering:
    """Every object of ``state`` and the deployments that render nothing (see the module's docstring)."""
    layout = layout or ClusterLayout()
    out = Rendering()
    targets = _Targets(state)
    environments = {e.name for e in state.environments} | {d.environment for d in state.deployments}
    for environment in sorted(environments):
        labels = {names.MANAGED_BY: names.MANAGER, names.ORGANIZATION: names.label_value(state.organization),
                  names.DATA_PLANE: names.label_value(state.dataPlane),
                  names.ENVIRONMENT: names.label_value(environment)}
        out.objects += routes.gateways(environment, labels, layout)
    cells = sorted({(d.project, d.environment) for d in state.deployments})
    for project, environment in cells:
        namespace = names.namespace(state.organization, project, environment)
        cell = names.cell_labels(state.organization, state.dataPlane, project, environment)
        out.objects.append(namespace_object(namespace, cell))
        out.objects += network.cell_policies(namespace, cell, layout)
    for d in state.deployments:
        try:
            out.objects += render_deployment(state, d, opener, layout, targets=targets)
        except Blocked as e:
            out.blocked[d.id] = str(e)
    out.objects.sort(key=sort_key)
    return out


def render_state(state: DesiredState, opener: Opener, layout: ClusterLayout | None = None) -> list[dict[str, Any]]:
    """Every object of ``state`` (``render``'s objects)."""
    return render(state, opener, layout).objects
