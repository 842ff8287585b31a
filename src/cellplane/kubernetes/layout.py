"""Where a data plane's shared parts live in its cluster: what the renderer points cells at but does not render.

Cellplane's own gateway runs in the cluster (the data plane's manifest installs it; docs/kubernetes.md): per
environment an external and an internal gateway Service in the data plane's system namespace, in front of pods
labelled ``cellplane.dev/gateway-external`` or ``cellplane.dev/gateway-internal`` (``true``; one pod may be both:
the agent's, with ``--serve-gateways``), on a named port per kind and environment (``gateway_port_name``). Cells'
NetworkPolicies admit those pods, connection
URLs point at those Services, and the Gateway API objects (``routes``) send a cluster's own Gateway
implementation's traffic to them. DNS is the cluster's (``kube-dns`` pods in ``kube-system``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cellplane.kubernetes import names

_PORT_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@dataclass(frozen=True)
class ClusterLayout:
    """The cluster-wide names a rendering refers to; the defaults are what the data plane's manifest installs."""

    system_namespace: str = "cellplane-system"
    gateway_class: str = "cellplane"  # the GatewayClass of the cluster's Gateway API implementation
    gateway_port: int = 8080  # the port of every Cellplane gateway Service
    cluster_domain: str = "cluster.local"
    dns_namespace: str = "kube-system"
    dns_pods: tuple[tuple[str, str], ...] = (("k8s-app", "kube-dns"),)
    hostname: str | None = None  # the external Gateway's listener hostname (None: any)

    def gateway_service(self, environment: str, kind: str) -> str:
        """The Service of an environment's ``kind`` ("external" or "internal") Cellplane gateway."""
        return names.bounded("gateway", environment, kind)

    def gateway_base(self, environment: str, kind: str) -> str:
        """The URL of that Service, as a workload in the cluster reaches it."""
        return (f"http://{self.gateway_service(environment, kind)}.{self.system_namespace}.svc."
                f"{self.cluster_domain}:{self.gateway_port}")

    def gateway_pods(self, kind: str) -> dict[str, str]:
        """The labels of the Cellplane gateway pods of a kind (a key per kind: a pod may serve both)."""
        return {f"{names.GATEWAY}-{kind}": "true"}

    @staticmethod
    def gateway_port_name(kind: str, environment: str) -> str:
        """The name of the gateway pods' port of an environment's ``kind`` listener: the gateway Services' target
        and the cells' egress port. A port name has 15 characters at most: ``e-<environment>``/``i-<environment>``
        when that fits, else the hashed form ``e-h<9 hex digits>``."""
        readable = f"{kind[0]}-{environment}"
        if len(readable) <= 15 and _PORT_NAME.fullmatch(readable):
            return readable
        return f"{kind[0]}-h{names.digest(environment)[:9]}"
