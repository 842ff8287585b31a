"""Audit events: who did what to which resource, when, and how it ended. Never any secret value."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.controlplane.rbac import Principal
from cellplane.store.tables import AuditRow


def record(s: Session, actor: str, action: str, outcome: str, kind: str = "", organization: str = "",
           project: str = "", name: str = "", message: str = "") -> None:
    # Fields may echo request input (a path, an apply body): cut them to their columns, or the insert would
    # fail (PostgreSQL) and take the response with it.
    s.add(AuditRow(actor=actor[:63], action=action[:63], outcome=outcome[:20], kind=kind[:40],
                   organization=organization[:63], project=project[:63], name=name[:255], message=message[:2000]))


def view(row: AuditRow) -> dict[str, Any]:
    return {"id": row.id, "at": row.at.isoformat(), "actor": row.actor, "action": row.action, "kind": row.kind or None,
            "organization": row.organization or None, "project": row.project or None, "name": row.name or None,
            "outcome": row.outcome, "message": row.message}


def list_events(s: Session, principal: Principal, limit: int, before: int | None, organization: str | None,
                actor: str | None, kind: str | None, visible_orgs: set[str] | None) -> list[AuditRow]:
    """Newest first. ``visible_orgs`` None means every organization (a platform administrator)."""
    q = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if before is not None:
        q = q.where(AuditRow.id < before)
    if organization is not None:
        q = q.where(AuditRow.organization == organization)
    if actor is not None:
        q = q.where(AuditRow.actor == actor)
    if kind is not None:
        q = q.where(AuditRow.kind == kind)
    if visible_orgs is not None:
        q = q.where(AuditRow.organization.in_(visible_orgs) | (AuditRow.actor == principal.user))
    return list(s.scalars(q))
