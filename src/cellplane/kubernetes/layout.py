"""Where a data plane's shared parts live in its cluster: what the renderer points cells at but does not render.

Cellplane's own gateway runs in the cluster (the data plane's manifest installs it; docs/kubernetes.md): per
environment an external and an internal gateway Service in the data plane's system namespace, in front of pods
labelled ``cellplane.dev/gateway: external`` or ``internal``. Cells' NetworkPolicies admit those pods, connection
URLs point at those Services, and the Gateway API objects (``routes``) send a cluster's own Gateway
implementation's traffic to them. DNS is the cluster's (``kube-dns`` pods in ``kube-system``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cellplane.kubernetes import names


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
        """The labels of the Cellplane gateway pods of a kind."""
        return {names.NAME: "cellplane-gateway", names.GATEWAY: kind}
