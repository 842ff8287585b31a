"""Stored resources: write, read, list and delete the rows of documents of every kind, inside one session.

This module knows the ``resources`` table and nothing else: what storing or deleting a document sets off in other
tables (a component's secrets, its deployments, a project's builds) is the business of ``lifecycle`` and the
per-kind handlers (``kindhandlers``) above it. Callers own the transaction: ``lifecycle.apply`` of ten documents
happens in one session, so a problem in the tenth rolls back the first nine.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, tuple_
from sqlalchemy.orm import Session

from cellplane import API_VERSION
from cellplane.errors import ConflictError, FieldProblem, InvalidError, NotFoundError
from cellplane.model import KINDS, Document, KindInfo, dns_label_problem, parse_document
from cellplane.store.tables import ResourceRow, now

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
class Scope:
    """Where resources of one kind live: the kind, and the organization (and project) they belong to, as stored in
    the scope columns ('' where the kind has none). A resource is a ``Scope`` and a name."""

    info: KindInfo
    organization: str = ""
    project: str = ""

    def describe(self, name: str) -> str:
        where = "/".join(p for p in (self.organization, self.project, name) if p)
        return f"{self.info.kind} '{where}'"


def scope_of(doc: Document, default_org: str | None, default_project: str | None) -> Scope:
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
    return Scope(info, org, project)


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


def _where(scope: Scope, name: str) -> dict[str, str]:
    return {"kind": scope.info.kind, "org": scope.organization, "project": scope.project, "name": name}


def find(s: Session, scope: Scope, name: str) -> ResourceRow | None:
    return s.scalar(_FIND, _where(scope, name))


def exists(s: Session, scope: Scope, name: str) -> bool:
    """Whether the resource exists (its id alone is read: cheaper than ``find``)."""
    return s.scalar(_EXISTS, _where(scope, name)) is not None


def get(s: Session, scope: Scope, name: str) -> ResourceRow:
    row = find(s, scope, name)
    if row is None:
        raise NotFoundError(f"{scope.describe(name)} not found")
    return row


def get_component(s: Session, organization: str, project: str, name: str) -> ResourceRow:
    """A component, after checking that its organization and project exist (404s name the missing one)."""
    scope = Scope(KINDS["Component"], organization, project)
    require_owner(s, scope, field_path="path")
    row = find(s, scope, name)
    if row is None:
        raise NotFoundError(f"{scope.describe(name)} not found", [FieldProblem("path.component", "no such component")])
    return row


def require_owner(s: Session, scope: Scope, field_path: str = "metadata") -> None:
    """The organization (and project) a resource belongs to must exist."""
    if scope.info.scope == "cluster":
        return
    if scope.info.scope == "project" and s.scalar(_OWNERS, {"org": scope.organization, "project": scope.project}) == 2:
        return  # both exist: one query (which one is missing takes two)
    orgs = Scope(KINDS["Organization"])
    if not exists(s, orgs, scope.organization):
        raise NotFoundError(f"organization '{scope.organization}' not found",
                            [FieldProblem(f"{field_path}.organization", "no such organization")])
    if scope.info.scope == "project" and not exists(s, Scope(KINDS["Project"], scope.organization), scope.project):
        raise NotFoundError(f"project '{scope.organization}/{scope.project}' not found",
                            [FieldProblem(f"{field_path}.project", "no such project")])


Reference = tuple[str, str, str]  # (field path, kind, name): a document names another resource of its organization


def check_references(s: Session, doc: Document, scope: Scope, references: list[Reference]) -> None:
    """The resources ``doc`` names (``references``, from its kind's handler) must exist in its organization, each
    missing one reported at its field path."""
    org = scope.organization
    problems = [FieldProblem(path, f"{kind} '{name}' does not exist in organization '{org}'")
                for path, kind, name in references if not exists(s, Scope(KINDS[kind], org), name)]
    if problems:
        raise InvalidError(f"{scope.describe(doc.name)} refers to resources that do not exist", problems)


def write(s: Session, doc: Document, scope: Scope, spec: dict[str, Any],
          touched: bool = False) -> tuple[ApplyResult, ResourceRow, bool]:
    """Store ``doc`` with ``spec`` (its spec as stored): a new row, or the existing one updated when its spec,
    labels or annotations differ or ``touched`` says that something stored elsewhere for it changed (the generation
    moves only with the spec). Returns what happened, the row, and whether the spec changed."""
    meta = doc.metadata
    row = find(s, scope, doc.name)
    result = ApplyResult(doc.kind, doc.name, scope.organization, scope.project, "unchanged", doc.warnings)
    if row is None:
        row = ResourceRow(uid=str(uuid.uuid4()), kind=doc.kind, organization=scope.organization,
                          project=scope.project, name=doc.name, labels=meta.labels, annotations=meta.annotations,
                          spec=spec, status={}, generation=1)
        s.add(row)
        s.flush()
        result.action = "created"
        return result, row, True
    spec_changed = row.spec != spec
    if (row.spec, row.labels, row.annotations) != (spec, meta.labels, meta.annotations) or touched:
        if spec_changed:
            row.generation += 1
        row.spec, row.labels, row.annotations = spec, meta.labels, meta.annotations
        row.updated_at = now()
        result.action = "configured"
    return result, row, spec_changed


def already_exists(scope: Scope, name: str) -> ConflictError:
    return ConflictError(f"{scope.describe(name)} already exists", [FieldProblem("metadata.name", "already exists")],
                         code="already-exists")


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
        scope = Scope(doc.info, org)
        if find(s, scope, doc.name) is None:
            s.add(ResourceRow(uid=str(uuid.uuid4()), kind=doc.kind, organization=org, project="", name=doc.name,
                              labels={}, annotations={}, spec=doc.spec_dict(), status={}, generation=1))
            s.flush()
            results.append(ApplyResult(doc.kind, doc.name, org, "", "created"))
    return results


def referrers(s: Session, scope: Scope, name: str, kind: str,
              named: Callable[[dict[str, Any]], Collection[Any]]) -> list[str]:
    """Resources of ``kind`` in the same organization whose spec names this one (``named`` reads the names a spec
    of that kind holds): deleting it would break them."""
    rows = s.scalars(select(ResourceRow).where(ResourceRow.kind == kind,
                                               ResourceRow.organization == scope.organization))
    return sorted(f"{kind.lower()}/{row.name}" for row in rows if name in named(row.spec))


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
