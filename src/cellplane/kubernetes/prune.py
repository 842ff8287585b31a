"""What a data plane has in its cluster, and deleting what it no longer renders (inventory pruning).

``read_live`` lists, per kind the renderer makes and per namespace, the objects labelled as this data plane's
(``app.kubernetes.io/managed-by=cellplane``, ``cellplane.dev/organization``, ``cellplane.dev/data-plane``): the
namespaces first (cluster-scoped, by the same selector), then every kind in each of those namespaces, in the
namespaces the rendering names, and in the system namespace (Gateways, HTTPRoutes). An object without those labels
is never read, so never touched: the agent only prunes what it made.

``prunable`` picks the live objects that are not in the rendered inventory, leaving alone:

- an object with an owner (a CronJob's Jobs, a Deployment's ReplicaSets): its owner's deletion collects it;
- the objects of a deployment the rendering says is blocked: it keeps running what it ran (as on the local data
  plane), nothing of it is pruned;
- a manual run's Job while its deployment is still desired: a run leaves the desired state once it started (the
  control plane serves only queued runs), and it must run to its end; ``ttlSecondsAfterFinished`` removes it.

``delete`` removes them with ``propagationPolicy: Background`` (the garbage collector takes their pods), namespaces
last (a namespace's deletion takes what is left in it). Cost: one list request per kind per namespace (11 kinds),
one delete per pruned object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.types import CascadeType

from cellplane.kubernetes import names
from cellplane.kubernetes.client import message, resource
from cellplane.kubernetes.render import ORDER, Key

# the namespaced kinds the renderer makes, with their apiVersion, in apply order
NAMESPACED: tuple[tuple[str, str], ...] = (
    ("networking.k8s.io/v1", "NetworkPolicy"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"),
    ("apps/v1", "Deployment"), ("autoscaling/v2", "HorizontalPodAutoscaler"), ("batch/v1", "CronJob"),
    ("batch/v1", "Job"),
    ("gateway.networking.k8s.io/v1", "Gateway"), ("gateway.networking.k8s.io/v1", "HTTPRoute"))


def selector(organization: str, data_plane: str) -> dict[str, str]:
    """The labels of every object this data plane renders."""
    return {names.MANAGED_BY: names.MANAGER, names.ORGANIZATION: names.label_value(organization),
            names.DATA_PLANE: names.label_value(data_plane)}


async def list_kind(client: AsyncClient, api_version: str, kind: str, labels: dict[str, str],
                    namespace: str | None = None) -> list[dict[str, Any]]:
    """The objects of a kind matching ``labels`` (in ``namespace``), as dicts with their apiVersion and kind."""
    out = []
    try:
        async for item in client.list(resource(api_version, kind), namespace=namespace, labels=dict(labels.items())):
            obj = dict(item)
            obj["apiVersion"], obj["kind"] = api_version, kind
            out.append(obj)
    except ApiError as e:
        if e.status.code != 404:  # a namespace going away, a CRD not installed: nothing there
            raise
    return out


async def read_live(client: AsyncClient, labels: dict[str, str],
                    namespaces: Iterable[str]) -> dict[Key, dict[str, Any]]:
    """Every live object with ``labels`` (see the module's docstring), by key."""
    live: dict[Key, dict[str, Any]] = {}
    for obj in await list_kind(client, "v1", "Namespace", labels):
        live[("v1", "Namespace", "", obj["metadata"]["name"])] = obj
    where = sorted({k[3] for k in live} | set(namespaces))
    lists = await asyncio.gather(*(list_kind(client, api_version, kind, labels, namespace)
                                   for namespace in where for api_version, kind in NAMESPACED))
    for objects in lists:
        for obj in objects:
            meta = obj["metadata"]
            live[(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])] = obj
    return live


def prunable(live: dict[Key, dict[str, Any]], inventory: set[Key], blocked: Iterable[str],
             desired_deployments: Iterable[str]) -> list[Key]:
    """The live objects to delete (see the module's docstring), namespaces last."""
    keep_labels = {names.label_value(d) for d in blocked}
    running = {names.label_value(d) for d in desired_deployments}
    out = []
    for key, obj in live.items():
        if key in inventory:
            continue
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if meta.get("ownerReferences") or labels.get(names.DEPLOYMENT) in keep_labels:
            continue
        if key[1] == "Job" and names.RUN in labels and labels.get(names.DEPLOYMENT) in running:
            continue
        out.append(key)
    return sorted(out, key=lambda k: (k[1] == "Namespace", ORDER.index(k[1]) if k[1] in ORDER else 99, k))


async def delete(client: AsyncClient, keys: list[Key]) -> dict[Key, str]:
    """Delete ``keys`` (in that order: namespaces come last); returns the ones that failed, with why. An object
    already gone counts as deleted."""
    failed: dict[Key, str] = {}
    for api_version, kind, namespace, name in keys:
        try:
            await client.delete(resource(api_version, kind), name, namespace=namespace or None,
                                cascade=CascadeType.BACKGROUND)
        except ApiError as e:
            if e.status.code != 404:
                failed[(api_version, kind, namespace, name)] = message(e)
        except Exception as e:  # (the connection: said, tried again on the next pass)
            failed[(api_version, kind, namespace, name)] = message(e)
    return failed
