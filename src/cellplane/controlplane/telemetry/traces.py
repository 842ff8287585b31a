"""Spans of requests through the gateways, joined into traces by their W3C trace id.

A data plane's gateways record one span per proxied request (the hop into a component); a component that
forwards ``traceparent`` on its own calls joins the next hop to the same trace. Traces are read by
component (those with a span of it) and exported, when an operator gives a collector, over OTLP/HTTP with
the OpenTelemetry SDK's exporter.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from cellplane.contract.telemetry import Span
from cellplane.errors import ConflictError, FieldProblem
from cellplane.store import in_chunks, rowcount
from cellplane.store.tables import SpanRow

log = logging.getLogger("cellplane.telemetry")
MAX_SPANS = 500_000  # kept in all; the oldest go first
CANDIDATES = 1000  # traces looked at per query
MAX_TRACE_SPANS = 1000  # spans shown per trace (a client that sends one traceparent always makes one huge trace)
# Whether the caller may see a span of (project, environment): a trace crosses projects, and may cross
# environments, and each caller sees only the hops its role bindings reach.
Visible = Callable[[str, str], bool]


def ingest(s: Session, org: str, spans: Sequence[Span]) -> int:
    """Store validated spans (the contract's ``Span``)."""
    rows = [{"trace_id": x.traceId, "span_id": x.spanId, "parent_id": x.parentId, "organization": org,
             "project": x.project, "component": x.component, "environment": x.environment,
             "endpoint": x.endpoint, "listener": x.listener, "name": x.name[:512], "start": x.start,
             "duration_ms": x.durationMs, "status": x.status, "consumer": x.consumer,
             "request_id": x.requestId} for x in spans]
    if rows:
        s.execute(insert(SpanRow), rows)
    return len(rows)


def expire(s: Session, before: datetime, bound: int = MAX_SPANS) -> int:
    """Delete spans that started before ``before``, and the oldest beyond ``bound``."""
    n = rowcount(s.execute(delete(SpanRow).where(SpanRow.start < before))) or 0
    threshold = s.scalar(select(SpanRow.id).order_by(SpanRow.id.desc()).offset(bound).limit(1))
    if threshold is not None:
        n += rowcount(s.execute(delete(SpanRow).where(SpanRow.id <= threshold))) or 0
    return n


def of_component(s: Session, org: str, project: str, component: str, environment: str, since: datetime,
                 slow_ms: float | None, errors: bool, limit: int,
                 visible: Visible) -> list[dict[str, Any]]:
    """Traces with a span of the component since ``since``, newest first, with the filters applied to whole
    traces; spans ``visible`` refuses (by project and environment) are left out of each trace."""
    ids = list(s.scalars(
        select(SpanRow.trace_id).where(SpanRow.organization == org, SpanRow.project == project,
                                       SpanRow.component == component, SpanRow.environment == environment,
                                       SpanRow.start >= since)
        .group_by(SpanRow.trace_id).order_by(func.max(SpanRow.start).desc()).limit(CANDIDATES)))
    by_trace: dict[str, list[SpanRow]] = defaultdict(list)
    for chunk in in_chunks(ids):
        for row in s.scalars(select(SpanRow).where(SpanRow.organization == org, SpanRow.trace_id.in_(chunk))):
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


def one(s: Session, org: str, trace_id: str, visible: Visible) -> dict[str, Any] | None:
    """The trace with this id, or with the only id that starts with it (as access lines show them: 8 digits),
    among the traces with a span the caller may see."""
    if len(trace_id) < 32:
        found = s.execute(select(SpanRow.trace_id, SpanRow.project, SpanRow.environment).where(
            SpanRow.organization == org, SpanRow.trace_id.startswith(trace_id)).distinct().limit(1000)).all()
        ids = sorted({t for t, project, environment in found if visible(project, environment)})
        if len(ids) > 1:
            raise ConflictError(f"several traces start with '{trace_id}'; give more of the id",
                                [FieldProblem("trace", "ambiguous")], code="ambiguous")
        if not ids:
            return None
        trace_id = ids[0]
    rows = list(s.scalars(select(SpanRow).where(SpanRow.organization == org, SpanRow.trace_id == trace_id)
                          .order_by(SpanRow.start).limit(MAX_TRACE_SPANS + 1)))
    return view(rows, visible)


def _end(r: SpanRow) -> float:
    return r.start.timestamp() + r.duration_ms / 1000


def _adopter(r: SpanRow, rows: list[SpanRow]) -> SpanRow | None:
    """The span an orphan most likely ran under: one that encloses it in time, preferring its caller's (the
    consumer that the gateway named, or a component of its project when it came through the cell).

    An orphan's parent is a span the gateway did not record: a component's own client span, as OpenTelemetry
    instrumentation makes them."""
    enclosing = [c for c in rows if c is not r and c.start <= r.start and _end(c) >= _end(r)]
    if not enclosing:
        return None

    def rank(c: SpanRow) -> tuple[bool, float]:
        caller = f"{c.project}/{c.component}" == r.consumer or (r.listener == "cell" and c.project == r.project)
        return caller, c.start.timestamp()

    return max(enclosing, key=rank)


def view(rows: list[SpanRow], visible: Visible) -> dict[str, Any] | None:
    """A trace: its spans in tree order (depth first, children by start time), timed from its first span.

    Only the spans ``visible`` allows are in it (the caller's view). A span whose recorded parent is not among
    them hangs under the span that encloses it (``parentInferred``); at most ``MAX_TRACE_SPANS`` spans are shown
    (``truncated``)."""
    rows = sorted((r for r in rows if visible(r.project, r.environment)), key=lambda r: (r.start, r.id))
    if not rows:
        return None
    truncated = len(rows) > MAX_TRACE_SPANS
    rows = rows[:MAX_TRACE_SPANS]
    by_id = {r.span_id: r for r in rows}
    parent_of: dict[int, str | None] = {}
    inferred: set[int] = set()
    for r in rows:
        parent = r.parent_id if r.parent_id in by_id and r.parent_id != r.span_id else None
        if parent is None and r is not rows[0]:
            adopter = _adopter(r, rows)
            if adopter is not None:
                parent = adopter.span_id
                inferred.add(r.id)
        parent_of[r.id] = parent
    children: dict[str | None, list[SpanRow]] = defaultdict(list)
    for r in rows:
        children[parent_of[r.id]].append(r)
    if not children[None]:  # parents that point at each other: start from the first span
        children[None].append(rows[0])
    first = rows[0].start
    ordered: list[dict[str, Any]] = []
    shown: set[str] = set()
    stack: list[tuple[SpanRow, int]] = [(r, 0) for r in reversed(children[None])]
    while stack:  # depth first, without recursion (a trace may be deep)
        r, depth = stack.pop()
        if r.span_id in shown:  # a span id used twice (or a cycle): shown once
            continue
        shown.add(r.span_id)
        ordered.append({"spanId": r.span_id, "parentId": r.parent_id, "parentInferred": r.id in inferred,
                        "project": r.project, "component": r.component, "endpoint": r.endpoint,
                        "listener": r.listener, "name": r.name, "start": r.start.isoformat(),
                        "offsetMs": round((r.start - first).total_seconds() * 1000, 3),
                        "durationMs": r.duration_ms, "status": r.status, "consumer": r.consumer, "depth": depth})
        stack.extend((c, depth + 1) for c in reversed(children.get(r.span_id, [])))
    root = children[None][0]
    end = max(_end(r) for r in rows)
    return {"traceId": root.trace_id, "start": first.isoformat(),
            "durationMs": round((end - first.timestamp()) * 1000, 3), "status": root.status,
            "error": any(r.status >= 500 for r in rows), "root": f"{root.project}/{root.component}",
            "name": root.name, "truncated": truncated, "spans": ordered}


# -- OTLP export ----------------------------------------------------------------------------------------------------


class OtlpExport:
    """Spans handed to the OpenTelemetry SDK's batch processor and OTLP/HTTP exporter, as they are stored."""

    def __init__(self, endpoint: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.endpoint = endpoint
        # a queue that holds a few full batches from the data planes; past it the SDK drops (and logs) spans
        self.processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), max_queue_size=50_000,
                                            max_export_batch_size=1000, schedule_delay_millis=1000)
        self._resources: dict[tuple[str, str, str, str], Any] = {}

    def _resource(self, org: str, project: str, component: str, environment: str) -> Any:
        from opentelemetry.sdk.resources import Resource

        key = (org, project, component, environment)
        resource = self._resources.get(key)
        if resource is None:
            if len(self._resources) > 10_000:
                self._resources.clear()
            resource = self._resources[key] = Resource({
                "service.name": component, "service.namespace": project, "deployment.environment": environment,
                "cellplane.organization": org})
        return resource

    def spans(self, org: str, spans: Sequence[Span]) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        for x in spans:
            start = int(x.start.timestamp() * 1e9)
            context = SpanContext(int(x.traceId, 16), int(x.spanId, 16), is_remote=False,
                                  trace_flags=TraceFlags(TraceFlags.SAMPLED))
            parent = (SpanContext(int(x.traceId, 16), int(x.parentId, 16), is_remote=True,
                                  trace_flags=TraceFlags(TraceFlags.SAMPLED)) if x.parentId else None)
            resource = self._resource(org, x.project, x.component, x.environment)
            attributes: dict[str, str | int] = {"http.response.status_code": x.status,
                                                "cellplane.endpoint": x.endpoint, "cellplane.listener": x.listener}
            if x.consumer:
                attributes["cellplane.consumer"] = x.consumer
            if x.requestId:
                attributes["http.request.header.x-request-id"] = x.requestId
            status = Status(StatusCode.ERROR) if x.status >= 500 else Status(StatusCode.UNSET)
            self.processor.on_end(ReadableSpan(
                name=x.name, context=context, parent=parent, resource=resource, attributes=attributes,
                kind=SpanKind.SERVER, status=status, start_time=start,
                end_time=start + int(x.durationMs * 1e6)))

    def close(self) -> None:
        self.processor.shutdown()
