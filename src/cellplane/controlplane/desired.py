"""Desired state: what a data plane must run, computed from deployments, component specs and configuration.

A deployment runs its release (``releases``: an artifact, a spec and a configuration snapshot), with its
connections resolved now; a track that another track of the same component supersedes (same major version,
see ``tracks``) is left out. The document is the contract's ``DesiredState`` (``cellplane.contract``), built with
keyword arguments here and turned into JSON once, at the edge (``Unsealed.sealed``, for the long-poll's body).

Secret values (configuration secrets, connection secrets) are carried unsealed as a placeholder in their
``sealed`` field: a text that stands for the secret's place and stored version, never its plaintext (``Secret``).
When the document is sent, each placeholder is replaced by the secret sealed to the agent's public key
(``cellplane.sealing``). Digests are taken over the unsealed JSON:

* ``release`` (per deployment, the rollout key): the release id and the resolved connections. A new one is
  rolled out.
* ``revision`` (per data plane): the whole document and the agent's public key. It is stable while
  nothing changes, although sealing is randomized, and the agent long-polls on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.contract.desired import (
    DesiredArtifact,
    DesiredConnection,
    DesiredConnectionEnv,
    DesiredCredentials,
    DesiredDeployment,
    DesiredEndpoint,
    DesiredEnv,
    DesiredEnvironment,
    DesiredFile,
    DesiredGrant,
    DesiredHealth,
    DesiredResources,
    DesiredRun,
    DesiredScaling,
    DesiredSchedule,
    DesiredState,
    DesiredTarget,
    GrantTarget,
    SealedValue,
)
from cellplane.contract.wire import ConnectionVia
from cellplane.controlplane import config, connections, dataplanes, registries, releases, taskruns, tracks
from cellplane.controlplane.connections import Lookup, Resolution
from cellplane.controlplane.keyring import KeyRing
from cellplane.model import scaling
from cellplane.sealing import seal
from cellplane.store import Store, in_chunks
from cellplane.store.tables import DeploymentRow, ReleaseRow, ResourceRow

NOT_REGISTERED = "the data plane has not registered yet"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


@dataclass(frozen=True)
class Secret:
    """A secret value in a desired state that is not sealed yet: where it goes, what stands for it in digests,
    and how to read it (decrypting happens only when the document is sealed)."""

    context: str
    marker: tuple[Any, ...]
    reveal: Callable[[], str] = field(repr=False, compare=False)

    @property
    def placeholder(self) -> str:
        """What the unsealed document carries in its place: its context and marker as canonical JSON."""
        return canonical({"secret": list(self.marker), "context": self.context}).decode()


@dataclass
class Plan:
    """One deployment as its data plane should run it (secrets not sealed: ``secrets`` maps each placeholder in
    ``document`` to its secret).

    ``release`` is the rollout key the data plane compares: the release id, followed by a digest of the resolved
    connections when there are any (a connection resolving elsewhere restarts the workload with new values)."""

    deployment: DeploymentRow
    component: ResourceRow
    document: DesiredDeployment
    connections: list[Resolution]
    release: str
    release_id: str
    version: str
    blocked: str | None
    has_secrets: bool
    grants: list[DesiredGrant]
    secrets: dict[str, Secret]


def endpoints_of(spec: dict[str, Any]) -> list[DesiredEndpoint]:
    return [DesiredEndpoint(name=e["name"], port=e["port"], type=e.get("type") or "REST",
                            basePath=e.get("basePath") or "/", visibility=list(e.get("visibility") or ["Project"]))
            for e in spec.get("endpoints") or []]


def image_in(record: dict[str, Any] | None, registry_url: str | None) -> str | None:
    """The image's reference in the registry at ``registry_url`` (the one a data plane pulls from), else the build's
    own reference; None without an image. Always by digest."""
    if not record:
        return None
    host = registry_url.split("://", 1)[-1].rstrip("/") + "/" if registry_url else None
    for reference in record.get("pushedTo") or []:
        if host and str(reference).startswith(host):
            return str(reference)
    return str(record["reference"])


def scaling_of(component: ResourceRow, environment: str, production: bool) -> DesiredScaling | None:
    """The scaling of a deployment, from its component's CURRENT spec (not its release's: scaling is operational, so
    ``apply`` or ``cellplane scale`` reaches running deployments without a new release), for its environment."""
    resolved = scaling.resolve(component.spec or {}, environment, production)
    return DesiredScaling(**resolved.as_dict()) if resolved is not None else None


def plan(s: Session, keyring: KeyRing, lookup: Lookup, dep: DeploymentRow, component: ResourceRow, *,
         credentials: bool, registered: bool, production: bool, release: ReleaseRow | None = None,
         registry: str | None = None) -> Plan:
    """The desired state of one deployment: its release (artifact, spec, configuration), with its connections
    resolved now, and its scaling from the component's current spec (``scaling_of``; ``production``: whether the
    deployment's environment is a production one). ``credentials``: create and carry connection credentials (for
    the agent; a view only needs where connections go). ``release``: the deployment's release, when the caller has
    read it already."""
    rel = release if release is not None and release.id == dep.release_id else \
        releases.of_deployment(s, keyring, dep, component.spec or {})
    spec = rel.spec or {}
    env, project, name = dep.environment, dep.project, dep.component
    secrets: dict[str, Secret] = {}

    def unsealed(item: str, marker: tuple[Any, ...], reveal: Callable[[], str]) -> str:
        secret = Secret(f"{env}/{project}/{name}/{item}", marker, reveal)
        secrets[secret.placeholder] = secret
        return secret.placeholder

    declared_files = {f["name"]: f for f in (spec.get("configuration") or {}).get("files") or []}
    env_items: list[DesiredEnv] = []
    file_items: list[DesiredFile] = []
    for value in rel.configuration or []:
        key = value["key"]
        file_name = key[len(config.FILE_PREFIX):] if key.startswith(config.FILE_PREFIX) else None
        declared = declared_files.get(file_name) if file_name is not None else None
        if file_name is not None and declared is None:  # a file value set without a file in the spec: no mount path
            continue
        sealed = unsealed(file_name or key, ("config", *value.get("ref", ())),
                          functools.partial(releases.reveal, keyring, rel, value)) if value.get("secret") else None
        if declared is None:
            env_items.append(DesiredEnv(name=key, value=value.get("value")) if sealed is None else
                             DesiredEnv(name=key, sealed=sealed))
        else:
            file_items.append(DesiredFile(name=declared["name"], mountPath=declared["mountPath"],
                                          content=value.get("value")) if sealed is None else
                              DesiredFile(name=declared["name"], mountPath=declared["mountPath"], sealed=sealed))
    has_secrets = bool(secrets)

    resolutions = connections.resolve_all(lookup, component, env, spec)
    conns: list[DesiredConnection] = []
    grants: list[DesiredGrant] = []
    blocked = None
    for r in resolutions:
        wired = [DesiredConnectionEnv.model_validate(e) for e in r.env]
        if not r.resolved:
            conns.append(DesiredConnection(name=r.name, state="unresolved", reason=r.reason, env=wired))
            blocked = blocked or f"dependency '{r.name}': {r.reason}"
            continue
        via = cast(ConnectionVia, r.via)
        if r.via == "url":
            conns.append(DesiredConnection(name=r.name, state="resolved", via=via, url=r.url, env=wired))
            continue
        assert r.target is not None
        t = r.target
        target = DesiredTarget(project=t["project"], component=t["component"], endpoint=t["endpoint"],
                               basePath=t["basePath"], version=t["version"])
        if r.via == "internal":
            has_secrets = True
        if r.via == "internal" and credentials:
            row, reveal = connections.credentials(s, keyring, component, env, r.name)
            consumer_secret = unsealed(f"connection:{r.name}", ("connection", row.consumer_key, row.secret_digest),
                                       reveal)
            conns.append(DesiredConnection(
                name=r.name, state="resolved", via=via, target=target, env=wired, credentials=DesiredCredentials(
                    consumerKey=row.consumer_key, consumerSecret=SealedValue(sealed=consumer_secret))))
            grants.append(DesiredGrant(consumerKey=row.consumer_key, secretDigest=row.secret_digest, environment=env,
                                       project=project, component=name, target=GrantTarget(
                                           project=t["project"], component=t["component"], endpoint=t["endpoint"])))
        else:
            conns.append(DesiredConnection(name=r.name, state="resolved", via=via, target=target, env=wired))
    if blocked is None and has_secrets and not registered:
        blocked = NOT_REGISTERED

    shown = [c.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"credentials"}) for c in conns]
    rollout = rel.id + ("-" + digest(shown)[:4] if shown else "")
    version = tracks.version(component.spec or {}, dep.track)
    document = DesiredDeployment(
        id=dep.id, environment=env, project=project, component=name, track=dep.track,
        type=spec.get("type") or "service", release=rollout, version=tracks.major(version),
        artifact=DesiredArtifact(digest=rel.artifact, **(
            {"image": image_in(rel.image, registry)} if rel.image else {})), replicas=spec.get("replicas", 1),
        **({"scaling": scaled} if (scaled := scaling_of(component, env, production)) is not None else {}),
        resources=DesiredResources.model_validate(spec.get("resources") or {}),
        health=DesiredHealth.model_validate(spec["health"]) if spec.get("health") is not None else None,
        endpoints=endpoints_of(spec), env=env_items, files=file_items, connections=conns, blocked=blocked,
        schedule=DesiredSchedule.model_validate(spec["schedule"]) if spec.get("schedule") is not None else None)
    return Plan(dep, component, document, resolutions, rollout, rel.id, version, blocked, has_secrets, grants,
                secrets)


def superseded(lookup: Lookup, deps: list[DeploymentRow]) -> dict[str, DeploymentRow]:
    """Deployments that do not serve because another track of the same component serves the same major version
    in the same environment (a newer minor version, or the same version whose track was deployed there later):
    id -> the one serving."""
    groups: dict[tuple[str, str, str, str], list[tuple[tuple[int, int], Any, DeploymentRow]]] = {}
    for dep in deps:
        component = lookup.component(dep.project, dep.component)
        if component is None:
            continue
        version = tracks.version(component.spec or {}, dep.track)
        key = (dep.environment, dep.project, dep.component, tracks.major(version))
        groups.setdefault(key, []).append((tracks.order(version), dep.created_at, dep))
    out: dict[str, DeploymentRow] = {}
    for members in groups.values():
        if len(members) > 1:
            members.sort(key=lambda m: (m[0], m[1], m[2].id))
            winner = members[-1][2]
            out.update({m[2].id: winner for m in members[:-1]})
    return out


@dataclass
class Unsealed:
    """A data plane's desired state as computed: the contract's document with its secrets not sealed yet
    (``secrets`` maps each placeholder to its secret), its revision, the agent's public key, and the components it
    was computed from ((project, name) of each)."""

    document: DesiredState
    revision: str
    public_key: str | None
    secrets: dict[str, Secret] = field(default_factory=dict)
    components: frozenset[tuple[str, str]] = frozenset()

    def sealed(self) -> dict[str, Any]:
        """The document as sent, JSON: every secret sealed to the agent's key (a fresh seal each time; null
        without a key)."""
        return cast(dict[str, Any], self._seal(self.document.to_wire()))

    def _seal(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._sealed(v) if k == "sealed" else self._seal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._seal(v) for v in value]
        return value

    def _sealed(self, placeholder: Any) -> str | None:
        secret = self.secrets[placeholder]
        return seal(self.public_key, secret.reveal(), secret.context) if self.public_key else None


def compute(s: Session, keyring: KeyRing, org: str, name: str) -> Unsealed:
    """Everything data plane ``name`` must run: the deployments of the environments bound to it."""
    dp = dataplanes.get(s, org, name)
    key = dataplanes.public_key(dp)
    envs = dataplanes.environments(s, org, name)
    deps = s.scalars(select(DeploymentRow).where(
        DeploymentRow.organization == org, DeploymentRow.environment.in_([e.name for e in envs]))
        .order_by(DeploymentRow.environment, DeploymentRow.project, DeploymentRow.component)).all() if envs else []
    lookup = Lookup(s, org)
    lookup.prefetch({(d.project, d.component) for d in deps})
    registry = registries.registry_of_dataplane(s, org, name)
    release_ids = sorted({d.release_id for d in deps if d.release_id is not None})
    rels: dict[str, ReleaseRow] = {}
    for chunk in in_chunks(release_ids):
        rels.update((r.id, r) for r in s.scalars(select(ReleaseRow).where(ReleaseRow.id.in_(chunk))))
    plans = []
    losers = superseded(lookup, list(deps))
    production = {e.name: bool((e.spec or {}).get("production")) for e in envs}
    for dep in deps:
        component = lookup.component(dep.project, dep.component)
        if component is not None and dep.id not in losers:
            plans.append(plan(s, keyring, lookup, dep, component, credentials=True, registered=key is not None,
                              production=production.get(dep.environment, False),
                              release=rels.get(dep.release_id) if dep.release_id is not None else None,
                              registry=registry))
    runs = taskruns.queued_runs(s, [p.deployment.id for p in plans if not p.blocked])
    document = DesiredState(
        revision="", organization=org, dataPlane=name,
        environments=[DesiredEnvironment(name=e.name, production=production[e.name]) for e in envs],
        deployments=[p.document for p in plans],
        grants=[g for p in plans for g in p.grants],
        runs=[DesiredRun(id=r.id, deployment=r.deployment_id, environment=r.environment, project=r.project,
                         component=r.component, requestedAt=r.requested_at.isoformat()) for r in runs])
    unsealed = document.to_wire()
    del unsealed["revision"]
    revision = digest({"document": unsealed, "publicKey": key})
    return Unsealed(document.model_copy(update={"revision": revision}), revision, key,
                    {k: v for p in plans for k, v in p.secrets.items()}, lookup.looked_up())


# What a desired state is computed from, besides the resources it names (its organization, data plane, environments
# and components): tables whose every write may change it.
INPUT_TABLES = ("resources", "deployments", "releases", "connection_keys", "task_runs")


@dataclass
class _Kept:
    state: Unsealed
    seq: int  # the store's change sequence number up to which nothing it depends on changed
    at: float  # time.monotonic() of the computation


class DesiredStateCache:
    """The desired state of each data plane, computed again only when something it was computed from changed.

    An attached agent long-polls its desired state; computing it reads every deployment of the data plane (about
    50 ms for 500 deployments). A kept state is used while no write committed through this process
    touched what it depends on (``INPUT_TABLES``; of resources, its organization, data plane, the organization's
    environments and the components it read: see ``cellplane.store.changes``), and for at most ``ttl`` seconds,
    since another control-plane replica on the same PostgreSQL database writes unseen. Nothing in a desired state
    depends on the time itself (schedules are carried, not evaluated), so a state does not age otherwise.
    """

    def __init__(self, store: Store, keyring: KeyRing, ttl: float) -> None:
        self.store = store
        self.keyring = keyring
        self.ttl = ttl
        self._kept: dict[tuple[str, str], _Kept] = {}
        self._lock = threading.Lock()

    def fresh(self, org: str, name: str) -> Unsealed | None:
        """The kept desired state, if nothing it depends on changed since it was computed."""
        kept = self._kept.get((org, name))
        if kept is None or time.monotonic() - kept.at >= self.ttl:
            return None
        seq = self.store.changes.seq
        if self.store.changes.since(kept.seq, INPUT_TABLES, _depends(org, name, kept.state.components)):
            return None
        kept.seq = max(kept.seq, seq)  # still valid up to here: the next look scans only what comes after
        return kept.state

    def get(self, org: str, name: str, check: Callable[[Session], Any] | None = None) -> Unsealed:
        """The desired state of data plane ``name``; ``check(session)`` runs before it is computed (it raises when
        the data plane or its organization does not exist)."""
        state = self.fresh(org, name) or self._same_key(org, name, check)
        if state is not None:
            return state

        def work(s: Session) -> Unsealed:
            if check is not None:
                check(s)
            return compute(s, self.keyring, org, name)

        seq = self.store.changes.seq  # before reading: a change committed meanwhile makes the result stale
        state = self.store.run(work)
        with self._lock:
            self._kept[(org, name)] = _Kept(state, seq, time.monotonic())
        return state

    def _same_key(self, org: str, name: str, check: Callable[[Session], Any] | None) -> Unsealed | None:
        """The kept desired state when, of what it depends on, only the data plane's resource changed and its agent's
        public key is still the same: its status reports (every few seconds) change it, and nothing else in it
        counts here."""
        kept = self._kept.get((org, name))
        if kept is None or time.monotonic() - kept.at >= self.ttl:
            return None
        seq = self.store.changes.seq
        if self.store.changes.since(kept.seq, INPUT_TABLES, _depends(org, name, kept.state.components, plane=False)):
            return None

        def key(s: Session) -> str | None:
            if check is not None:
                check(s)
            return dataplanes.public_key(dataplanes.get(s, org, name))

        if self.store.run(key) != kept.state.public_key:
            return None
        kept.seq = max(kept.seq, seq)
        return kept.state


def _depends(org: str, name: str, components: frozenset[tuple[str, str]],
             plane: bool = True) -> Callable[[str, tuple[Any, ...]], bool]:
    """Whether a changed row (table, key) is one a desired state of data plane ``name`` was computed from (but for the
    data plane's own resource, without ``plane``)."""

    def touches(table: str, key: tuple[Any, ...]) -> bool:
        if table != "resources":
            return True
        kind, organization, project, row = key
        if kind == "Organization":
            return row == org
        if organization != org:
            return False
        if kind == "DataPlane":
            return plane and row == name
        if kind == "Component":
            return (project, row) in components
        return kind == "Environment"

    return touches
