"""Applying, creating and deleting resources of every kind: the same steps for each, the kind's handler at each step.

``apply`` checks the owner and the references, lets the kind prepare its spec, writes the row (``resources``) and
tells the kind what happened (created, or changed); ``delete`` refuses a resource another one still names, lets the
kind check and remove what it owns elsewhere, and deletes the row. What each kind does is in ``kindhandlers``;
this module names no kind. Callers own the transaction (one per request, with its audit event: ``api.deps.audited``), so
a problem in the tenth document of an ``apply`` rolls back the first nine.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from cellplane.controlplane import resources
from cellplane.controlplane.keyring import KeyRing
from cellplane.controlplane.kindhandlers import handler
from cellplane.controlplane.resources import ApplyResult, Scope
from cellplane.errors import ConflictError
from cellplane.model import Document


def apply(s: Session, doc: Document, scope: Scope, keyring: KeyRing, actor: str) -> list[ApplyResult]:
    """Create or update one document. Returns what changed (an Organization brings its defaults)."""
    kind = handler(doc.kind)
    resources.require_owner(s, scope)
    resources.check_references(s, doc, scope, kind.references(doc.spec) if kind.references else [])
    spec, touched = doc.spec_dict(), False
    if kind.prepare is not None:
        spec, touched = kind.prepare(s, keyring, scope, doc.name, spec, actor)
    result, row, spec_changed = resources.write(s, doc, scope, spec, touched)
    if result.action == "created":
        return [result] + (kind.created(s, row) if kind.created else [])
    if result.action == "configured" and (spec_changed or touched) and kind.changed is not None:
        kind.changed(s, keyring, row, actor, spec_changed)
    s.flush()
    return [result]


def create(s: Session, doc: Document, scope: Scope, keyring: KeyRing, actor: str) -> list[ApplyResult]:
    """``apply`` of a document that must not exist yet."""
    if resources.find(s, scope, doc.name) is not None:
        raise resources.already_exists(scope, doc.name)
    results = apply(s, doc, scope, keyring, actor)
    # Another transaction may have committed the same name since the check above (PostgreSQL's read committed
    # shows it to apply's own lookup): then this is a duplicate create, not an update.
    if results[0].action != "created":
        raise resources.already_exists(scope, doc.name)
    return results


def delete(s: Session, scope: Scope, name: str) -> list[str]:
    """Delete a resource and what it owns; returns what was deleted, owners last."""
    row = resources.get(s, scope, name)
    kind = handler(scope.info.kind)
    if kind.used_by is not None:
        users = resources.referrers(s, scope, name, *kind.used_by)
        if users:
            raise ConflictError(f"{scope.describe(name)} is still used by {', '.join(users)}; change or delete them "
                                "first", code="in-use")
    deleted = kind.deleting(s, scope, name) if kind.deleting is not None else []
    s.delete(row)
    s.flush()
    deleted.append(f"{scope.info.kind.lower()}/{name}")
    return deleted
