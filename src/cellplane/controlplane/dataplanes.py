"""Data planes as the control plane knows them: their agent, the environments bound to them, what they report.

An agent registers (``PUT .../agent``): the DataPlane resource is created if absent (type ``local``), the
agent (id, version, hostname, public key) is recorded in its ``status.agent``, and with ``bindUnbound``
every environment of the organization without a data plane is bound to it. Status reports update
``status.agent.lastSeen`` and ``status.gateways`` (never the resource's generation or update time) and
each reported deployment's observed state.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cellplane.contract.status import StatusReport
from cellplane.controlplane import resources
from cellplane.model import KINDS
from cellplane.store import in_chunks
from cellplane.store.tables import DeploymentRow, ResourceRow, now

STALE_AFTER = 30.0  # seconds without a report after which a data plane shows as unreachable


def find(s: Session, org: str, name: str) -> ResourceRow | None:
    return resources.find(s, resources.Scope(KINDS["DataPlane"], org), name)


def get(s: Session, org: str, name: str) -> ResourceRow:
    return resources.get(s, resources.Scope(KINDS["DataPlane"], org), name)


def agent_of(row: ResourceRow | None) -> dict[str, Any]:
    return dict(((row.status if row is not None else None) or {}).get("agent") or {})


def public_key(row: ResourceRow | None) -> str | None:
    return agent_of(row).get("publicKey") or None


def last_seen(row: ResourceRow | None) -> datetime | None:
    value = agent_of(row).get("lastSeen")
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def unreachable_since(row: ResourceRow | None, at: datetime | None = None) -> datetime | None:
    """When the data plane last reported, if that is more than ``STALE_AFTER`` seconds ago."""
    seen = last_seen(row)
    if seen is not None and (at or now()) - seen > timedelta(seconds=STALE_AFTER):
        return seen
    return None


def gateways(row: ResourceRow | None, environment: str) -> dict[str, Any]:
    """The listeners the agent reported for an environment: external, internal, cells (project -> URL)."""
    entry = (((row.status if row is not None else None) or {}).get("gateways") or {}).get(environment)
    return entry if isinstance(entry, dict) else {}


def environments(s: Session, org: str, name: str | None = None) -> list[ResourceRow]:
    """The organization's environments (bound to data plane ``name``, when given), by name."""
    rows = s.scalars(select(ResourceRow).where(ResourceRow.kind == "Environment", ResourceRow.organization == org)
                     .order_by(ResourceRow.name)).all()
    return [r for r in rows if name is None or (r.spec or {}).get("dataPlane") == name]


def ensure(s: Session, org: str, name: str) -> ResourceRow:
    """The DataPlane ``name``, created (type local) when absent."""
    row = find(s, org, name)
    if row is None:
        t = now()
        row = ResourceRow(uid=str(uuid.uuid4()), kind="DataPlane", organization=org, project="", name=name,
                          labels={}, annotations={}, spec={"type": "local"}, status={}, generation=1,
                          created_at=t, updated_at=t)
        s.add(row)
    return row


def bind_unbound(s: Session, org: str, name: str) -> None:
    """Bind every environment of the organization without a data plane to data plane ``name``."""
    t = now()
    for env in environments(s, org):
        if not (env.spec or {}).get("dataPlane"):
            env.spec = {**(env.spec or {}), "dataPlane": name}
            env.generation += 1
            env.updated_at = t


def register(s: Session, org: str, name: str, agent: dict[str, Any], bind: bool,
             runtime: str = "local") -> dict[str, Any]:
    """Record the agent (creating the DataPlane when absent); returns the environments bound to it. The DataPlane's
    type becomes ``runtime``, what the agent says runs its workloads (``local`` or ``kubernetes``)."""
    row = ensure(s, org, name)
    t = now()
    spec = row.spec or {}
    if spec.get("type", "local") != runtime and not (runtime == "local" and spec.get("kubernetes")):
        row.spec = {**(row.spec or {}), "type": runtime}
        row.generation += 1
        row.updated_at = t
    status = dict(row.status or {})
    status["agent"] = {**agent, "registeredAt": t.isoformat(), "lastSeen": t.isoformat()}
    row.status = status
    if bind:
        bind_unbound(s, org, name)
    s.flush()
    return {"dataPlane": name, "environments": [e.name for e in environments(s, org, name)]}


def record_status(s: Session, row: ResourceRow, report: StatusReport) -> int:
    """Store a status report (as JSON: the listeners in the data plane's status, each deployment's report in its
    status); returns how many deployments it updated (unknown ones are ignored)."""
    t = now()
    status = dict(row.status or {})
    status["agent"] = {**agent_of(row), "lastSeen": t.isoformat()}
    status["gateways"] = {env: listeners.model_dump(mode="json") for env, listeners in report.gateways.items()}
    status["observedRevision"] = report.revision
    status["metricsUrl"] = report.metricsUrl
    row.status = status
    served = {e.name for e in environments(s, row.organization, row.name)}
    items = {item.id: item.model_dump(mode="json") for item in report.deployments}
    seen: list[str] = []
    for chunk in in_chunks(sorted(items)):  # a few queries for hundreds of deployments, not one each
        for dep in s.scalars(select(DeploymentRow).where(DeploymentRow.id.in_(chunk))):
            if dep.organization != row.organization or dep.environment not in served:
                continue
            if dep.status != items[dep.id]:  # most reports repeat the last one: only changes are written
                dep.status = items[dep.id]
            seen.append(dep.id)
    s.flush()
    for chunk in in_chunks(seen):  # one statement, not one per deployment
        s.execute(update(DeploymentRow).where(DeploymentRow.id.in_(chunk)).values(observed_at=t))
    return len(seen)
