"""Deployments: which build of a component runs in which environment, and how it is doing there.

Deploying records the build (its artifact) for the component in the environment; the environment's data
plane picks it up from its desired state (``desired``), with the component's current spec and
configuration. What a deployment shows (``view``) combines what should run (its release) with what the
data plane last reported.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.controlplane import dataplanes, desired, workloads
from cellplane.controlplane import resources as store
from cellplane.controlplane.connections import VERSION, Lookup
from cellplane.controlplane.keyring import KeyRing
from cellplane.errors import ConflictError, FieldProblem, InvalidError, NotFoundError
from cellplane.gateway.routes import route_prefix
from cellplane.model import KINDS
from cellplane.store.tables import BuildRow, DeploymentRow, ResourceRow, now


def new_id() -> str:
    return "dep_" + secrets.token_hex(6)


def environment(s: Session, org: str, name: str, field_path: str = "environment") -> ResourceRow:
    row = store.find(s, store.Place(KINDS["Environment"], org), name)
    if row is None:
        raise NotFoundError(f"environment '{name}' not found in organization '{org}'",
                            [FieldProblem(field_path, "no such environment")])
    return row


def find(s: Session, org: str, project: str, component: str, env: str) -> DeploymentRow | None:
    return s.scalar(select(DeploymentRow).where(
        DeploymentRow.organization == org, DeploymentRow.project == project, DeploymentRow.component == component,
        DeploymentRow.environment == env))


def get(s: Session, org: str, project: str, component: str, env: str) -> DeploymentRow:
    row = find(s, org, project, component, env)
    if row is None:
        raise NotFoundError(f"component '{project}/{component}' is not deployed in environment '{env}'",
                            [FieldProblem("path.environment", "not deployed there")])
    return row


def _build_for(s: Session, org: str, component: ResourceRow, build_id: str | None) -> BuildRow:
    where = f"{component.project}/{component.name}"
    if build_id is None:
        row = s.scalars(select(BuildRow).where(
            BuildRow.organization == org, BuildRow.project == component.project,
            BuildRow.component == component.name, BuildRow.state == "succeeded", BuildRow.artifact.is_not(None))
            .order_by(BuildRow.number.desc()).limit(1)).first()
        if row is None:
            raise ConflictError(f"component '{where}' has no succeeded build to deploy; build it first: "
                                f"cellplane build {component.name}", code="no-build")
        return row
    row = s.get(BuildRow, build_id)
    if row is None or row.organization != org:
        raise NotFoundError(f"build '{build_id}' not found in organization '{org}'",
                            [FieldProblem("build", "not found")])
    if (row.project, row.component) != (component.project, component.name):
        raise InvalidError(f"build {row.id} is a build of '{row.project}/{row.component}', not of '{where}'",
                           [FieldProblem("build", "a build of another component")])
    if row.state != "succeeded" or not row.artifact:
        raise InvalidError(f"build {row.id} (#{row.number}) is {row.state}; only a succeeded build can be deployed",
                           [FieldProblem("build", f"build is {row.state}")])
    return row


def deploy(s: Session, component: ResourceRow, env: str, build_id: str | None,
           actor: str) -> tuple[DeploymentRow, BuildRow, str]:
    """Deploy a build (the latest succeeded one by default). Returns the deployment, the build, and what happened:
    created, updated (another build) or unchanged (the same build again changes nothing)."""
    org = component.organization
    env_row = environment(s, org, env)
    plane = (env_row.spec or {}).get("dataPlane")
    if not plane:
        raise ConflictError(f"environment '{env}' has no data plane: start one with `cellplane dataplane run`",
                            code="no-dataplane")
    build = _build_for(s, org, component, build_id)
    assert build.artifact is not None
    row = find(s, org, component.project, component.name, env)
    if row is None:
        t = now()
        row = DeploymentRow(id=new_id(), organization=org, project=component.project, component=component.name,
                            environment=env, build_id=build.id, artifact=build.artifact, requested_by=actor,
                            created_at=t, updated_at=t, status={}, observed_at=None)
        s.add(row)
        s.flush()
        return row, build, "created"
    if (row.build_id, row.artifact) == (build.id, build.artifact):
        return row, build, "unchanged"
    row.build_id, row.artifact, row.requested_by, row.updated_at = build.id, build.artifact, actor, now()
    s.flush()
    return row, build, "updated"


def undeploy(s: Session, row: DeploymentRow) -> str:
    workloads.cancel_queued(s, row.id, "the deployment was removed before the run started")
    s.delete(row)
    s.flush()
    return f"deployment/{row.component}@{row.environment}"


def list_rows(s: Session, org: str, project: str | None = None, component: str | None = None,
              env: str | None = None) -> list[DeploymentRow]:
    q = select(DeploymentRow).where(DeploymentRow.organization == org)
    if project is not None:
        q = q.where(DeploymentRow.project == project)
    if component is not None:
        q = q.where(DeploymentRow.component == component)
    if env is not None:
        q = q.where(DeploymentRow.environment == env)
    return list(s.scalars(q.order_by(DeploymentRow.project, DeploymentRow.component, DeploymentRow.environment)))


# -- views ----------------------------------------------------------------------------------------------------------


def route_url(base: str | None, project: str, component: str, base_path: str) -> str | None:
    if not base:
        return None
    return base.rstrip("/") + route_prefix(project, component, VERSION, base_path)


def endpoint_urls(gateways: dict[str, Any], project: str, component: str, endpoint: dict[str, Any]) -> dict[str, Any]:
    visibility = endpoint.get("visibility") or ["Project"]
    base_path = endpoint.get("basePath") or "/"
    cells = gateways.get("cells") if isinstance(gateways.get("cells"), dict) else {}
    return {
        "external": route_url(gateways.get("external"), project, component, base_path)
        if "Public" in visibility else None,
        "internal": route_url(gateways.get("internal"), project, component, base_path)
        if {"Organization", "Public"} & set(visibility) else None,
        "project": route_url(cells.get(project), project, component, base_path),
    }


class Viewer:
    """Views of deployments, sharing lookups (environments, data planes, components) between them."""

    def __init__(self, s: Session, keyring: KeyRing, org: str) -> None:
        self.s = s
        self.keyring = keyring
        self.org = org
        self.lookup = Lookup(s, org)
        self._envs: dict[str, ResourceRow | None] = {}
        self._planes: dict[str, ResourceRow | None] = {}
        self._builds: dict[str, BuildRow | None] = {}
        self.at = now()

    def env(self, name: str) -> ResourceRow | None:
        if name not in self._envs:
            self._envs[name] = store.find(self.s, store.Place(KINDS["Environment"], self.org), name)
        return self._envs[name]

    def plane(self, name: str) -> ResourceRow | None:
        if name not in self._planes:
            self._planes[name] = dataplanes.find(self.s, self.org, name)
        return self._planes[name]

    def build(self, build_id: str) -> BuildRow | None:
        if build_id not in self._builds:
            self._builds[build_id] = self.s.get(BuildRow, build_id)
        return self._builds[build_id]

    def view(self, dep: DeploymentRow) -> dict[str, Any]:
        component = self.lookup.component(dep.project, dep.component)
        if component is None:  # deleted in this transaction
            raise NotFoundError(f"component '{dep.project}/{dep.component}' not found")
        env_row = self.env(dep.environment)
        plane_name = ((env_row.spec if env_row is not None else None) or {}).get("dataPlane")
        plane = self.plane(plane_name) if plane_name else None
        p = desired.plan(self.s, self.keyring, self.lookup, dep, component, credentials=False,
                         registered=dataplanes.public_key(plane) is not None)
        observed = dep.status or {}
        observed_release = observed.get("release")
        state, message = self._state(plane_name, plane, p, observed)
        gateways = dataplanes.gateways(plane, dep.environment)
        build = self.build(dep.build_id)
        return {
            "id": dep.id, "organization": dep.organization, "project": dep.project, "component": dep.component,
            "environment": dep.environment, "dataPlane": plane_name, "type": p.document["type"],
            "build": {"id": dep.build_id, "number": build.number if build is not None else None},
            "artifact": dep.artifact, "release": p.release, "requestedBy": dep.requested_by,
            "createdAt": dep.created_at.isoformat(), "updatedAt": dep.updated_at.isoformat(),
            "state": state, "message": message,
            "observedRelease": observed_release if isinstance(observed_release, str) else None,
            "observedAt": dep.observed_at.isoformat() if dep.observed_at else None,
            "replicas": list(observed.get("replicas") or []),
            "endpoints": [{"name": e["name"], "type": e["type"], "visibility": e["visibility"],
                           "basePath": e["basePath"],
                           "urls": endpoint_urls(gateways, dep.project, dep.component, e)}
                          for e in p.document["endpoints"]],
            "connections": [{"name": c.name, "state": "resolved" if c.resolved else "unresolved", "via": c.via,
                             "reason": c.reason} for c in p.connections],
        }

    def _state(self, plane_name: str | None, plane: ResourceRow | None, p: desired.Plan,
               observed: dict[str, Any]) -> tuple[str, str]:
        if not plane_name or plane is None:
            return "pending", f"environment '{p.deployment.environment}' has no data plane"
        since = dataplanes.unreachable_since(plane, self.at)
        if since is not None:
            return "unreachable", f"data plane {plane_name} has not reported since {_when(since)}"
        if observed.get("release") != p.release:
            if p.blocked:
                return "blocked", p.blocked
            if not observed:
                return "progressing", f"waiting for data plane {plane_name}"
            return "progressing", f"data plane {plane_name} is rolling out release {p.release}"
        return str(observed.get("state") or "pending"), str(observed.get("message") or "")


def _when(t: datetime) -> str:
    return t.replace(microsecond=0).isoformat()


def endpoint_items(view: dict[str, Any]) -> list[dict[str, Any]]:
    """A deployment's endpoints as the organization's endpoint list shows them."""
    return [{"environment": view["environment"], "project": view["project"], "component": view["component"],
             "endpoint": e["name"], "type": e["type"], "visibility": e["visibility"], "basePath": e["basePath"],
             "state": view["state"], "urls": e["urls"]} for e in view["endpoints"]]
