"""The Kubernetes data plane: the desired state rendered as Kubernetes objects, and the runtime that applies them
(docs/kubernetes.md).

``render``/``render_state`` turn a ``contract.DesiredState`` into plain dicts (``names``: the names and labels;
``config``: environment, files, secrets and connections; ``workloads``: Deployments, CronJobs, Jobs;
``network``: Services and NetworkPolicies; ``routes``: Gateway API objects; ``autoscaling``: the
HorizontalPodAutoscaler of a deployment with ``scaling`` and its report; ``layout``: the cluster-wide names they
point at; ``opener``: what opens sealed values). ``runtime.KubernetesRuntime``, the agent's second ``Runtime``,
applies them: ``client`` (lightkube, generic resources), ``apply`` (server-side apply of what changed), ``prune``
(what is live and what goes), ``observe`` and ``health`` (status), ``jobs`` (task runs), ``podlogs`` (logs).
"""

from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.opener import KeyOpener, Opener
from cellplane.kubernetes.render import Rendering, inventory, render, render_state

__all__ = ["ClusterLayout", "KeyOpener", "Opener", "Rendering", "inventory", "render", "render_state"]
