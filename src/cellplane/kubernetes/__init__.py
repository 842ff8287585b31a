"""The Kubernetes data plane: the desired state rendered as Kubernetes objects (docs/kubernetes.md).

``render``/``render_state`` turn a ``contract.DesiredState`` into plain dicts (``names``: the names and labels;
``config``: environment, files, secrets and connections; ``workloads``: Deployments, CronJobs, Jobs;
``network``: Services and NetworkPolicies; ``routes``: Gateway API objects; ``layout``: the cluster-wide names they
point at; ``opener``: what opens sealed values). The runtime that applies them comes beside
``cellplane.dataplane.runtimes.local``.
"""

from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.opener import KeyOpener, Opener
from cellplane.kubernetes.render import Rendering, inventory, render, render_state

__all__ = ["ClusterLayout", "KeyOpener", "Opener", "Rendering", "inventory", "render", "render_state"]
