"""Deployments: which release of a component's track runs in which environment, and how it is doing there.

Deploying, promoting and rolling back make a release the one a deployment runs (``activate``), or, into an
environment that requires approval, an approval request (``approvals``). The environment's data plane picks the
release up from its desired state (``desired``). What a deployment shows (``Viewer.view``) combines what should
run with what the data plane last reported.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from cellplane.contract.desired import DesiredEndpoint
from cellplane.contract.urlscheme import route_prefix
from cellplane.controlplane import approvals, dataplanes, desired, pipelines, releases, resources, taskruns, tracks
from cellplane.controlplane.connections import Lookup
from cellplane.controlplane.keyring import KeyRing
from cellplane.errors import ConflictError, FieldProblem, InvalidError, NotFoundError
from cellplane.model import KINDS
from cellplane.store import in_chunks
from cellplane.store.tables import ApprovalRow, BuildRow, DeploymentRow, ReleaseRow, ResourceRow, now


def new_id() -> str:
    return "dep_" + secrets.token_hex(6)


def environment(s: Session, org: str, name: str, field_path: str = "environment") -> ResourceRow:
    row = resources.find(s, resources.Scope(KINDS["Environment"], org), name)
    if row is None:
        raise NotFoundError(f"environment '{name}' not found in organization '{org}'",
                            [FieldProblem(field_path, "no such environment")])
    return row


def find(s: Session, org: str, project: str, component: str, env: str,
         track: str | None = None) -> DeploymentRow | None:
    """The deployment of the track in the environment; without a track, the only one there (None when there is
    none; refused when there are several)."""
    q = select(DeploymentRow).where(
        DeploymentRow.organization == org, DeploymentRow.project == project, DeploymentRow.component == component,
        DeploymentRow.environment == env)
    if track is not None:
        return s.scalar(q.where(DeploymentRow.track == track))
    rows = list(s.scalars(q.order_by(DeploymentRow.track)))
    if len(rows) > 1:
        raise InvalidError(f"component '{project}/{component}' has {len(rows)} tracks deployed in '{env}' "
                           f"({', '.join(r.track for r in rows)}): say which (track)",
                           [FieldProblem("track", "several tracks are deployed there")])
    return rows[0] if rows else None


def get(s: Session, org: str, project: str, component: str, env: str, track: str | None = None) -> DeploymentRow:
    row = find(s, org, project, component, env, track)
    if row is None:
        what = f"track '{track}' of component" if track else "component"
        raise NotFoundError(f"{what} '{project}/{component}' is not deployed in environment '{env}'",
                            [FieldProblem("path.environment", "not deployed there")])
    return row


def _build_for(s: Session, org: str, component: ResourceRow, build_id: str | None, track: str | None) -> BuildRow:
    where = f"{component.project}/{component.name}"
    if build_id is None:
        q = select(BuildRow).where(
            BuildRow.organization == org, BuildRow.project == component.project,
            BuildRow.component == component.name, BuildRow.state == "succeeded", BuildRow.artifact.is_not(None))
        if track is not None:
            q = q.where(BuildRow.track == track)
        row = s.scalars(q.order_by(BuildRow.number.desc()).limit(1)).first()
        if row is None:
            of_track = f" of track '{track}'" if track else ""
            raise ConflictError(f"component '{where}' has no succeeded build{of_track} to deploy; build it first: "
                                f"cellplane build {component.name}" + (f" --track {track}" if track else ""),
                                code="no-build")
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
    if track is not None and row.track != track:
        raise InvalidError(f"build {row.id} (#{row.number}) is a build of track '{row.track}', not '{track}'",
                           [FieldProblem("track", f"the build is of track '{row.track}'")])
    return row


@dataclass
class Outcome:
    """What a deploy, promotion, rollback or approval did: created, updated or unchanged (the deployment runs
    ``release``), or pending (``approval`` waits for a decision)."""

    action: str
    release: ReleaseRow
    deployment: DeploymentRow | None = None
    approval: ApprovalRow | None = None


def slot(component: ResourceRow, env: str, track: str) -> releases.Slot:
    return releases.Slot(component.organization, component.project, component.name, env, track)


def _runnable(env_row: ResourceRow) -> None:
    if not (env_row.spec or {}).get("dataPlane"):
        raise ConflictError(f"environment '{env_row.name}' has no data plane: start one with `cellplane dataplane run`",
                            code="no-dataplane")


def activate(s: Session, where: releases.Slot, release: ReleaseRow, action: str, actor: str,
             note: str = "") -> Outcome:
    """Make ``release`` the one the deployment of ``where`` runs (creating the deployment)."""
    row = find(s, where.organization, where.project, where.component, where.environment, where.track)
    t = now()
    if row is None:
        row = DeploymentRow(id=new_id(), organization=where.organization, project=where.project,
                            component=where.component, environment=where.environment, track=where.track,
                            release_id=release.id, build_id=release.build_id, artifact=release.artifact,
                            requested_by=actor, created_at=t, updated_at=t, status={}, observed_at=None)
        s.add(row)
        s.flush()
        releases.record(s, where, release, action, actor, note)
        return Outcome("created", release, row)
    if row.release_id == release.id:
        return Outcome("unchanged", release, row)
    row.release_id, row.build_id, row.artifact = release.id, release.build_id, release.artifact
    row.requested_by, row.updated_at = actor, t
    s.flush()
    releases.record(s, where, release, action, actor, note)
    return Outcome("updated", release, row)


def _gated(s: Session, where: releases.Slot, release: ReleaseRow, needs_approval: bool, action: str,
           source: str | None, actor: str, note: str = "") -> Outcome:
    current = find(s, where.organization, where.project, where.component, where.environment, where.track)
    if current is not None and current.release_id == release.id:
        return Outcome("unchanged", release, current)
    if needs_approval:
        approval = approvals.request(s, where, release, action, source, actor)
        return Outcome("pending", release, current, approval)
    return activate(s, where, release, action, actor, note)


def deploy(s: Session, keyring: KeyRing, component: ResourceRow, env: str, build_id: str | None, actor: str,
           track: str | None = None, action: str = "deploy") -> Outcome:
    """Deploy a build (the track's latest succeeded one by default) with the component's current spec and the
    environment's configuration. Into an environment that requires approval, this asks for it."""
    org = component.organization
    env_row = environment(s, org, env)
    _runnable(env_row)
    build = _build_for(s, org, component, build_id, track)
    assert build.artifact is not None
    where = slot(component, env, build.track)
    release = releases.make(s, keyring, where, build_id=build.id, artifact=build.artifact,
                            spec=dict(component.spec or {}), origin=f"{action} of build #{build.number}",
                            actor=actor)
    return _gated(s, where, release, pipelines.requires_approval(env_row), action, None, actor,
                  f"build #{build.number}")


def promote(s: Session, keyring: KeyRing, component: ResourceRow, source: str, target: str, actor: str,
            track: str | None = None) -> Outcome:
    """Promote what runs in ``source`` to ``target``, along a promotion path of the project's pipeline: the same
    artifact and spec, with ``target``'s configuration."""
    org = component.organization
    environment(s, org, source, "from")
    env_row = environment(s, org, target, "to")
    pipeline = pipelines.of_project(s, org, component.project)
    path_target = pipelines.promotion_target(pipeline, source, target)
    _runnable(env_row)
    dep = find(s, org, component.project, component.name, source, track)
    if dep is None or dep.release_id is None:
        what = f"track '{track}' of " if track else ""
        raise ConflictError(f"{what}component '{component.project}/{component.name}' is not deployed in '{source}': "
                            "nothing to promote", code="not-deployed")
    from_release = releases.get(s, org, dep.release_id)
    where = slot(component, target, dep.track)
    release = releases.make(s, keyring, where, build_id=from_release.build_id, artifact=from_release.artifact,
                            spec=dict(from_release.spec or {}),
                            origin=f"promoted from {source} (release {from_release.id})", actor=actor)
    needs = pipelines.requires_approval(env_row, path_target)
    return _gated(s, where, release, needs, "promote", source, actor, f"from {source} ({from_release.id})")


def rollback(s: Session, component: ResourceRow, env: str, actor: str, track: str | None = None,
             to: str | None = None) -> Outcome:
    """Run an earlier release again: the one before the current one, or ``to`` (a release that ran there).
    Its artifact and its configuration both come back. It ran there before, so no new approval is asked."""
    org = component.organization
    env_row = environment(s, org, env)
    _runnable(env_row)
    dep = get(s, org, component.project, component.name, env, track)
    where = slot(component, env, dep.track)
    if to is None:
        target = releases.previous(s, where, dep.release_id)
        if target is None:
            raise ConflictError(f"{where.describe()} has no earlier release to roll back to", code="no-previous")
    else:
        target = to
        release = releases.get(s, org, to, "to")
        if (release.project, release.component) != (component.project, component.name):
            raise InvalidError(f"release {to} is a release of '{release.project}/{release.component}'",
                               [FieldProblem("to", "a release of another component")])
        if not releases.ran_in(s, where, to):
            raise InvalidError(f"release {to} never ran in {where.describe()}; roll back only to a release that "
                               "did (see cellplane releases)", [FieldProblem("to", f"never ran in '{env}'")])
    release = releases.get(s, org, target, "to")
    if release.id == dep.release_id:
        return Outcome("unchanged", release, dep)
    return activate(s, where, release, "rollback", actor, f"from {dep.release_id}")


def approve(s: Session, approval: ApprovalRow, actor: str) -> Outcome:
    approvals.decide(approval, actor, "approved")
    env_row = environment(s, approval.organization, approval.environment)
    _runnable(env_row)
    if approval.source_environment:  # the promotion path must still exist
        pipelines.promotion_target(pipelines.of_project(s, approval.organization, approval.project),
                         approval.source_environment, approval.environment)
    release = releases.get(s, approval.organization, approval.release_id)
    return activate(s, approvals.slot_of(approval), release, approval.action, approval.requested_by,
                    f"approved by {actor}" + (f", from {approval.source_environment}"
                                              if approval.source_environment else ""))


def refresh(s: Session, keyring: KeyRing, component: ResourceRow, actor: str, reason: str,
            env: str | None = None) -> list[Outcome]:
    """After the component's spec or configuration changed: a new release of what runs, in every environment
    (or ``env``) that does not require approval. Where approval is required, the change waits for the next
    approved deploy or promotion."""
    out: list[Outcome] = []
    for dep in list_rows(s, component.organization, component.project, component.name, env or None):
        env_row = resources.find(s, resources.Scope(KINDS["Environment"], component.organization), dep.environment)
        if env_row is None or pipelines.requires_approval(env_row) or dep.release_id is None:
            continue
        current = releases.get(s, component.organization, dep.release_id)
        where = slot(component, dep.environment, dep.track)
        release = releases.make(s, keyring, where, build_id=current.build_id, artifact=current.artifact,
                                spec=dict(component.spec or {}), origin=reason, actor=actor)
        if release.id != dep.release_id:
            out.append(activate(s, where, release, "update", actor, reason))
    return out


def after_build(s: Session, keyring: KeyRing, build: BuildRow) -> list[str]:
    """A succeeded build deploys itself: to its preview environment, or, when its track has auto-deploy on, to
    the first environment of the project's pipeline. Returns what happened, for the build's log."""
    component = resources.find(s, resources.Scope(KINDS["Component"], build.organization, build.project),
                               build.component)
    if component is None or build.state != "succeeded":
        return []
    env = build.deploy_to
    if env is None:
        if build.trigger == "preview":  # its preview was deleted while it built
            return []
        if not tracks.track(component.spec or {}, build.track)["autoDeploy"]:
            return []
        env = pipelines.first_environment(pipelines.of_project(s, build.organization, build.project))
        if env is None:
            return [f"auto-deploy: the project's pipeline has no first environment to deploy track {build.track} to"]
    outcome = deploy(s, keyring, component, env, build.id, build.requested_by or "system", build.track,
                     action="auto-deploy" if build.deploy_to is None else "preview")
    if outcome.action == "pending":
        assert outcome.approval is not None
        return [f"auto-deploy to {env}: release {outcome.release.id} waits for approval ({outcome.approval.id})"]
    return [f"auto-deploy to {env}: release {outcome.release.id} ({outcome.action})"]


def undeploy(s: Session, row: DeploymentRow, actor: str) -> str:
    taskruns.cancel_queued(s, row.id, "the deployment was removed before the run started")
    approvals.supersede(s, releases.Slot(row.organization, row.project, row.component, row.environment, row.track),
                        f"the deployment was removed by {actor}")
    s.delete(row)
    s.flush()
    track = "" if row.track == "default" else f"[{row.track}]"
    return f"deployment/{row.component}{track}@{row.environment}"


_LISTS: dict[tuple[bool, bool, bool], Any] = {}  # list_rows' statements, built once per combination of filters


def list_rows(s: Session, org: str, project: str | None = None, component: str | None = None,
              env: str | None = None) -> list[DeploymentRow]:
    shape = (project is not None, component is not None, env is not None)
    q = _LISTS.get(shape)
    if q is None:
        q = select(DeploymentRow).where(DeploymentRow.organization == bindparam("org"))
        for given, column, name in zip(shape, (DeploymentRow.project, DeploymentRow.component,
                                               DeploymentRow.environment), ("project", "component", "env"),
                                       strict=True):
            if given:
                q = q.where(column == bindparam(name))
        q = _LISTS[shape] = q.order_by(DeploymentRow.project, DeploymentRow.component, DeploymentRow.environment,
                                       DeploymentRow.track)
    params = {"org": org, "project": project, "component": component, "env": env}
    return list(s.scalars(q, {k: v for k, v in params.items() if v is not None}))


# -- views ----------------------------------------------------------------------------------------------------------


def route_url(base: str | None, project: str, component: str, version: str, base_path: str) -> str | None:
    if not base:
        return None
    return base.rstrip("/") + route_prefix(project, component, version, base_path)


def endpoint_urls(gateways: dict[str, Any], project: str, component: str, version: str,
                  endpoint: DesiredEndpoint) -> dict[str, Any]:
    visibility = endpoint.visibility or ["Project"]
    base_path = endpoint.basePath or "/"
    given = gateways.get("cells")
    cells: dict[str, Any] = given if isinstance(given, dict) else {}
    return {
        "external": route_url(gateways.get("external"), project, component, version, base_path)
        if "Public" in visibility else None,
        "internal": route_url(gateways.get("internal"), project, component, version, base_path)
        if {"Organization", "Public"} & set(visibility) else None,
        "project": route_url(cells.get(project), project, component, version, base_path),
    }


# What Viewer.prefetch reads, built once (see resources._FIND).
_ENVIRONMENTS = select(ResourceRow).where(
    ResourceRow.kind == "Environment", ResourceRow.organization == bindparam("org"),
    ResourceRow.name.in_(bindparam("names", expanding=True)))
_RELEASES = select(ReleaseRow).where(ReleaseRow.id.in_(bindparam("ids", expanding=True)))
_BUILD_NUMBERS = select(BuildRow.id, BuildRow.number).where(BuildRow.id.in_(bindparam("ids", expanding=True)))
_SHARED = (select(DeploymentRow.environment, DeploymentRow.project, DeploymentRow.component)
           .where(DeploymentRow.organization == bindparam("org"),
                  DeploymentRow.project.in_(bindparam("projects", expanding=True)))
           .group_by(DeploymentRow.environment, DeploymentRow.project, DeploymentRow.component)
           .having(func.count() > 1))


class Viewer:
    """Views of deployments, sharing lookups (environments, data planes, components) between them."""

    def __init__(self, s: Session, keyring: KeyRing, org: str) -> None:
        self.s = s
        self.keyring = keyring
        self.org = org
        self.lookup = Lookup(s, org)
        self._envs: dict[str, ResourceRow | None] = {}
        self._planes: dict[str, ResourceRow | None] = {}
        self._builds: dict[str, int | None] = {}  # build id -> its number
        self._releases: dict[str, ReleaseRow] = {}
        self._superseded: dict[tuple[str, str, str], dict[str, DeploymentRow]] = {}
        self.at = now()

    def views(self, rows: list[DeploymentRow]) -> list[dict[str, Any]]:
        """The views of many deployments, their components, releases and builds read in a few queries."""
        self.prefetch(rows)
        return [self.view(r) for r in rows]

    def prefetch(self, rows: list[DeploymentRow]) -> None:
        if not rows:
            return
        self.lookup.prefetch({(r.project, r.component) for r in rows})
        envs = sorted({r.environment for r in rows} - set(self._envs))
        found = {e.name: e for e in self.s.scalars(_ENVIRONMENTS, {"org": self.org, "names": envs})}
        self._envs.update({name: found.get(name) for name in envs})
        release_ids = sorted({r.release_id for r in rows if r.release_id is not None} - set(self._releases))
        for chunk in in_chunks(release_ids):
            self._releases.update((r.id, r) for r in self.s.scalars(_RELEASES, {"ids": chunk}))
        build_ids = sorted({r.build_id for r in rows} - set(self._builds))
        for chunk in in_chunks(build_ids):
            numbers = {i: n for i, n in self.s.execute(_BUILD_NUMBERS, {"ids": chunk})}
            self._builds.update({i: numbers.get(i) for i in chunk})
        # Deployments that share environment, project and component with another (tracks) may be superseded; the
        # others, nearly all, are not.
        keys = {(r.environment, r.project, r.component) for r in rows} - set(self._superseded)
        projects = sorted({project for _, project, _ in keys})
        shared = {tuple(k) for k in self.s.execute(_SHARED, {"org": self.org, "projects": projects})}
        self._superseded.update({k: {} for k in keys if k not in shared})

    def superseded_by(self, dep: DeploymentRow) -> DeploymentRow | None:
        key = (dep.environment, dep.project, dep.component)
        if key not in self._superseded:
            siblings = list_rows(self.s, self.org, dep.project, dep.component, dep.environment)
            self._superseded[key] = desired.superseded(self.lookup, siblings) if len(siblings) > 1 else {}
        return self._superseded[key].get(dep.id)

    def env(self, name: str) -> ResourceRow | None:
        if name not in self._envs:
            self._envs[name] = resources.find(self.s, resources.Scope(KINDS["Environment"], self.org), name)
        return self._envs[name]

    def plane(self, name: str) -> ResourceRow | None:
        if name not in self._planes:
            self._planes[name] = dataplanes.find(self.s, self.org, name)
        return self._planes[name]

    def build_number(self, build_id: str) -> int | None:
        if build_id not in self._builds:
            self._builds[build_id] = self.s.scalar(select(BuildRow.number).where(BuildRow.id == build_id))
        return self._builds[build_id]

    def view(self, dep: DeploymentRow) -> dict[str, Any]:
        component = self.lookup.component(dep.project, dep.component)
        if component is None:  # deleted in this transaction
            raise NotFoundError(f"component '{dep.project}/{dep.component}' not found")
        env_row = self.env(dep.environment)
        plane_name = ((env_row.spec if env_row is not None else None) or {}).get("dataPlane")
        plane = self.plane(plane_name) if plane_name else None
        p = desired.plan(self.s, self.keyring, self.lookup, dep, component, credentials=False,
                         registered=dataplanes.public_key(plane) is not None,
                         production=bool(((env_row.spec if env_row is not None else None) or {}).get("production")),
                         release=self._releases.get(dep.release_id) if dep.release_id is not None else None)
        observed = dep.status or {}
        observed_release = observed.get("release")
        winner = self.superseded_by(dep)
        if winner is not None:
            winning = tracks.version(component.spec or {}, winner.track)
            state, message = "superseded", (f"track {winner.track} (version {winning}) serves "
                                            f"{p.document.version} in {dep.environment}")
        else:
            state, message = self._state(plane_name, plane, p, observed)
        gateways = dataplanes.gateways(plane, dep.environment)
        build_number = self.build_number(dep.build_id)
        return {
            "id": dep.id, "organization": dep.organization, "project": dep.project, "component": dep.component,
            "environment": dep.environment, "track": dep.track, "version": p.version, "dataPlane": plane_name,
            "type": p.document.type,
            "build": {"id": dep.build_id, "number": build_number},
            "artifact": dep.artifact, "release": p.release_id, "rollout": p.release, "requestedBy": dep.requested_by,
            "createdAt": dep.created_at.isoformat(), "updatedAt": dep.updated_at.isoformat(),
            "state": state, "message": message,
            "observedRelease": observed_release if isinstance(observed_release, str) else None,
            "observedAt": dep.observed_at.isoformat() if dep.observed_at else None,
            "replicas": list(observed.get("replicas") or []),
            "scaling": p.document.scaling.model_dump(mode="json", exclude_none=True)
            if p.document.scaling is not None else None,
            "scalingStatus": observed.get("scaling") if observed.get("release") == p.release else None,
            "endpoints": [{"name": e.name, "type": e.type, "visibility": e.visibility, "basePath": e.basePath,
                           "urls": endpoint_urls(gateways, dep.project, dep.component, p.document.version, e)}
                          for e in p.document.endpoints],
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
            return "progressing", f"data plane {plane_name} is rolling out release {p.release_id}"
        return str(observed.get("state") or "pending"), str(observed.get("message") or "")


def _when(t: datetime) -> str:
    return t.replace(microsecond=0).isoformat()


def endpoint_items(view: dict[str, Any]) -> list[dict[str, Any]]:
    """A deployment's endpoints as the organization's endpoint list shows them."""
    return [{"environment": view["environment"], "project": view["project"], "component": view["component"],
             "track": view["track"], "version": view["version"], "endpoint": e["name"], "type": e["type"],
             "visibility": e["visibility"], "basePath": e["basePath"],
             "state": view["state"], "urls": e["urls"]} for e in view["endpoints"]]
