"""The install manifest of a Kubernetes data plane: everything its agent needs in a cluster, as plain dicts.

``manifest(options)`` returns, in apply order: the system namespace (pod security ``restricted``); the agent's
ServiceAccount; a ClusterRole naming exactly the API groups, resources and verbs the Kubernetes runtime uses
(``RULES``: no wildcard, no RBAC, CRD or node writes, no ``pods/exec``) and its ClusterRoleBinding; the agent's
control-plane token as a Secret (only when the caller hands the token over; else the Deployment refers to a Secret
the user creates); a PersistentVolumeClaim for the agent's data directory (its cached desired state must survive a
restart: with the control plane away, a restarted agent renders that cache and changes nothing in the cluster; an
``emptyDir`` loses it, so it is only an option); the agent's Deployment (one replica, ``Recreate``: two agents of
one data plane must never run at once); and per environment the two Cellplane gateway Services the rendered
NetworkPolicies, connection URLs and HTTPRoutes point at (``ClusterLayout``), selecting the pods labelled as
gateways on the port named for the environment and kind. With ``serve_gateways`` the agent's pod is that gateway
(``kubernetes.gateways``): it carries both gateway labels, runs with ``--serve-gateways`` and names its listeners'
ports, one pair per environment in the order given.

The install's objects are labelled ``app.kubernetes.io/part-of: cellplane`` and ``cellplane.dev/install: <data
plane>``, never with the agent's own ``managed-by: cellplane`` + organization + data-plane set, so the agent's
pruning (``prune.selector``) never takes them for leftovers of a deployment. Cost: building dicts.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from cellplane.kubernetes import names
from cellplane.kubernetes.layout import ClusterLayout

AGENT = "cellplane-agent"
TOKEN_SECRET = "cellplane-agent-token"  # the Secret holding the control-plane token under the key ``token``
TOKEN_KEY = "token"
DATA_CLAIM = "cellplane-agent-data"
AGENT_USER = 10014  # the numeric non-root user of Cellplane's images (images.config.DEFAULT_USER)
METRICS_PORT = 9090
EXTERNAL_PORT = 8080  # the first environment's gateway listeners in the agent's pod (--serve-gateways)
INTERNAL_PORT = 8081
TOKEN_DIR = "/var/run/cellplane/token"
DATA_DIR = "/var/lib/cellplane"
TMP = "/tmp"  # noqa: S108 (the container's own, an emptyDir)
INSTALL = "cellplane.dev/install"
GATEWAY_KINDS = ("external", "internal")

# server-side apply is a patch, and also needs create when the object is new (test_kube_install shows it); the
# drift and pruning reads are lists by label per kind and namespace; pruning deletes
_WRITE = ["list", "create", "patch", "delete"]

# (API group, resources, verbs): what the Kubernetes runtime calls (kubernetes/apply.py, prune.py, runtime.py,
# health.py, podlogs.py), and nothing else
RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("", ("namespaces",), ("get", "list", "create", "patch", "delete")),  # cells; get: a restarted agent's look
    ("", ("configmaps", "secrets", "services"), tuple(_WRITE)),
    ("", ("pods",), ("list",)),  # health: a deployment's pods, their container states
    ("", ("pods/log",), ("get",)),  # the last log lines of a failing pod, log shipping
    ("apps", ("deployments",), tuple(_WRITE)),
    ("apps", ("deployments/scale",), ("patch",)),  # scale to zero and wake (kubernetes/autoscaling.py)
    ("autoscaling", ("horizontalpodautoscalers",), tuple(_WRITE)),
    ("batch", ("cronjobs", "jobs"), tuple(_WRITE)),
    ("networking.k8s.io", ("networkpolicies",), tuple(_WRITE)),
    ("gateway.networking.k8s.io", ("gateways", "httproutes"), tuple(_WRITE)),
)


@dataclass(frozen=True)
class InstallOptions:
    """What ``cellplane dataplane manifest --kubernetes`` was given."""

    name: str  # the data plane
    organization: str
    controlplane: str  # the control plane's URL, as the agent's pod reaches it
    image: str  # the agent's image (``make agent-image``), best by digest
    token: str | None = None  # the agent's control-plane token; None: a Secret the user creates
    external_url: str | None = None  # the agent's --external-url / --internal-url (how users reach the gateways)
    internal_url: str | None = None
    environments: tuple[str, ...] = ()  # the environments whose gateway Services to install
    serve_gateways: bool = True  # the agent's pod is the Cellplane gateway the Services select (--serve-gateways)
    persistent: bool = True  # the data directory on a PersistentVolumeClaim (else an emptyDir)
    storage: str = "1Gi"
    storage_class: str | None = None
    layout: ClusterLayout = field(default_factory=ClusterLayout)


def labels(options: InstallOptions, component: str) -> dict[str, str]:
    return {names.PART_OF: "cellplane", names.COMPONENT: component, INSTALL: names.label_value(options.name)}


def role_name(options: InstallOptions) -> str:
    """The ClusterRole and ClusterRoleBinding of a data plane's agent (one per data plane in a cluster)."""
    return names.bounded(AGENT, options.name)


def manifest(options: InstallOptions) -> list[dict[str, Any]]:
    """Every object of the install, in apply order (see the module's docstring)."""
    ns = options.layout.system_namespace
    agent = labels(options, "agent")
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {**labels(options, "system"), **{
             f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}}}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": AGENT, "namespace": ns, "labels": agent}},
        cluster_role(options),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": role_name(options), "labels": agent},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name(options)},
         "subjects": [{"kind": "ServiceAccount", "name": AGENT, "namespace": ns}]},
    ]
    if options.token is not None:
        objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": TOKEN_SECRET, "namespace": ns, "labels": agent},
                        "data": {TOKEN_KEY: base64.b64encode(options.token.encode()).decode()}})
    if options.persistent:
        claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": options.storage}}}
        if options.storage_class:
            claim["storageClassName"] = options.storage_class
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": DATA_CLAIM, "namespace": ns, "labels": agent}, "spec": claim})
    objects.append(agent_deployment(options))
    objects.extend(gateway_services(options))
    return objects


def cluster_role(options: InstallOptions) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": role_name(options), "labels": labels(options, "agent")},
            "rules": [{"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
                      for group, resources, verbs in RULES]}


def agent_args(options: InstallOptions) -> list[str]:
    """The agent's command line after ``cellplane`` (the image's ``Cmd`` is ``cellplane dataplane run
    --kubernetes``; the Deployment names everything itself)."""
    args = ["--org", options.organization, "dataplane", "run", "--kubernetes", "--name", options.name,
            "--controlplane", options.controlplane, "--token-file", f"{TOKEN_DIR}/{TOKEN_KEY}",
            "--data-dir", f"{DATA_DIR}/dataplane", "--gateway-host", "0.0.0.0",  # noqa: S104  (the pod's address)
            "--metrics-port", str(METRICS_PORT)]
    for flag, url in (("--external-url", options.external_url), ("--internal-url", options.internal_url)):
        if url:
            args += [flag, url]
    if options.serve_gateways:
        args += ["--serve-gateways", "--external-port", str(EXTERNAL_PORT), "--internal-port", str(INTERNAL_PORT)]
        for environment in options.environments:
            args += ["--gateway-environment", environment]
    return args


def gateway_ports(options: InstallOptions) -> list[dict[str, Any]]:
    """The agent's gateway listeners as container ports: the i-th environment's external and internal listener on
    ``EXTERNAL_PORT + 2i`` and ``INTERNAL_PORT + 2i`` (the slots the agent takes for ``--gateway-environment``
    in this order), named as the gateway Services target them."""
    layout = options.layout
    return [{"name": layout.gateway_port_name(kind, environment), "containerPort": first + 2 * slot,
             "protocol": "TCP"}
            for slot, environment in enumerate(options.environments)
            for kind, first in (("external", EXTERNAL_PORT), ("internal", INTERNAL_PORT))]


def agent_deployment(options: InstallOptions) -> dict[str, Any]:
    """The agent: non-root, read-only root file system, no privilege escalation, its token and data mounted.
    Serving the gateways, it is probed on its metrics port (a TCP connect: the endpoint itself wants a bearer
    token), which only then listens; otherwise it has no port and no probe (the kubelet restarts it if it exits)."""
    ns = options.layout.system_namespace
    selector = {names.NAME: AGENT, INSTALL: names.label_value(options.name)}
    pod_labels = {**labels(options, "agent"), **selector}
    data: dict[str, Any] = ({"persistentVolumeClaim": {"claimName": DATA_CLAIM}} if options.persistent
                            else {"emptyDir": {}})
    probe: dict[str, Any] = {"tcpSocket": {"port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 3}
    gateway_labels = ({k: v for kind in GATEWAY_KINDS for k, v in options.layout.gateway_pods(kind).items()}
                      if options.serve_gateways else {})
    listening: dict[str, Any] = {
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}, *gateway_ports(options)],
        "startupProbe": {**probe, "failureThreshold": 30},
        "livenessProbe": {**probe, "failureThreshold": 3},
        "readinessProbe": {**probe, "failureThreshold": 1},
    } if options.serve_gateways else {}
    container = {
        "name": "agent", "image": options.image, "imagePullPolicy": "IfNotPresent",
        "command": ["cellplane"], "args": agent_args(options),
        "env": [{"name": "CELLPLANE_HOME", "value": DATA_DIR}, {"name": "HOME", "value": TMP},
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
        **listening,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": AGENT_USER, "runAsGroup": AGENT_USER,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
                         {"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": TMP}],
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": AGENT, "namespace": ns, "labels": pod_labels},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": {**pod_labels, **gateway_labels}}, "spec": {
                         "serviceAccountName": AGENT, "automountServiceAccountToken": True,
                         "enableServiceLinks": False, "terminationGracePeriodSeconds": 30,
                         "securityContext": {"runAsNonRoot": True, "runAsUser": AGENT_USER,
                                             "runAsGroup": AGENT_USER, "fsGroup": AGENT_USER,
                                             "seccompProfile": {"type": "RuntimeDefault"}},
                         "containers": [container],
                         "volumes": [{"name": "token", "secret": {"secretName": TOKEN_SECRET, "defaultMode": 0o440}},
                                     {"name": "data", **data}, {"name": "tmp", "emptyDir": {}}]}}}}


def gateway_services(options: InstallOptions) -> list[dict[str, Any]]:
    """Per environment, the external and internal Cellplane gateway Services (``ClusterLayout``'s names and port),
    selecting the pods labelled as that kind of gateway: what cells' NetworkPolicies admit and HTTPRoutes send to."""
    layout = options.layout
    out = []
    for environment in options.environments:
        for kind in GATEWAY_KINDS:
            out.append({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": layout.gateway_service(environment, kind),
                                     "namespace": layout.system_namespace,
                                     "labels": {**labels(options, "gateway"), names.GATEWAY: kind,
                                                names.ENVIRONMENT: names.label_value(environment)}},
                        "spec": {"type": "ClusterIP", "selector": layout.gateway_pods(kind),
                                 "ports": [{"name": "http", "port": layout.gateway_port,
                                            "targetPort": layout.gateway_port_name(kind, environment),
                                            "protocol": "TCP"}]}})
    return out
