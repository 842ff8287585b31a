"""A cell's network: its endpoints' Services and the NetworkPolicies that make it zero trust at L3/L4.

Every cell namespace gets ``default-deny`` (no ingress, no egress for any pod) and ``allow-dns`` (egress to the
cluster's DNS pods on port 53, UDP and TCP). Then one policy per deployment, named like its workload, opens only
what the model declares:

* ingress on an endpoint's port from the cell's own pods (a Project endpoint is reachable by the project's
  components in the same environment: the namespace), from the internal Cellplane gateway's pods for
  Organization and Public endpoints (the internal listener serves both), from the external gateway's pods for
  Public ones;
* egress to each resolved connection: a same-project target's pods (by their selector labels, on the target
  endpoint's port), the environment's internal or external gateway pods, a ``url:`` target's address when it is
  an IP literal (an ``ipBlock``), else (a host name: NetworkPolicy has no names) any address on the URL's port;
  docs/kubernetes.md says so.

Policies are additive: a deployment without endpoints or connections needs none beyond the cell's two. Cost:
building dicts.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from cellplane.contract import DesiredDeployment, DesiredTarget
from cellplane.kubernetes import names
from cellplane.kubernetes.config import PortOf
from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.workloads import TASK_TYPES, port_name, protocol

NS_NAME = "kubernetes.io/metadata.name"  # the label every namespace carries with its own name


def services(d: DesiredDeployment, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """One ClusterIP Service per endpoint, on the endpoint's port, selecting the deployment's pods."""
    if d.type in TASK_TYPES:
        return []
    return [{"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": names.service(d.component, d.version, ep.name), "namespace": namespace,
                          "labels": labels},
             "spec": {"type": "ClusterIP", "selector": names.selector(d.component, d.version),
                      "ports": [{"name": port_name(ep.type, ep.port), "port": ep.port, "targetPort": ep.port,
                                 "protocol": protocol(ep.type)}]}}
            for ep in d.endpoints]


def cell_policies(namespace: str, labels: dict[str, str], layout: ClusterLayout) -> list[dict[str, Any]]:
    """The cell's ``default-deny`` and ``allow-dns``."""
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": namespace, "labels": labels},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    dns = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "allow-dns", "namespace": namespace, "labels": labels},
           "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {NS_NAME: layout.dns_namespace}},
                                        "podSelector": {"matchLabels": dict(layout.dns_pods)}}],
                                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}}
    return [deny, dns]


def _gateway_peer(layout: ClusterLayout, kind: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NS_NAME: layout.system_namespace}},
            "podSelector": {"matchLabels": layout.gateway_pods(kind)}}


def _ports(pairs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    seen = dict.fromkeys(pairs)
    return [{"protocol": protocol(type_), "port": port} for type_, port in seen]


def deployment_policy(d: DesiredDeployment, organization: str, namespace: str, labels: dict[str, str],
                      layout: ClusterLayout, port_of: PortOf) -> dict[str, Any] | None:
    """The deployment's own NetworkPolicy (None when it needs none)."""
    ingress: list[dict[str, Any]] = []
    endpoints = [] if d.type in TASK_TYPES else d.endpoints
    every = [(ep.type, ep.port) for ep in endpoints]
    if every:
        ingress.append({"from": [{"podSelector": {}}], "ports": _ports(every)})
    organization_ports = [(ep.type, ep.port) for ep in endpoints
                          if {"Organization", "Public"} & set(ep.visibility)]
    if organization_ports:
        ingress.append({"from": [_gateway_peer(layout, "internal")], "ports": _ports(organization_ports)})
    public = [(ep.type, ep.port) for ep in endpoints if "Public" in ep.visibility]
    if public:
        ingress.append({"from": [_gateway_peer(layout, "external")], "ports": _ports(public)})
    egress = [rule for conn in d.connections if conn.state == "resolved"
              for rule in _egress(d, conn.via, conn.target, conn.url, organization, layout, port_of)]
    if not ingress and not egress:
        return None
    spec: dict[str, Any] = {"podSelector": {"matchLabels": names.selector(d.component, d.version)},
                            "policyTypes": (["Ingress"] if ingress else []) + (["Egress"] if egress else [])}
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": names.workload(d.component, d.version), "namespace": namespace, "labels": labels},
            "spec": spec}


def _egress(d: DesiredDeployment, via: str | None, target: DesiredTarget | None, url: str | None,
            organization: str, layout: ClusterLayout, port_of: PortOf) -> list[dict[str, Any]]:
    if via in ("internal", "external"):
        return [{"to": [_gateway_peer(layout, via)],
                 "ports": [{"protocol": "TCP", "port": layout.gateway_port_name(via, d.environment)}]}]
    if via == "cell" and target is not None:
        peer: dict[str, Any] = {"podSelector": {"matchLabels": names.selector(target.component, target.version)}}
        target_ns = names.namespace(organization, target.project, d.environment)
        if target_ns != names.namespace(organization, d.project, d.environment):
            peer["namespaceSelector"] = {"matchLabels": {NS_NAME: target_ns}}
        port = port_of(target)
        return [{"to": [peer], **({"ports": [{"protocol": "TCP", "port": port}]} if port is not None else {})}]
    if via == "url" and url:
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return []
        ports = [{"protocol": "TCP", "port": port}]
        try:
            address = ipaddress.ip_address(parts.hostname or "")
        except ValueError:  # a host name: any address, on that port only
            return [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}], "ports": ports}]
        return [{"to": [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}], "ports": ports}]
    return []
