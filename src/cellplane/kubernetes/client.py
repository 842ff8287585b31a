"""The agent's Kubernetes API client: lightkube's ``AsyncClient`` from a kubeconfig file or in-cluster config, and the
resource classes of the kinds the renderer makes, every one *generic* (lightkube's ``Generic``: a dict), so what is
sent and what comes back are the plain dicts the renderer and the health readers work with, never typed models.

``connect`` reads the configuration once: a kubeconfig file (``--kubeconfig``; its current context), else the
pod's service account when the agent runs in a cluster (``KUBERNETES_SERVICE_HOST`` and the token file), else a
one-line ``CellplaneError``. Nothing is sent until the first call (lightkube is lazy); ``check`` makes one GET
(``/version``) so that an unreachable or refusing API server is said once at start. Cost: reading one file; one
HTTP/1.1 connection pool (lightkube over httpx) kept for the agent's life.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.types import PatchType

from cellplane.errors import CellplaneError

MANAGER = "cellplane"  # the one field manager of every server-side apply of a rendered object
SCALE_MANAGER = "cellplane-scale"  # and of the agent's replica counts written through a Deployment's /scale
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# (apiVersion, kind) -> (plural, namespaced): the kinds the renderer makes, and the ones the agent reads
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("batch/v1", "CronJob"): ("cronjobs", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("gateway.networking.k8s.io/v1", "Gateway"): ("gateways", True),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ("httproutes", True),
    ("v1", "Pod"): ("pods", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
}
_CLASSES: dict[tuple[str, str], Any] = {}


def resource(api_version: str, kind: str) -> Any:
    """lightkube's generic resource class of a kind (made once per process)."""
    key = (api_version, kind)
    cls = _CLASSES.get(key)
    if cls is None:
        plural, namespaced = KINDS[key]
        group, _, version = api_version.rpartition("/")
        make = create_namespaced_resource if namespaced else create_global_resource
        cls = _CLASSES[key] = make(group, version, kind, plural)
    return cls


async def scale(client: AsyncClient, namespace: str, name: str, replicas: int) -> None:
    """Set a Deployment's replica count through its ``/scale`` subresource: a server-side apply of the ``Scale``
    under its own field manager (``SCALE_MANAGER``), forced. Only the count changes, and that manager owns it even
    when the value does not change (an update that changes nothing takes no ownership; an apply does): the
    Deployment the agent renders for an autoscaled deployment has no ``replicas``, and when the agent's apply
    stops sending them, they stay as long as another manager owns them (``runtime``'s hand-over)."""
    body = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas}}
    await client.patch(resource("apps/v1", "Deployment").Scale, name, body, namespace=namespace,
                       patch_type=PatchType.APPLY, field_manager=SCALE_MANAGER, force=True)


def load_config(kubeconfig: Path | None) -> KubeConfig:
    """The client configuration (see the module's docstring); ``CellplaneError`` in one line when there is none."""
    if kubeconfig is not None:
        try:
            text = kubeconfig.read_text()
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise CellplaneError(f"--kubeconfig {kubeconfig}: cannot read: {why}", code="invalid") from None
        import yaml

        try:
            document = yaml.safe_load(text)
            config = KubeConfig.from_dict(document, fname=kubeconfig.resolve())
            config.get()  # its current context must exist
        except KeyError as e:
            raise CellplaneError(f"--kubeconfig {kubeconfig}: not a usable kubeconfig (no {e.args[0]!r} entry)",
                                 code="invalid") from None
        except (ConfigError, yaml.YAMLError, TypeError, AttributeError, ValueError) as e:
            raise CellplaneError(f"--kubeconfig {kubeconfig}: not a usable kubeconfig ({e or type(e).__name__})",
                                 code="invalid") from None
        return config
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (SERVICE_ACCOUNT / "token").is_file():
        try:
            return KubeConfig.from_service_account(SERVICE_ACCOUNT)
        except (ConfigError, KeyError) as e:
            raise CellplaneError(f"the in-cluster configuration cannot be read: {e}", code="invalid") from None
    raise CellplaneError("no Kubernetes configuration: pass --kubeconfig FILE, or run the agent in a pod with a "
                         "service account", code="invalid")


def connect(kubeconfig: Path | None) -> AsyncClient:
    """A client for the cluster (lazy: nothing sent yet). Its HTTP library's per-request lines stay out of the
    agent's log, as httpx's do."""
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    return AsyncClient(load_config(kubeconfig), field_manager=MANAGER, trust_env=False)


def message(error: BaseException) -> str:
    """One line for a failed API call."""
    if isinstance(error, ApiError):
        status = error.status
        return f"{status.code} {status.reason or ''}: {status.message or ''}".replace("  ", " ").strip()
    return str(error) or type(error).__name__


async def check(client: AsyncClient) -> None:
    """One call to the API server: ``CellplaneError`` when it cannot be reached or refuses this agent."""
    try:
        async for _ in client.list(resource("v1", "Namespace"), chunk_size=1):
            break
    except Exception as e:  # httpx errors, TLS errors, ApiError (401, 403)
        raise CellplaneError(f"the Kubernetes API server at {client.config.cluster.server} cannot be used: "
                             f"{message(e)}", code="unavailable") from None
