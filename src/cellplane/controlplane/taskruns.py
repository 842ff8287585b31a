"""Task runs: one run of a deployed task component, manual or scheduled (its log lines are in ``telemetry.logs``).

Task runs are requested here (manual runs, state ``queued``) or
started by the data plane (scheduled runs, which get their id there), and updated from its reports:
queued → running → succeeded | failed.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select
from sqlalchemy.orm import Session

from cellplane.contract.status import TaskRunReport
from cellplane.errors import FieldProblem, NotFoundError
from cellplane.store.tables import DeploymentRow, TaskRunRow, now

MAX_RUNS = 1000  # finished runs kept per (organization, project, component, environment)
RUN_STATES = ("queued", "running", "succeeded", "failed")
RUN_TERMINAL = ("succeeded", "failed")


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# -- task runs ------------------------------------------------------------------------------------------------------


def new_run_id() -> str:
    return "run_" + secrets.token_hex(8)


def create_run(s: Session, dep: DeploymentRow, actor: str) -> TaskRunRow:
    row = TaskRunRow(id=new_run_id(), organization=dep.organization, project=dep.project, component=dep.component,
                     environment=dep.environment, deployment_id=dep.id, trigger="manual", state="queued",
                     requested_by=actor, requested_at=now(), message="")
    s.add(row)
    s.flush()
    _prune_runs(s, dep.organization, dep.project, dep.component, dep.environment)
    return row


def get_run(s: Session, org: str, run_id: str) -> TaskRunRow:
    row = s.get(TaskRunRow, run_id)
    if row is None or row.organization != org:
        raise NotFoundError(f"task run '{run_id}' not found in organization '{org}'",
                            [FieldProblem("run", "not found")])
    return row


def list_runs(s: Session, org: str, project: str, component: str, environment: str | None,
              limit: int, environments: Collection[str] | None = None) -> list[TaskRunRow]:
    """The component's runs, newest first; only those of ``environments`` when given (the ones the caller may
    read), so that ``limit`` counts readable runs."""
    q = select(TaskRunRow).where(TaskRunRow.organization == org, TaskRunRow.project == project,
                                 TaskRunRow.component == component)
    if environment is not None:
        q = q.where(TaskRunRow.environment == environment)
    if environments is not None:
        q = q.where(TaskRunRow.environment.in_(sorted(environments)))
    return list(s.scalars(q.order_by(TaskRunRow.requested_at.desc(), TaskRunRow.id.desc()).limit(limit)))


def queued_runs(s: Session, deployment_ids: Iterable[str]) -> list[TaskRunRow]:
    ids = list(deployment_ids)
    if not ids:
        return []
    return list(s.scalars(select(TaskRunRow).where(TaskRunRow.state == "queued", TaskRunRow.trigger == "manual",
                                                   TaskRunRow.deployment_id.in_(ids))
                          .order_by(TaskRunRow.requested_at, TaskRunRow.id)))


def run_view(row: TaskRunRow) -> dict[str, Any]:
    return {"id": row.id, "organization": row.organization, "project": row.project, "component": row.component,
            "environment": row.environment, "deployment": row.deployment_id, "trigger": row.trigger,
            "state": row.state, "requestedBy": row.requested_by or None, "requestedAt": iso(row.requested_at),
            "startedAt": iso(row.started_at), "endedAt": iso(row.ended_at), "exitCode": row.exit_code,
            "message": row.message}


def record_runs(s: Session, org: str, reports: Sequence[TaskRunReport], environments: set[str]) -> int:
    """Upsert runs reported by a data plane serving ``environments``; returns how many were recorded.

    A run of an unknown deployment (deleted meanwhile), of another organization or environment is ignored; a
    finished run does not go back to running.
    """
    recorded = 0
    touched: set[tuple[str, str, str]] = set()
    for rep in reports:
        row = s.get(TaskRunRow, rep.id)
        if row is None:
            dep = s.get(DeploymentRow, rep.deployment)
            if dep is None or dep.organization != org or dep.environment not in environments or (
                    dep.project, dep.component, dep.environment) != (rep.project, rep.component, rep.environment):
                continue
            row = TaskRunRow(id=rep.id, organization=org, project=dep.project, component=dep.component,
                             environment=dep.environment, deployment_id=dep.id, trigger=rep.trigger,
                             state="queued", requested_by="", requested_at=rep.startedAt or now(), message="")
            s.add(row)
            touched.add((dep.project, dep.component, dep.environment))
        elif row.organization != org or row.environment not in environments:
            continue
        if row.state in RUN_TERMINAL and rep.state not in RUN_TERMINAL:
            continue
        row.state = rep.state
        if rep.startedAt is not None:
            row.started_at = rep.startedAt
        if rep.endedAt is not None:
            row.ended_at = rep.endedAt
        if rep.exitCode is not None:
            row.exit_code = rep.exitCode
        row.message = rep.message
        recorded += 1
    s.flush()
    for project, component, environment in touched:
        _prune_runs(s, org, project, component, environment)
    return recorded


def _prune_runs(s: Session, org: str, project: str, component: str, environment: str) -> None:
    key = and_(TaskRunRow.organization == org, TaskRunRow.project == project, TaskRunRow.component == component,
               TaskRunRow.environment == environment)
    oldest_kept = s.execute(select(TaskRunRow.requested_at, TaskRunRow.id).where(key)
                            .order_by(TaskRunRow.requested_at.desc(), TaskRunRow.id.desc())
                            .offset(MAX_RUNS).limit(1)).first()
    if oldest_kept is not None:
        s.execute(delete(TaskRunRow).where(key, TaskRunRow.state.in_(RUN_TERMINAL),
                                           TaskRunRow.requested_at <= oldest_kept[0]))


def cancel_queued(s: Session, deployment_id: str, message: str) -> None:
    """Queued runs of a deployment that goes away will never start."""
    for row in s.scalars(select(TaskRunRow).where(TaskRunRow.deployment_id == deployment_id,
                                                  TaskRunRow.state == "queued")):
        row.state, row.ended_at, row.message = "failed", now(), message

