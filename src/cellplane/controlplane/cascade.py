"""What a deleted scope leaves in other tables, forgotten in one place: the rows of an organization, project,
component or environment that is being deleted, and a preview environment with everything it made.

Each table's owner says how its rows are deleted (``releases.forget``, ``approvals.forget``, ``config.forget``,
``alerts.forget``, ``builds.forget``); this module says which of them a deletion reaches, so that a new table
scoped by organization, project, component or environment is added here once, not in every deletion. The kinds'
handlers (``kindhandlers``) and the preview routes call it. Cost: one ``DELETE`` per table.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from cellplane.controlplane import approvals, config, previews, releases
from cellplane.controlplane.telemetry import alerts
from cellplane.store.scope import delete_scoped
from cellplane.store.tables import (
    AccessLogRow,
    ConnectionKeyRow,
    DeploymentRow,
    MetricPointRow,
    PreviewRow,
    RoleBindingRow,
    SpanRow,
    TaskRunRow,
    WorkloadLogRow,
)

# What ran: deployments, the connection keys they were issued, their task runs and their telemetry.
WORKLOAD_TABLES = (DeploymentRow, ConnectionKeyRow, WorkloadLogRow, TaskRunRow, AccessLogRow, MetricPointRow, SpanRow)


def forget(s: Session, organization: str, project: str | None = None, component: str | None = None,
           environment: str | None = None) -> None:
    """Delete what ran in that scope (``WORKLOAD_TABLES``), its releases and their events, approval requests, alert
    rules and events (a None part matches everything)."""
    delete_scoped(s, WORKLOAD_TABLES, organization, project, component, environment)
    releases.forget(s, organization, project, component, environment)
    approvals.forget(s, organization, project, component, environment)
    alerts.forget(s, organization, project, component, environment)


def forget_environment(s: Session, organization: str, environment: str) -> None:
    """Everything ``forget`` deletes for an environment, its configuration values and its role bindings."""
    forget(s, organization, environment=environment)
    config.forget(s, organization, environment=environment)
    s.execute(delete(RoleBindingRow).where(RoleBindingRow.organization == organization,
                                           RoleBindingRow.environment == environment))


def delete_preview(s: Session, row: PreviewRow) -> list[str]:
    """Delete a preview environment: its deployments and what they left, its configuration and bindings, its builds,
    the environment and the preview; returns what was deleted."""
    deleted = previews.deployments_of(s, row)
    forget_environment(s, row.organization, row.environment)
    return deleted + previews.remove(s, row)
