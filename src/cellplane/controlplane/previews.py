"""Preview environments: a project's components built from one branch and deployed into an environment of their own.

Creating one makes an Environment (on the data plane of the pipeline's first environment, never requiring
approval), and queues a build of that branch for every component with a repository; each build deploys itself
there when it succeeds (``BuildRow.deploy_to``). Deleting one removes everything it made: deployments (the data
plane stops them), releases, approval requests, configuration values and role bindings of the environment, the
builds (a running one is cancelled), and the environment itself. What other tables hold for the environment is
forgotten by ``cascade.delete_preview``, which calls ``remove`` here for the rest.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cellplane.controlplane import builds, pipelines, resources
from cellplane.errors import ConflictError, FieldProblem, NotFoundError
from cellplane.model import KINDS
from cellplane.store.tables import BuildLogRow, BuildRow, DeploymentRow, PreviewRow, ResourceRow, now

LABEL = "cellplane.dev/preview"
ACTIVE = ("queued", "running")


def environment_name(project: str, branch: str) -> str:
    """A DNS label for the branch's preview environment: readable, and unique through a digest suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{project}-{branch}".lower()).strip("-")
    suffix = hashlib.sha256(f"{project}\0{branch}".encode()).hexdigest()[:6]
    return f"pv-{slug[:63 - 4 - 7].strip('-')}-{suffix}"


def find(s: Session, org: str, project: str, branch: str) -> PreviewRow | None:
    return s.scalar(select(PreviewRow).where(PreviewRow.organization == org, PreviewRow.project == project,
                                             PreviewRow.branch == branch))


def get(s: Session, org: str, project: str, branch: str) -> PreviewRow:
    row = find(s, org, project, branch)
    if row is None:
        raise NotFoundError(f"project '{project}' has no preview environment for branch '{branch}'",
                            [FieldProblem("branch", "no preview for this branch")])
    return row


def list_rows(s: Session, org: str, project: str) -> list[PreviewRow]:
    return list(s.scalars(select(PreviewRow).where(PreviewRow.organization == org, PreviewRow.project == project)
                          .order_by(PreviewRow.created_at)))


def components(s: Session, org: str, project: str) -> list[ResourceRow]:
    return list(s.scalars(select(ResourceRow).where(
        ResourceRow.kind == "Component", ResourceRow.organization == org, ResourceRow.project == project)
        .order_by(ResourceRow.name)))


def skipped(component: ResourceRow) -> str | None:
    """Why a component is not part of previews (None when it is)."""
    if not ((component.spec or {}).get("source") or {}).get("repository"):
        return "it has no source.repository to build a branch of (its sources are uploaded)"
    return None


def create(s: Session, org: str, project: str, branch: str, actor: str) -> PreviewRow:
    builds.check_track(branch, "branch")
    resources.get(s, resources.Scope(KINDS["Project"], org), project)
    if find(s, org, project, branch) is not None:
        raise ConflictError(f"project '{project}' has a preview environment for branch '{branch}' already",
                            [FieldProblem("branch", "already previewed")], code="already-exists")
    pipeline = pipelines.of_project(s, org, project)
    first = pipelines.first_environment(pipeline)
    first_row = resources.find(s, resources.Scope(KINDS["Environment"], org), first) if first else None
    plane = ((first_row.spec if first_row is not None else None) or {}).get("dataPlane")
    if not plane:
        raise ConflictError(f"the first environment of pipeline '{pipeline.name}' ({first or 'none'}) has no data "
                            "plane for the preview to run on", code="no-dataplane")
    name = environment_name(project, branch)
    environments = resources.Scope(KINDS["Environment"], org)
    if resources.find(s, environments, name) is not None:
        raise ConflictError(f"environment '{name}' exists already", code="already-exists")
    s.add(ResourceRow(uid=str(uuid.uuid4()), kind="Environment", organization=org, project="", name=name,
                      labels={LABEL: "true"}, annotations={"cellplane.dev/preview-of": f"{project}@{branch}"[:250]},
                      spec={"displayName": f"preview of {project} at {branch}"[:200],
                            "description": f"Preview environment of project {project}, branch {branch}"[:2000],
                            "dataPlane": plane, "production": False, "requiresApproval": False},
                      status={}, generation=1))
    row = PreviewRow(organization=org, project=project, branch=branch, environment=name, created_by=actor,
                     created_at=now())
    s.add(row)
    s.flush()
    for component in components(s, org, project):
        if skipped(component) is None:
            build = builds.create(s, component, actor=actor, trigger="preview", track=branch)
            build.deploy_to = name
    s.flush()
    return row


def deployments_of(s: Session, row: PreviewRow) -> list[str]:
    """The deployments in the preview's environment, as a deletion lists them."""
    return [f"deployment/{d}@{row.environment}" for d in s.scalars(select(DeploymentRow.component).where(
        DeploymentRow.organization == row.organization, DeploymentRow.environment == row.environment))]


def remove(s: Session, row: PreviewRow) -> list[str]:
    """Delete what the preview made (its builds: a running one is cancelled; its environment) and the preview
    itself; returns what was deleted. The rows other tables hold for its environment are ``cascade``'s business."""
    org, env = row.organization, row.environment
    deleted: list[str] = []
    for build in s.scalars(select(BuildRow).where(BuildRow.organization == org, BuildRow.deploy_to == env)).all():
        if build.state in ACTIVE:  # its worker stops it; it no longer deploys anywhere
            build.deploy_to = None
            builds.cancel(s, build)
            deleted.append(f"build/{build.id} (cancelled)")
            continue
        s.execute(delete(BuildLogRow).where(BuildLogRow.build_id == build.id))
        s.delete(build)
        deleted.append(f"build/{build.id}")
    env_row = resources.find(s, resources.Scope(KINDS["Environment"], org), env)
    if env_row is not None:
        s.delete(env_row)
        deleted.append(f"environment/{env}")
    s.delete(row)
    s.flush()
    return deleted


def view(s: Session, row: PreviewRow, deployment_views: list[dict[str, Any]]) -> dict[str, Any]:
    made = {b.component: b for b in s.scalars(select(BuildRow).where(
        BuildRow.organization == row.organization, BuildRow.deploy_to == row.environment)
        .order_by(BuildRow.number))}
    items: list[dict[str, Any]] = []
    for component in components(s, row.organization, row.project):
        build = made.get(component.name)
        if build is not None:
            items.append({"component": component.name, "id": build.id, "number": build.number, "state": build.state,
                          "error": build.error or None})
        else:
            why = skipped(component) or "added after the preview was created"
            items.append({"component": component.name, "skipped": why})
    return {"organization": row.organization, "project": row.project, "branch": row.branch,
            "environment": row.environment, "createdBy": row.created_by, "createdAt": row.created_at.isoformat(),
            "builds": items, "deployments": deployment_views}
