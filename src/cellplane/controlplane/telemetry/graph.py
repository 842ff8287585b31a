"""A project's cell in one environment, as a graph: its components with their endpoints (by visibility) and
state, and the connections between them, to other projects and to external URLs, with request rates.

Rates come from the gateways' metric points. A connection through the internal gateway is measured exactly
(the caller's credentials name it). Calls inside the cell carry no credentials, so the rate of a Project
connection is the cell's traffic to the target endpoint: attributed to the connection when it is the only
one in the project to that endpoint (``measured: "endpoint"``); otherwise shared out by the sampled hops
whose parent span is the caller's (``"traces"``), and left unattributed when none says (``"shared"``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from cellplane.contract.requestmetrics import CELL_CONSUMER as CELL
from cellplane.controlplane import deployments
from cellplane.controlplane.keyring import KeyRing
from cellplane.controlplane.telemetry.metrics import Totals, consumed, edges
from cellplane.store.tables import ResourceRow, SpanRow

BROADEST = ("Public", "Organization", "Project")
URL_OF = {"Public": "external", "Organization": "internal", "Project": "project"}  # the URL to show


def _visibility(endpoint: dict[str, Any]) -> str:
    declared = endpoint.get("visibility") or ["Project"]
    if isinstance(declared, str):
        declared = [declared]
    return next((v for v in BROADEST if v in declared), "Project")


def _rate(t: Totals | None, seconds: float) -> dict[str, Any]:
    if t is None:
        return {"rps": 0.0, "requests": 0, "errors": 0}
    return {"rps": round(t.requests / seconds, 4), "requests": t.requests, "errors": t.errors}


def cell(s: Session, keyring: KeyRing, org: str, project: str, environment: str, start: datetime,
         end: datetime) -> dict[str, Any]:
    seconds = max((end - start).total_seconds(), 1.0)
    rows = list(s.scalars(select(ResourceRow).where(ResourceRow.kind == "Component", ResourceRow.organization == org,
                                                    ResourceRow.project == project).order_by(ResourceRow.name)))
    inbound = edges(s, org, project, environment, start, end)  # (component, endpoint, consumer) -> Totals
    names = [f"{project}/{r.name}" for r in rows]
    outbound = consumed(s, org, names, environment, start, end)  # (consumer, project, component, endpoint)
    viewer = deployments.Viewer(s, keyring, org)
    deployed: dict[str, dict[str, Any]] = {}
    for dep in deployments.list_rows(s, org, project, None, environment):
        view = viewer.view(dep)
        if dep.component not in deployed or deployed[dep.component]["state"] == "superseded":
            deployed[dep.component] = view
    components = []
    by_endpoint: dict[tuple[str, str], Totals] = defaultdict(Totals)
    for (component, endpoint, _consumer), t in inbound.items():
        total = by_endpoint[(component, endpoint)]
        total.requests += t.requests
        total.errors += t.errors
    for row in rows:
        spec = row.spec or {}
        shown = deployed.get(row.name)
        endpoints = []
        for e in (shown["endpoints"] if shown else spec.get("endpoints") or []):
            urls = {k: v for k, v in ((e.get("urls") or {}) if shown else {}).items() if v}
            visibility = _visibility(e)
            url = urls.get(URL_OF[visibility]) or next(iter(urls.values()), None)
            endpoints.append({"name": e["name"], "visibility": visibility, "basePath": e.get("basePath", "/"),
                              "url": url, "urls": urls,
                              "rps": _rate(by_endpoint.get((row.name, e["name"])), seconds)["rps"]})
        total = Totals()
        for (component, _endpoint), t in by_endpoint.items():
            if component == row.name:
                total.requests += t.requests
                total.errors += t.errors
        components.append({"name": row.name, "type": spec.get("type") or "service",
                           "state": shown["state"] if shown else "not-deployed", **_rate(total, seconds),
                           "errorRate": round(total.errors / total.requests, 6) if total.requests else None,
                           "endpoints": endpoints})
    callers = _cell_callers(s, org, project, environment, start, end)
    return {"project": project, "environment": environment, "window": int(seconds), "components": components,
            "connections": _connections(rows, project, inbound, outbound, callers, seconds)}


def _cell_callers(s: Session, org: str, project: str, environment: str, start: datetime,
                  end: datetime) -> dict[tuple[str, str], dict[str | None, int]]:
    """Sampled hops into the project's components through its cell, by (component, endpoint) and the component
    of the hop they ran under (None: a trace that started there, or a parent no gateway recorded)."""
    hop, parent = aliased(SpanRow), aliased(SpanRow)
    rows = s.execute(
        select(hop.component, hop.endpoint, parent.component, func.count())
        .select_from(hop)
        .outerjoin(parent, and_(parent.trace_id == hop.trace_id, parent.span_id == hop.parent_id,
                                parent.organization == org, parent.project == project))
        .where(hop.organization == org, hop.project == project, hop.environment == environment,
               hop.listener == "cell", hop.start >= start, hop.start < end)
        .group_by(hop.component, hop.endpoint, parent.component)).all()
    out: dict[tuple[str, str], dict[str | None, int]] = defaultdict(dict)
    for component, endpoint, caller, n in rows:
        out[(component, endpoint)][caller] = int(n)
    return out


def _connections(rows: list[ResourceRow], project: str, inbound: dict[tuple[str, str, str], Totals],
                 outbound: dict[tuple[str, str, str, str], Totals],
                 callers: dict[tuple[str, str], dict[str | None, int]], seconds: float) -> list[dict[str, Any]]:
    out = []
    declared: dict[tuple[str, str], list[str]] = defaultdict(list)  # in-cell target -> the callers
    for row in rows:
        for d in (row.spec or {}).get("dependencies") or []:
            if d.get("component") and (d.get("project") or project) == project:
                declared[(d["component"], d.get("endpoint") or "")].append(row.name)
    for row in rows:
        for d in (row.spec or {}).get("dependencies") or []:
            item: dict[str, Any] = {"from": row.name, "name": d["name"]}
            if d.get("url"):
                out.append({**item, "to": {"url": d["url"]}, "rps": None, "requests": None, "errors": None,
                            "measured": "none"})
                continue
            target = (d.get("project") or project, d["component"], d.get("endpoint") or "")
            item["to"] = {"project": target[0], "component": target[1], "endpoint": target[2] or None}
            me = f"{project}/{row.name}"
            total = Totals()
            for (consumer, tp, tc, te), t in outbound.items():
                if consumer == me and (tp, tc) == target[:2] and (not target[2] or te == target[2]):
                    total.requests += t.requests
                    total.errors += t.errors
            measured = "exact"
            if target[0] == project:  # also through the cell, where callers carry no credentials
                cell_total = Totals()
                for (tc, te, consumer), t in inbound.items():
                    if consumer == CELL and tc == target[1] and (not target[2] or te == target[2]):
                        cell_total.requests += t.requests
                        cell_total.errors += t.errors
                if cell_total.requests:
                    if declared.get((target[1], target[2]), []) == [row.name]:
                        total.requests += cell_total.requests
                        total.errors += cell_total.errors
                        measured = "endpoint"
                    else:  # several callers: their shares of the sampled hops, when those say who called
                        hops = _hops(callers, target[1], target[2])
                        mine, seen = hops.get(row.name, 0), sum(hops.values())
                        if mine and seen:
                            total.requests += round(cell_total.requests * mine / seen)
                            total.errors += round(cell_total.errors * mine / seen)
                            measured = "traces"
                        else:
                            measured = "shared"
            out.append({**item, **_rate(total, seconds), "measured": measured})
    return out


def _hops(callers: dict[tuple[str, str], dict[str | None, int]], component: str,
          endpoint: str) -> dict[str | None, int]:
    if endpoint:
        return callers.get((component, endpoint), {})
    out: dict[str | None, int] = defaultdict(int)
    for (c, _e), by_caller in callers.items():
        if c == component:
            for caller, n in by_caller.items():
                out[caller] += n
    return out
