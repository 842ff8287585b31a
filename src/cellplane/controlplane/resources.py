"""Stored resources: apply, read, list and delete documents of every kind, inside one session.

Callers own the transaction: ``apply`` of ten documents happens in one session, so a problem in
the tenth rolls back the first nine.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from cellplane import API_VERSION
from cellplane.controlplane import approvals, builds, releases, workloads
from cellplane.controlplane import config as config_service
from cellplane.controlplane.keyring import KeyRing
from cellplane.controlplane.telemetry import alerts
from cellplane.errors import ConflictError, FieldProblem, InvalidError, NotFoundError
from cellplane.model import KINDS, Document, KindInfo, dns_label_problem, parse_document
from cellplane.store.tables import (
    BuildRow,
    ConfigValueRow,
    DeploymentRow,
    PreviewRow,
    ResourceRow,
    RoleBindingRow,
    now,
)

DEFAULT_ENVIRONMENTS = (("development", False), ("staging", False), ("production", True))


@dataclass
class ApplyResult:
    kind: str
    name: str
    organization: str
    project: str
    action: str  # created | configured | unchanged
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "organization": self.organization or None,
                "project": self.project or None, "action": self.action, "warnings": self.warnings}


@dataclass(frozen=True)
class Place:
    """Where a resource lives: its kind and scope columns."""

    info: KindInfo
    organization: str = ""
    project: str = ""

    def describe(self, name: str) -> str:
        where = "/".join(p for p in (self.organization, self.project, name) if p)
        return f"{self.info.kind} '{where}'"


def place_of(doc: Document, default_org: str | None, default_project: str | None) -> Place:
    info = doc.info
    org = "" if info.scope == "cluster" else (doc.metadata.organization or default_org or "")
    project = (doc.metadata.project or default_project or "") if info.scope == "project" else ""
    problems = []
    if info.scope != "cluster" and not org:
        problems.append(FieldProblem("metadata.organization", "required (or give --org)"))
    if info.scope == "project" and not project:
        problems.append(FieldProblem("metadata.project", "required (or give --project)"))
    if problems:
        raise InvalidError(f"{info.kind} '{doc.name}' has no owner", problems)
    return Place(info, org, project)


# The lookups every request makes, built once: building a statement and its cache key costs more than running it.
_IDENTITY = (ResourceRow.kind == bindparam("kind"), ResourceRow.organization == bindparam("org"),
             ResourceRow.project == bindparam("project"), ResourceRow.name == bindparam("name"))
_FIND = select(ResourceRow).where(*_IDENTITY)
_EXISTS = select(ResourceRow.id).where(*_IDENTITY).limit(1)
_OWNERS = select(func.count()).select_from(ResourceRow).where(or_(
    and_(ResourceRow.kind == "Organization", ResourceRow.organization == "", ResourceRow.project == "",
         ResourceRow.name == bindparam("org")),
    and_(ResourceRow.kind == "Project", ResourceRow.organization == bindparam("org"), ResourceRow.project == "",
         ResourceRow.name == bindparam("project"))))


def _where(place: Place, name: str) -> dict[str, str]:
    return {"kind": place.info.kind, "org": place.organization, "project": place.project, "name": name}


def find(s: Session, place: Place, name: str) -> ResourceRow | None:
    return s.scalar(_FIND, _where(place, name))


def exists(s: Session, place: Place, name: str) -> bool:
    """Whether the resource exists (its id alone is read: cheaper than ``find``)."""
    return s.scalar(_EXISTS, _where(place, name)) is not None


def get(s: Session, place: Place, name: str) -> ResourceRow:
    row = find(s, place, name)
    if row is None:
        raise NotFoundError(f"{place.describe(name)} not found")
    return row


def get_component(s: Session, organization: str, project: str, name: str) -> ResourceRow:
    """A component, after checking that its organization and project exist (404s name the missing one)."""
    place = Place(KINDS["Component"], organization, project)
    require_owner(s, place, field_path="path")
    row = find(s, place, name)
    if row is None:
        raise NotFoundError(f"{place.describe(name)} not found", [FieldProblem("path.component", "no such component")])
    return row


def require_owner(s: Session, place: Place, field_path: str = "metadata") -> None:
    """The organization (and project) a resource belongs to must exist."""
    if place.info.scope == "cluster":
        return
    if place.info.scope == "project" and s.scalar(_OWNERS, {"org": place.organization, "project": place.project}) == 2:
        return  # both exist: one query (which one is missing takes two)
    orgs = Place(KINDS["Organization"])
    if not exists(s, orgs, place.organization):
        raise NotFoundError(f"organization '{place.organization}' not found",
                            [FieldProblem(f"{field_path}.organization", "no such organization")])
    if place.info.scope == "project" and not exists(s, Place(KINDS["Project"], place.organization), place.project):
        raise NotFoundError(f"project '{place.organization}/{place.project}' not found",
                            [FieldProblem(f"{field_path}.project", "no such project")])


def _require_named(s: Session, kind: str, org: str, names: list[tuple[str, str]]) -> list[FieldProblem]:
    place = Place(KINDS[kind], org)
    return [FieldProblem(path, f"{kind} '{name}' does not exist in organization '{org}'")
            for path, name in names if not exists(s, place, name)]


def check_references(s: Session, doc: Document, place: Place) -> None:
    """References to other resources must resolve, each problem at its field path."""
    spec: Any = doc.spec
    org = place.organization
    problems: list[FieldProblem] = []
    if doc.kind == "Project":
        problems += _require_named(s, "DeploymentPipeline", org, [("spec.deploymentPipeline", spec.deploymentPipeline)])
    elif doc.kind == "Environment" and spec.dataPlane:
        problems += _require_named(s, "DataPlane", org, [("spec.dataPlane", spec.dataPlane)])
    elif doc.kind == "DeploymentPipeline":
        refs = []
        for i, path in enumerate(spec.promotionPaths):
            refs.append((f"spec.promotionPaths[{i}].source", path.source))
            refs += [(f"spec.promotionPaths[{i}].targets[{j}].name", t.name) for j, t in enumerate(path.targets)]
        problems += _require_named(s, "Environment", org, refs)
    elif doc.kind == "Component":
        refs = []
        for section in ("env", "files"):
            for i, item in enumerate(getattr(spec.configuration, section)):
                refs += [(f"spec.configuration.{section}[{i}].environments.{env}", env) for env in item.environments]
        problems += _require_named(s, "Environment", org, refs)
    if problems:
        raise InvalidError(f"{place.describe(doc.name)} refers to resources that do not exist", problems)


def apply(s: Session, doc: Document, place: Place, keyring: KeyRing, actor: str) -> list[ApplyResult]:
    """Create or update one document. Returns what changed (an Organization brings its defaults)."""
    require_owner(s, place)
    check_references(s, doc, place)
    spec = doc.spec_dict()
    secrets_changed = False
    if doc.kind == "Component":
        spec, secrets_changed = config_service.absorb_spec_secrets(
            s, keyring, place.organization, place.project, doc.name, spec, actor)
    meta = doc.metadata
    row = find(s, place, doc.name)
    result = ApplyResult(doc.kind, doc.name, place.organization, place.project, "unchanged", doc.warnings)
    if row is None:
        s.add(ResourceRow(uid=str(uuid.uuid4()), kind=doc.kind, organization=place.organization,
                          project=place.project, name=doc.name, labels=meta.labels, annotations=meta.annotations,
                          spec=spec, status={}, generation=1))
        s.flush()
        result.action = "created"
        results = [result]
        if doc.kind == "Organization":
            results += create_organization_defaults(s, doc.name)
        return results
    if (row.spec, row.labels, row.annotations) != (spec, meta.labels, meta.annotations) or secrets_changed:
        if row.spec != spec:
            row.generation += 1
        spec_changed = row.spec != spec
        row.spec, row.labels, row.annotations = spec, meta.labels, meta.annotations
        row.updated_at = now()
        result.action = "configured"
        if doc.kind == "Component" and (spec_changed or secrets_changed):
            s.flush()
            # deployments reads resources: imported here, where a changed component makes new releases
            from cellplane.controlplane import deployments

            deployments.refresh(s, keyring, row, actor, "spec changed" if spec_changed else "configuration changed")
    s.flush()
    return [result]


def create(s: Session, doc: Document, place: Place, keyring: KeyRing, actor: str) -> list[ApplyResult]:
    exists = ConflictError(f"{place.describe(doc.name)} already exists",
                           [FieldProblem("metadata.name", "already exists")], code="already-exists")
    if find(s, place, doc.name) is not None:
        raise exists
    results = apply(s, doc, place, keyring, actor)
    # Another transaction may have committed the same name since the check above (PostgreSQL's read committed
    # shows it to apply's own lookup): then this is a duplicate create, not an update.
    if results[0].action != "created":
        raise exists
    return results


def create_organization_defaults(s: Session, org: str) -> list[ApplyResult]:
    """A new organization gets development → staging → production and a default pipeline."""
    docs: list[dict[str, Any]] = [
        {"kind": "Environment", "metadata": {"name": name}, "spec": {"production": prod}}
        for name, prod in DEFAULT_ENVIRONMENTS
    ]
    docs.append({"kind": "DeploymentPipeline", "metadata": {"name": "default"}, "spec": {"promotionPaths": [
        {"source": "development", "targets": [{"name": "staging"}]},
        {"source": "staging", "targets": [{"name": "production", "requiresApproval": True}]},
    ]}})
    results = []
    for raw in docs:
        doc = parse_document({"apiVersion": API_VERSION, **raw})
        place = Place(doc.info, org)
        if find(s, place, doc.name) is None:
            s.add(ResourceRow(uid=str(uuid.uuid4()), kind=doc.kind, organization=org, project="", name=doc.name,
                              labels={}, annotations={}, spec=doc.spec_dict(), status={}, generation=1))
            s.flush()
            results.append(ApplyResult(doc.kind, doc.name, org, "", "created"))
    return results


def delete_resource(s: Session, place: Place, name: str) -> list[str]:
    """Delete a resource and what it owns; returns what was deleted, owners last."""
    row = get(s, place, name)
    deleted: list[str] = []
    kind = place.info.kind
    users = referrers(s, place, name)
    if users:
        raise ConflictError(f"{place.describe(name)} is still used by {', '.join(users)}; change or delete them first",
                            code="in-use")
    if kind == "Organization":
        projects = s.scalars(select(ResourceRow.name).where(
            ResourceRow.kind == "Project", ResourceRow.organization == name)).all()
        if projects:
            raise ConflictError(f"organization '{name}' still has projects: {', '.join(sorted(projects))}; "
                                "delete them first", code="not-empty")
        owned = s.scalars(select(ResourceRow).where(ResourceRow.organization == name)).all()
        deleted += [f"{r.kind.lower()}/{r.name}" for r in owned]
        s.execute(delete(ResourceRow).where(ResourceRow.organization == name))
        s.execute(delete(RoleBindingRow).where(RoleBindingRow.organization == name))
        workloads.forget(s, name)
        releases.forget(s, name)
        approvals.forget(s, name)
        alerts.forget(s, name)
        s.execute(delete(PreviewRow).where(PreviewRow.organization == name))
    elif kind == "Project":
        comps = s.scalars(select(ResourceRow).where(
            ResourceRow.kind == "Component", ResourceRow.organization == place.organization,
            ResourceRow.project == name)).all()
        deleted += [f"component/{c.name}" for c in comps]
        s.execute(delete(ResourceRow).where(ResourceRow.organization == place.organization,
                                            ResourceRow.project == name))
        s.execute(delete(ConfigValueRow).where(ConfigValueRow.organization == place.organization,
                                               ConfigValueRow.project == name))
        # A binding outlives nothing it is scoped to: a later project of the same name must not inherit it.
        s.execute(delete(RoleBindingRow).where(RoleBindingRow.organization == place.organization,
                                               RoleBindingRow.project == name))
        builds.forget(s, place.organization, name)
        workloads.forget(s, place.organization, name)
        releases.forget(s, place.organization, name)
        approvals.forget(s, place.organization, name)
        alerts.forget(s, place.organization, name)
        from cellplane.controlplane import previews  # previews reads resources: imported where it is used

        for preview in previews.list_rows(s, place.organization, name):
            deleted += previews.delete_preview(s, preview)
    elif kind == "Component":
        builds.forget(s, place.organization, place.project, name)
        workloads.forget(s, place.organization, place.project, name)
        releases.forget(s, place.organization, place.project, name)
        approvals.forget(s, place.organization, place.project, name)
        alerts.forget(s, place.organization, place.project, name)
        s.execute(delete(ConfigValueRow).where(
            ConfigValueRow.organization == place.organization, ConfigValueRow.project == place.project,
            ConfigValueRow.component == name))
    elif kind == "Environment":
        deployed = s.execute(select(DeploymentRow.project, DeploymentRow.component).where(
            DeploymentRow.organization == place.organization, DeploymentRow.environment == name)
            .order_by(DeploymentRow.project, DeploymentRow.component)).all()
        if deployed:
            names = ", ".join(f"{p}/{c}" for p, c in deployed[:20]) + (", ..." if len(deployed) > 20 else "")
            raise ConflictError(f"environment '{name}' still has deployments: {names}; undeploy them first",
                                code="in-use")
        workloads.forget(s, place.organization, environment=name)
        releases.forget(s, place.organization, environment=name)
        approvals.forget(s, place.organization, environment=name)
        alerts.forget(s, place.organization, environment=name)
        s.execute(delete(PreviewRow).where(PreviewRow.organization == place.organization,
                                           PreviewRow.environment == name))
        s.execute(update(BuildRow).where(BuildRow.organization == place.organization, BuildRow.deploy_to == name)
                  .values(deploy_to=None))
        s.execute(delete(ConfigValueRow).where(ConfigValueRow.organization == place.organization,
                                               ConfigValueRow.environment == name))
        s.execute(delete(RoleBindingRow).where(RoleBindingRow.organization == place.organization,
                                               RoleBindingRow.environment == name))
    elif kind == "DataPlane":  # its agent's tokens stop working; a later namesake gets new ones
        s.execute(delete(RoleBindingRow).where(RoleBindingRow.organization == place.organization,
                                               RoleBindingRow.dataplane == name))
    s.delete(row)
    s.flush()
    deleted.append(f"{kind.lower()}/{name}")
    return deleted


def referrers(s: Session, place: Place, name: str) -> list[str]:
    """Resources of the same organization whose spec names this one (deleting it would break them)."""
    kind = place.info.kind
    if kind not in ("Environment", "DataPlane", "DeploymentPipeline"):
        return []
    watched = {"Environment": "DeploymentPipeline", "DataPlane": "Environment", "DeploymentPipeline": "Project"}[kind]
    rows = s.scalars(select(ResourceRow).where(ResourceRow.kind == watched,
                                               ResourceRow.organization == place.organization))
    out = []
    for row in rows:
        spec = row.spec
        if kind == "Environment":
            named = {p.get("source") for p in spec.get("promotionPaths") or []} | {
                t.get("name") for p in spec.get("promotionPaths") or [] for t in p.get("targets") or []}
            hit = name in named
        elif kind == "DataPlane":
            hit = spec.get("dataPlane") == name
        else:
            hit = spec.get("deploymentPipeline", "default") == name
        if hit:
            out.append(f"{watched.lower()}/{row.name}")
    return sorted(out)


def to_document(row: ResourceRow) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": row.name}
    if row.organization:
        meta["organization"] = row.organization
    if row.project:
        meta["project"] = row.project
    if row.labels:
        meta["labels"] = row.labels
    if row.annotations:
        meta["annotations"] = row.annotations
    meta.update(uid=row.uid, generation=row.generation, creationTimestamp=row.created_at.isoformat(),
                updateTimestamp=row.updated_at.isoformat())
    return {"apiVersion": API_VERSION, "kind": row.kind, "metadata": meta, "spec": row.spec, "status": row.status}


# -- listing with opaque, stable continue tokens -------------------------------------------------------------------


def encode_cursor(row: ResourceRow) -> str:
    return base64.urlsafe_b64encode(json.dumps([row.organization, row.project, row.name]).encode()).decode()


def decode_cursor(token: str) -> tuple[str, str, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        # The three parts come from stored rows: names or ''. Anything else (NUL, unpaired surrogates, long
        # strings) is a forged token and must not reach the database.
        if isinstance(value, list) and len(value) == 3 and all(
                isinstance(v, str) and (v == "" or dns_label_problem(v) is None) for v in value):
            return value[0], value[1], value[2]
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    raise InvalidError("the continue token is not valid", [FieldProblem("continue", "not a token from a list call")])


def list_rows(s: Session, kind: str, organization: str | None = None, project: str | None = None,
              limit: int = 100, after: str | None = None,
              visible: Any = None) -> tuple[list[ResourceRow], str | None]:
    """One page of resources ordered by (organization, project, name), and the token for the next page.

    ``visible`` filters rows the caller may see; filtering happens before paging so that pages stay full.
    """
    q = select(ResourceRow).where(ResourceRow.kind == kind)
    if organization is not None:
        q = q.where(ResourceRow.organization == organization)
    if project is not None:
        q = q.where(ResourceRow.project == project)
    if after:
        q = q.where(tuple_(ResourceRow.organization, ResourceRow.project, ResourceRow.name) > decode_cursor(after))
    q = q.order_by(ResourceRow.organization, ResourceRow.project, ResourceRow.name)
    rows: list[ResourceRow] = []
    for row in s.scalars(q.execution_options(yield_per=200)):
        if visible is None or visible(row):
            rows.append(row)
            if len(rows) > limit:
                break
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)
