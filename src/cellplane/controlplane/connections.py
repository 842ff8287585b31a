"""Connections: what a component's dependencies resolve to in one environment, and their credentials.

A dependency on an endpoint of the same project goes through the project's cell; on an ``Organization``
endpoint of another project through the internal listener, with credentials (a consumer key and secret,
created once per consumer, dependency and environment and kept stable); on a ``Public``-only endpoint of
another project through the external listener; an ``url`` dependency is that URL. Anything else does not
resolve, and the reason says why (see docs/dataplane.md).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cellplane.controlplane import tracks
from cellplane.controlplane.keyring import KeyRing
from cellplane.store.tables import ConnectionKeyRow, DeploymentRow, ResourceRow


def env_word(name: str) -> str:
    """A dependency name as it appears in Choreo's variable names: upper case, other runs as '_'."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


def default_env(name: str, via: str | None) -> list[dict[str, str]]:
    """Choreo's names for a dependency without ``env`` entries."""
    word = env_word(name)
    out = [{"from": "ServiceURL", "to": f"CHOREO_{word}_SERVICEURL"}]
    if via == "internal":
        out += [{"from": "ConsumerKey", "to": f"CHOREO_{word}_CONSUMERKEY"},
                {"from": "ConsumerSecret", "to": f"CHOREO_{word}_CONSUMERSECRET"},
                {"from": "TokenURL", "to": f"CHOREO_{word}_TOKENURL"},
                {"from": "APIKey", "to": f"CHOREO_{word}_CHOREOAPIKEY"}]
    return out


def key_context(row: ConnectionKeyRow) -> str:
    """Associated data binding a connection secret's ciphertext to its connection."""
    return (f"connection\0{row.organization}\0{row.environment}\0{row.project}\0{row.component}"
            f"\0{row.dependency}\0{row.consumer_key}")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def find_key(s: Session, organization: str, environment: str, project: str, component: str,
             dependency: str) -> ConnectionKeyRow | None:
    return s.scalar(select(ConnectionKeyRow).where(
        ConnectionKeyRow.organization == organization, ConnectionKeyRow.environment == environment,
        ConnectionKeyRow.project == project, ConnectionKeyRow.component == component,
        ConnectionKeyRow.dependency == dependency))


def ensure_key(s: Session, keyring: KeyRing, organization: str, environment: str, project: str, component: str,
               dependency: str) -> ConnectionKeyRow:
    """The connection's credentials, created on first use; a concurrent creator's row wins."""
    row = find_key(s, organization, environment, project, component, dependency)
    if row is not None:
        return row
    secret = secrets.token_urlsafe(32)
    row = ConnectionKeyRow(organization=organization, environment=environment, project=project,
                           component=component, dependency=dependency, consumer_key="ck_" + secrets.token_hex(8),
                           secret="", secret_digest=digest(secret))
    row.secret = keyring.encrypt(secret, key_context(row))
    try:
        with s.begin_nested():
            s.add(row)
    except IntegrityError:
        existing = find_key(s, organization, environment, project, component, dependency)
        if existing is None:
            raise
        return existing
    return row


def rotate(s: Session, keyring: KeyRing, budget: int) -> int:
    """Re-encrypt connection secrets held under an older key, at most ``budget``; returns how many."""
    done = 0
    for row in s.scalars(select(ConnectionKeyRow).order_by(ConnectionKeyRow.id)).all():
        if done >= budget:
            break
        if keyring.key_id_of(row.secret) != keyring.primary_id:
            ctx = key_context(row)
            row.secret = keyring.encrypt(keyring.decrypt(row.secret, ctx), ctx)
            done += 1
    return done


@dataclass
class Resolution:
    """One dependency, resolved (``via`` set) or not (``reason`` set)."""

    name: str
    via: str | None = None
    reason: str | None = None
    target: dict[str, Any] | None = None  # project, component, endpoint, basePath, version
    url: str | None = None
    env: list[dict[str, str]] = field(default_factory=list)

    @property
    def resolved(self) -> bool:
        return self.via is not None


_COMPONENTS = select(ResourceRow).where(  # built once (see resources._FIND)
    ResourceRow.kind == "Component", ResourceRow.organization == bindparam("org"),
    ResourceRow.project == bindparam("project"), ResourceRow.name.in_(bindparam("names", expanding=True)))


class Lookup:
    """Components and deployments of one organization, read once per computation."""

    def __init__(self, s: Session, organization: str) -> None:
        self.s = s
        self.organization = organization
        self._components: dict[tuple[str, str], ResourceRow | None] = {}
        self._deployed: dict[str, dict[tuple[str, str], set[str]]] = {}

    def component(self, project: str, name: str) -> ResourceRow | None:
        key = (project, name)
        if key not in self._components:
            self.prefetch({key})
        return self._components[key]

    def looked_up(self) -> frozenset[tuple[str, str]]:
        """Every component (project, name) read so far, found or not."""
        return frozenset(self._components)

    def prefetch(self, keys: set[tuple[str, str]]) -> None:
        """Read these components (project, name) in one query per project rather than one each."""
        missing = keys - set(self._components)
        by_project: dict[str, set[str]] = {}
        for project, name in missing:
            by_project.setdefault(project, set()).add(name)
        for project, names in by_project.items():
            found = {r.name: r for r in self.s.scalars(
                _COMPONENTS, {"org": self.organization, "project": project, "names": sorted(names)})}
            self._components.update({(project, n): found.get(n) for n in names})

    def versions(self, environment: str, project: str, component: str) -> set[str]:
        """The API major versions (v1, v2) the component's deployed tracks serve in the environment."""
        if environment not in self._deployed:
            rows = self.s.execute(select(DeploymentRow.project, DeploymentRow.component, DeploymentRow.track).where(
                DeploymentRow.organization == self.organization, DeploymentRow.environment == environment))
            deployed: dict[tuple[str, str], set[str]] = {}
            for p, c, t in rows:
                deployed.setdefault((p, c), set()).add(t)
            self._deployed[environment] = deployed
        row = self.component(project, component)
        spec = (row.spec if row is not None else None) or {}
        return {tracks.route_version(spec, t) for t in self._deployed[environment].get((project, component), ())}


def resolve(lookup: Lookup, project: str, environment: str, dependency: dict[str, Any]) -> Resolution:
    """What one dependency (as stored in a component spec) of a component of ``project`` resolves to."""
    name = dependency["name"]
    explicit = [{"from": e["from"], "to": e["to"]} for e in dependency.get("env") or []]

    def done(r: Resolution) -> Resolution:
        r.env = explicit or default_env(name, r.via)
        return r

    if dependency.get("url"):
        return done(Resolution(name, via="url", url=dependency["url"]))
    target_project = dependency.get("project") or project
    target_name = dependency.get("component") or ""
    where = f"{target_project}/{target_name}"
    target = lookup.component(target_project, target_name)
    if target is None:
        return done(Resolution(name, reason=f"component {where} does not exist"))
    endpoints = (target.spec or {}).get("endpoints") or []
    wanted = dependency.get("endpoint")
    if wanted is None:
        if not endpoints:
            return done(Resolution(name, reason=f"component {where} has no endpoints"))
        endpoint = endpoints[0]
    else:
        endpoint = next((e for e in endpoints if e.get("name") == wanted), None)
        if endpoint is None:
            return done(Resolution(name, reason=f"component {where} has no endpoint '{wanted}'"))
    ep_name = endpoint["name"]
    served = lookup.versions(environment, target_project, target_name)
    version = dependency.get("version") or tracks.default_major(target.spec or {})
    if not served:
        return done(Resolution(name, reason=f"component {where} is not deployed in {environment}"))
    if version not in served:
        return done(Resolution(name, reason=f"component {where} serves {', '.join(sorted(served))} in {environment}, "
                                            f"not {version}"))
    visibility = endpoint.get("visibility") or ["Project"]
    spec_target = {"project": target_project, "component": target_name, "endpoint": ep_name,
                   "basePath": endpoint.get("basePath") or "/", "version": version}
    if target_project == project:
        return done(Resolution(name, via="cell", target=spec_target))
    if "Organization" in visibility:
        return done(Resolution(name, via="internal", target=spec_target))
    if "Public" in visibility:
        return done(Resolution(name, via="external", target=spec_target))
    return done(Resolution(name, reason=f"endpoint {target_project}/{target_name}/{ep_name} is visible to project "
                                        f"{target_project} only"))


def resolve_all(lookup: Lookup, component: ResourceRow, environment: str,
                spec: dict[str, Any] | None = None) -> list[Resolution]:
    """The dependencies of ``spec`` (a release's; the component's current spec by default), resolved."""
    spec = component.spec or {} if spec is None else spec
    return [resolve(lookup, component.project, environment, dep) for dep in spec.get("dependencies") or []]


Reveal = Callable[[], str]


def credentials(s: Session, keyring: KeyRing, component: ResourceRow, environment: str,
                dependency: str) -> tuple[ConnectionKeyRow, Reveal]:
    """The consumer key row of a connection, and how to read its secret (decrypted only when called)."""
    row = ensure_key(s, keyring, component.organization, environment, component.project, component.name, dependency)
    ciphertext, ctx = row.secret, key_context(row)
    return row, lambda: keyring.decrypt(ciphertext, ctx)
