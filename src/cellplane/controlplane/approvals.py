"""Approval requests: a release waiting to run in an environment that requires approval.

A request is made by a deploy or a promotion into such an environment. Someone holding the approver permission
for that environment (``deployments:approve``) who is not the requester approves it (the release then runs) or
rejects it with a reason. A newer request for the same slot supersedes a pending older one.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.controlplane.releases import Slot
from cellplane.errors import ConflictError, FieldProblem, NotFoundError
from cellplane.store.scope import delete_scoped
from cellplane.store.tables import ApprovalRow, ReleaseRow, now

STATES = ("pending", "approved", "rejected", "superseded")


def _pending(s: Session, slot: Slot) -> list[ApprovalRow]:
    a = ApprovalRow
    return list(s.scalars(select(a).where(
        a.organization == slot.organization, a.project == slot.project, a.component == slot.component,
        a.environment == slot.environment, a.track == slot.track, a.state == "pending")))


def request(s: Session, slot: Slot, release: ReleaseRow, action: str, source: str | None,
            actor: str) -> ApprovalRow:
    pending = _pending(s, slot)
    for row in pending:
        if row.release_id == release.id:
            return row  # asked already
    at = now()
    for row in pending:
        row.state, row.decided_at, row.reason = "superseded", at, f"a newer request asks for release {release.id}"
    row = ApprovalRow(id="apr_" + secrets.token_hex(4), organization=slot.organization, project=slot.project,
                      component=slot.component, environment=slot.environment, track=slot.track,
                      release_id=release.id, action=action, source_environment=source, state="pending",
                      requested_by=actor, requested_at=at, reason="")
    s.add(row)
    s.flush()
    return row


def supersede(s: Session, slot: Slot, reason: str) -> None:
    """Pending requests for ``slot`` no longer apply (its deployment was removed)."""
    for row in _pending(s, slot):
        row.state, row.decided_at, row.reason = "superseded", now(), reason


def get(s: Session, org: str, approval_id: str) -> ApprovalRow:
    row = s.get(ApprovalRow, approval_id)
    if row is None or row.organization != org:
        raise NotFoundError(f"approval request '{approval_id}' not found in organization '{org}'",
                            [FieldProblem("path.approval", "no such approval request")])
    return row


def slot_of(row: ApprovalRow) -> Slot:
    return Slot(row.organization, row.project, row.component, row.environment, row.track)


def decide(row: ApprovalRow, user: str, state: str, reason: str = "") -> None:
    if row.state != "pending":
        raise ConflictError(f"approval request {row.id} is {row.state} already"
                            + (f" (by {row.decided_by})" if row.decided_by else ""), code="not-pending")
    row.state, row.decided_by, row.decided_at, row.reason = state, user, now(), reason


def list_rows(s: Session, org: str, state: str | None = None, project: str | None = None,
              limit: int = 200) -> list[ApprovalRow]:
    q = select(ApprovalRow).where(ApprovalRow.organization == org)
    if state is not None:
        q = q.where(ApprovalRow.state == state)
    if project is not None:
        q = q.where(ApprovalRow.project == project)
    return list(s.scalars(q.order_by(ApprovalRow.requested_at.desc()).limit(limit)))


def view(row: ApprovalRow) -> dict[str, Any]:
    return {
        "id": row.id, "organization": row.organization, "project": row.project, "component": row.component,
        "environment": row.environment, "track": row.track, "release": row.release_id, "action": row.action,
        "from": row.source_environment, "state": row.state, "requestedBy": row.requested_by,
        "requestedAt": row.requested_at.isoformat(), "decidedBy": row.decided_by,
        "decidedAt": row.decided_at.isoformat() if row.decided_at else None, "reason": row.reason,
    }


def forget(s: Session, organization: str, project: str | None = None, component: str | None = None,
           environment: str | None = None) -> None:
    delete_scoped(s, (ApprovalRow,), organization, project, component, environment)
