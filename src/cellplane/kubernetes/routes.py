"""The Gateway API objects: how a cluster's own Gateway implementation fronts Cellplane's gateways.

Per environment the data plane gets two ``Gateway`` objects in its system namespace, ``<environment>--external``
and ``<environment>--internal`` (class ``ClusterLayout.gateway_class``, one HTTP listener each). Each HTTP
endpoint gets an ``HTTPRoute`` per gateway that serves it (Public: external and internal; Organization:
internal; Project: none, the cell's own pods call it directly), matching the endpoint's route in the URL scheme
(``/{project}/{component}/{version}{basePath}`` as a ``PathPrefix``) and sending it to that environment's
Cellplane gateway Service of the same kind, never to the workload: API keys, OAuth2 tokens, visibility, access
logs and metrics stay the Cellplane gateway's, exactly as on the local data plane (docs/kubernetes.md). The
routes live beside the Gateways and the gateway Services, so they need no ReferenceGrant. Cost: building dicts.
"""

from __future__ import annotations

from typing import Any

from cellplane.contract import DesiredDeployment
from cellplane.contract.urlscheme import route_prefix
from cellplane.kubernetes import names
from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.workloads import HTTP_TYPES, TASK_TYPES

GROUP = "gateway.networking.k8s.io"
API_VERSION = f"{GROUP}/v1"
KINDS = ("external", "internal")


def gateway_name(environment: str, kind: str) -> str:
    return names.bounded(environment, kind)


def gateways(environment: str, labels: dict[str, str], layout: ClusterLayout) -> list[dict[str, Any]]:
    """The environment's external and internal Gateway."""
    out = []
    for kind in KINDS:
        listener: dict[str, Any] = {"name": "http", "port": 80, "protocol": "HTTP",
                                    "allowedRoutes": {"namespaces": {"from": "Same"}}}
        if kind == "external" and layout.hostname:
            listener["hostname"] = layout.hostname
        out.append({"apiVersion": API_VERSION, "kind": "Gateway",
                    "metadata": {"name": gateway_name(environment, kind), "namespace": layout.system_namespace,
                                 "labels": {**labels, names.GATEWAY: kind}},
                    "spec": {"gatewayClassName": layout.gateway_class, "listeners": [listener]}})
    return out


def http_routes(d: DesiredDeployment, labels: dict[str, str], layout: ClusterLayout) -> list[dict[str, Any]]:
    """The deployment's HTTPRoutes (one per HTTP endpoint and gateway serving it; an endpoint whose base path
    repeats an earlier one's is not routed, as the local gateway does not route it)."""
    if d.type in TASK_TYPES:
        return []
    out = []
    seen: set[str] = set()
    for ep in d.endpoints:
        if ep.type not in HTTP_TYPES or ep.basePath in seen:
            continue
        seen.add(ep.basePath)
        kinds = [k for k in KINDS if "Public" in ep.visibility or (k == "internal" and "Organization" in ep.visibility)]
        for kind in kinds:
            out.append({
                "apiVersion": API_VERSION, "kind": "HTTPRoute",
                "metadata": {"name": names.bounded(d.environment, d.project, d.component, d.version, ep.name, kind),
                             "namespace": layout.system_namespace, "labels": {**labels, names.GATEWAY: kind}},
                "spec": {
                    "parentRefs": [{"group": GROUP, "kind": "Gateway", "name": gateway_name(d.environment, kind)}],
                    "rules": [{
                        "matches": [{"path": {"type": "PathPrefix",
                                              "value": route_prefix(d.project, d.component, d.version, ep.basePath)}}],
                        "backendRefs": [{"group": "", "kind": "Service",
                                         "name": layout.gateway_service(d.environment, kind),
                                         "port": layout.gateway_port}]}]}})
    return out
