"""Desired state: what a data plane must run, computed from deployments, component specs and configuration.

A deployment runs its artifact with its component's *current* spec and the configuration resolved for its
environment. Secret values (configuration secrets, connection secrets) are carried as ``Secret``
placeholders until the document is sent: then they are sealed to the agent's public key
(``cellplane.sealing``). Two digests are taken over the unsealed form, where a secret stands for its
place and stored version, never its plaintext:

* ``release`` (per deployment): the artifact, the spec (without source, build and descriptive fields),
  the resolved configuration and the resolved connections. A new release is rolled out.
* ``revision`` (per data plane): the whole document and the agent's public key. It is stable while
  nothing changes, although sealing is randomized, and the agent long-polls on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.controlplane import config, connections, dataplanes, workloads
from cellplane.controlplane.connections import VERSION, Lookup, Resolution
from cellplane.controlplane.keyring import KeyRing
from cellplane.sealing import seal
from cellplane.store.tables import DeploymentRow, ResourceRow

RELEASE_EXCLUDED = ("source", "build", "displayName", "description", "configuration")
NOT_REGISTERED = "the data plane has not registered yet"


@dataclass(frozen=True)
class Secret:
    """A secret value in a desired state that is not sealed yet: where it goes, what stands for it in digests,
    and how to read it (decrypting happens only when the document is sealed)."""

    context: str
    marker: tuple[Any, ...]
    reveal: Callable[[], str] = field(repr=False, compare=False)


def _unsealed(value: Any) -> Any:
    if isinstance(value, Secret):
        return {"secret": list(value.marker), "context": value.context}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_unsealed).encode()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


@dataclass
class Plan:
    """One deployment as its data plane should run it (secrets not sealed)."""

    deployment: DeploymentRow
    component: ResourceRow
    document: dict[str, Any]
    connections: list[Resolution]
    release: str
    blocked: str | None
    has_secrets: bool
    grants: list[dict[str, Any]]


def endpoints_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": e["name"], "port": e["port"], "type": e.get("type") or "REST",
             "basePath": e.get("basePath") or "/", "visibility": list(e.get("visibility") or ["Project"])}
            for e in spec.get("endpoints") or []]


def plan(s: Session, keyring: KeyRing, lookup: Lookup, dep: DeploymentRow, component: ResourceRow, *,
         credentials: bool, registered: bool) -> Plan:
    """The desired state of one deployment. ``credentials``: create and carry connection credentials (for the
    agent; a view only needs where connections go)."""
    spec = component.spec or {}
    env, project, name = dep.environment, dep.project, dep.component

    def place(item: str) -> str:
        return f"{env}/{project}/{name}/{item}"

    declared_files = {f["name"]: f for f in (spec.get("configuration") or {}).get("files") or []}
    env_items: list[dict[str, Any]] = []
    file_items: list[dict[str, Any]] = []
    release_config: list[dict[str, Any]] = []
    has_secrets = False
    for value in config.resolve(s, keyring, dep.organization, project, name, spec, env):
        item: dict[str, Any] = {"name": value.name}
        if value.is_file:
            declared = declared_files.get(value.name)
            if declared is None:  # a file value set without a file in the spec has no mount path
                continue
            item["mountPath"] = declared["mountPath"]
        if value.secret:
            assert value.ref is not None  # secrets are always stored values
            has_secrets = True
            item["sealed"] = Secret(place(value.name), ("config", *value.ref), value.reveal)
            release_config.append({**item, "key": value.key, "sealed": list(value.ref)})
        else:
            item["content" if value.is_file else "value"] = value.value
            release_config.append({**item, "key": value.key})
        (file_items if value.is_file else env_items).append(item)

    resolutions = connections.resolve_all(lookup, component, env)
    conns: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    blocked = None
    for r in resolutions:
        if not r.resolved:
            conns.append({"name": r.name, "state": "unresolved", "reason": r.reason, "env": r.env})
            blocked = blocked or f"dependency '{r.name}': {r.reason}"
            continue
        conn: dict[str, Any] = {"name": r.name, "state": "resolved", "via": r.via}
        if r.via == "url":
            conn["url"] = r.url
        else:
            conn["target"] = r.target
        if r.via == "internal":
            has_secrets = True
            if credentials:
                row, reveal = connections.credentials(s, keyring, component, env, r.name)
                conn["credentials"] = {"consumerKey": row.consumer_key, "consumerSecret": {"sealed": Secret(
                    place(f"connection:{r.name}"), ("connection", row.consumer_key, row.secret_digest), reveal)}}
                assert r.target is not None
                grants.append({"consumerKey": row.consumer_key, "secretDigest": row.secret_digest, "environment": env,
                               "project": project, "component": name,
                               "target": {k: r.target[k] for k in ("project", "component", "endpoint")}})
        conn["env"] = r.env
        conns.append(conn)
    if blocked is None and has_secrets and not registered:
        blocked = NOT_REGISTERED

    release_input = {
        "artifact": dep.artifact,
        "spec": {k: v for k, v in spec.items() if k not in RELEASE_EXCLUDED},
        "configuration": release_config,
        "connections": [{k: v for k, v in c.items() if k != "credentials"} for c in conns],
    }
    release = "r" + digest(release_input)[:10]
    document = {
        "id": dep.id, "environment": env, "project": project, "component": name,
        "type": spec.get("type") or "service", "release": release, "version": VERSION,
        "artifact": {"digest": dep.artifact,
                     "path": f"/organizations/{dep.organization}/projects/{project}/artifacts/{dep.artifact}"},
        "replicas": spec.get("replicas", 1), "resources": spec.get("resources") or {},
        "health": spec.get("health"), "endpoints": endpoints_of(spec), "env": env_items, "files": file_items,
        "connections": conns, "blocked": blocked, "schedule": spec.get("schedule"),
    }
    return Plan(dep, component, document, resolutions, release, blocked, has_secrets, grants)


@dataclass
class DesiredState:
    document: dict[str, Any]  # with Secret placeholders
    revision: str
    public_key: str | None

    def sealed(self) -> dict[str, Any]:
        """The document as sent: every secret sealed to the agent's key (a fresh seal each time)."""
        return _seal(self.document, self.public_key)


def _seal(value: Any, public_key: str | None) -> Any:
    if isinstance(value, Secret):
        return seal(public_key, value.reveal(), value.context) if public_key else None
    if isinstance(value, dict):
        return {k: _seal(v, public_key) for k, v in value.items()}
    if isinstance(value, list):
        return [_seal(v, public_key) for v in value]
    return value


def compute(s: Session, keyring: KeyRing, org: str, name: str) -> DesiredState:
    """Everything data plane ``name`` must run: the deployments of the environments bound to it."""
    dp = dataplanes.get(s, org, name)
    key = dataplanes.public_key(dp)
    envs = dataplanes.environments(s, org, name)
    deps = s.scalars(select(DeploymentRow).where(
        DeploymentRow.organization == org, DeploymentRow.environment.in_([e.name for e in envs]))
        .order_by(DeploymentRow.environment, DeploymentRow.project, DeploymentRow.component)).all() if envs else []
    lookup = Lookup(s, org)
    plans = []
    for dep in deps:
        component = lookup.component(dep.project, dep.component)
        if component is not None:
            plans.append(plan(s, keyring, lookup, dep, component, credentials=True, registered=key is not None))
    runs = workloads.queued_runs(s, [p.deployment.id for p in plans if not p.blocked])
    document = {
        "organization": org, "dataPlane": name,
        "environments": [{"name": e.name, "production": bool((e.spec or {}).get("production"))} for e in envs],
        "deployments": [p.document for p in plans],
        "grants": [g for p in plans for g in p.grants],
        "runs": [{"id": r.id, "deployment": r.deployment_id, "environment": r.environment, "project": r.project,
                  "component": r.component, "requestedAt": r.requested_at.isoformat()} for r in runs],
    }
    revision = digest({"document": document, "publicKey": key})
    return DesiredState({"revision": revision, **document}, revision, key)
