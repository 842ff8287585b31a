"""Spans of requests through the gateways, joined into traces by their W3C trace id.

A data plane's gateways record one span per proxied request (the hop into a component); a component that
forwards ``traceparent`` on its own calls joins the next hop to the same trace. Traces are read by
component (those with a span of it) and exported, when an operator gives a collector, over OTLP/HTTP with
the OpenTelemetry SDK's exporter.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from cellplane.errors import ConflictError, FieldProblem
from cellplane.store.tables import SpanRow

log = logging.getLogger("cellplane.telemetry")
MAX_SPANS = 500_000  # kept in all; the oldest go first
CANDIDATES = 1000  # traces looked at per query


def ingest(s: Session, org: str, spans: list[dict[str, Any]]) -> int:
    rows = [{"trace_id": x["traceId"], "span_id": x["spanId"], "parent_id": x.get("parentId"), "organization": org,
             "project": x["project"], "component": x["component"], "environment": x["environment"],
             "endpoint": x["endpoint"], "listener": x["listener"], "name": x["name"][:512], "start": x["start"],
             "duration_ms": x["durationMs"], "status": x["status"], "consumer": x.get("consumer"),
             "request_id": x.get("requestId")} for x in spans]
    if rows:
        s.execute(insert(SpanRow), rows)
    return len(rows)


def expire(s: Session, before: datetime, bound: int = MAX_SPANS) -> int:
    """Delete spans that started before ``before``, and the oldest beyond ``bound``."""
    n = s.execute(delete(SpanRow).where(SpanRow.start < before)).rowcount or 0
    threshold = s.scalar(select(SpanRow.id).order_by(SpanRow.id.desc()).offset(bound).limit(1))
    if threshold is not None:
        n += s.execute(delete(SpanRow).where(SpanRow.id <= threshold)).rowcount or 0
    return n


def of_component(s: Session, org: str, project: str, component: str, environment: str, since: datetime,
                 slow_ms: float | None, errors: bool, limit: int,
                 visible: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Traces with a span of the component since ``since``, newest first, with the filters applied to whole
    traces; spans of projects ``visible`` refuses are left out of each trace."""
    ids = list(s.scalars(
        select(SpanRow.trace_id).where(SpanRow.organization == org, SpanRow.project == project,
                                       SpanRow.component == component, SpanRow.environment == environment,
                                       SpanRow.start >= since)
        .group_by(SpanRow.trace_id).order_by(func.max(SpanRow.start).desc()).limit(CANDIDATES)))
    by_trace: dict[str, list[SpanRow]] = defaultdict(list)
    for start in range(0, len(ids), 500):
        for row in s.scalars(select(SpanRow).where(SpanRow.organization == org,
                                                   SpanRow.trace_id.in_(ids[start:start + 500]))):
            by_trace[row.trace_id].append(row)
    out = []
    for trace_id in ids:
        trace = view(by_trace.get(trace_id, []), visible)
        if trace is None:
            continue
        if slow_ms is not None and trace["durationMs"] < slow_ms:
            continue
        if errors and not trace["error"]:
            continue
        out.append(trace)
        if len(out) >= limit:
            break
    return out


def one(s: Session, org: str, trace_id: str, visible: Callable[[str], bool]) -> dict[str, Any] | None:
    """The trace with this id, or with the only id that starts with it (as access lines show them: 8 digits)."""
    if len(trace_id) < 32:
        ids = list(s.scalars(select(SpanRow.trace_id).where(SpanRow.organization == org,
                                                            SpanRow.trace_id.startswith(trace_id))
                             .distinct().limit(2)))
        if len(ids) > 1:
            raise ConflictError(f"several traces start with '{trace_id}'; give more of the id",
                                [FieldProblem("trace", "ambiguous")], code="ambiguous")
        if not ids:
            return None
        trace_id = ids[0]
    rows = list(s.scalars(select(SpanRow).where(SpanRow.organization == org, SpanRow.trace_id == trace_id)))
    return view(rows, visible)


def view(rows: list[SpanRow], visible: Callable[[str], bool]) -> dict[str, Any] | None:
    """A trace: its spans in tree order (depth first, children by start time), timed from its first span."""
    rows = [r for r in rows if visible(r.project)]
    if not rows:
        return None
    rows.sort(key=lambda r: (r.start, r.id))
    ids = {r.span_id for r in rows}
    children: dict[str | None, list[SpanRow]] = defaultdict(list)
    for r in rows:
        children[r.parent_id if r.parent_id in ids else None].append(r)
    if not children[None]:  # parents that point at each other: start from the first span
        children[None].append(rows[0])
    first = rows[0].start
    end = max(r.start.timestamp() + r.duration_ms / 1000 for r in rows)
    ordered: list[dict[str, Any]] = []
    shown: set[str] = set()

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            if r.span_id in shown:  # a span id used twice (or a cycle): shown once
                continue
            shown.add(r.span_id)
            ordered.append({"spanId": r.span_id, "parentId": r.parent_id, "project": r.project,
                            "component": r.component, "endpoint": r.endpoint, "listener": r.listener,
                            "name": r.name, "start": r.start.isoformat(),
                            "offsetMs": round((r.start - first).total_seconds() * 1000, 3),
                            "durationMs": r.duration_ms, "status": r.status, "consumer": r.consumer,
                            "depth": depth})
            walk(r.span_id, depth + 1)

    walk(None, 0)
    root = children[None][0]
    return {"traceId": root.trace_id, "start": first.isoformat(),
            "durationMs": round((end - first.timestamp()) * 1000, 3), "status": root.status,
            "error": any(r.status >= 500 for r in rows), "root": f"{root.project}/{root.component}",
            "name": root.name, "spans": ordered}


# -- OTLP export ----------------------------------------------------------------------------------------------------


class OtlpExport:
    """Spans handed to the OpenTelemetry SDK's batch processor and OTLP/HTTP exporter, as they are stored."""

    def __init__(self, endpoint: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.endpoint = endpoint
        self.processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=1000)

    def spans(self, org: str, spans: list[dict[str, Any]]) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        for x in spans:
            start = int(x["start"].timestamp() * 1e9)
            context = SpanContext(int(x["traceId"], 16), int(x["spanId"], 16), is_remote=False,
                                  trace_flags=TraceFlags(TraceFlags.SAMPLED))
            parent = (SpanContext(int(x["traceId"], 16), int(x["parentId"], 16), is_remote=True,
                                  trace_flags=TraceFlags(TraceFlags.SAMPLED)) if x.get("parentId") else None)
            resource = Resource.create({"service.name": x["component"], "service.namespace": x["project"],
                                        "deployment.environment": x["environment"], "cellplane.organization": org})
            attributes = {"http.response.status_code": x["status"], "cellplane.endpoint": x["endpoint"],
                          "cellplane.listener": x["listener"]}
            if x.get("consumer"):
                attributes["cellplane.consumer"] = x["consumer"]
            if x.get("requestId"):
                attributes["http.request.header.x-request-id"] = x["requestId"]
            status = Status(StatusCode.ERROR) if x["status"] >= 500 else Status(StatusCode.UNSET)
            self.processor.on_end(ReadableSpan(
                name=x["name"], context=context, parent=parent, resource=resource, attributes=attributes,
                kind=SpanKind.SERVER, status=status, start_time=start,
                end_time=start + int(x["durationMs"] * 1e6)))

    def close(self) -> None:
        self.processor.shutdown()
