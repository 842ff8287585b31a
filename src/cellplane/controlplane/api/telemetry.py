"""The data-plane agent's telemetry reports (docs/observability.md): gateway access lines, metric points and
spans. Like log lines, items of environments the data plane does not serve, or of components that do not
exist, are dropped; the answer says how many were kept."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field

from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.dataplanes import (
    AGENT,
    DATAPLANE,
    THE_DATAPLANE,
    Label,
    Recorded,
    Report,
    _cut,
    _plane,
    kept,
)
from cellplane.controlplane.api.declare import Call, raw
from cellplane.controlplane.api.deps import NamePath, parse
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.telemetry import metrics, traces
from cellplane.requestmetrics import BUCKETS

router = api_router(tags=["data plane agent"])
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Hex16 = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Consumer = Annotated[str, Field(max_length=127, pattern=r"^([a-z0-9-]+/[a-z0-9-]+)?$")]
MetricConsumer = Annotated[str, Field(max_length=127, pattern=r"^(@cell|[a-z0-9-]+/[a-z0-9-]+)?$",
                                      description='"project/component", "@cell" (through a cell) or ""')]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]


class AccessLine(Report):
    environment: Label
    project: Label
    component: Label
    endpoint: Label
    at: Recorded
    method: str = Field(min_length=1, max_length=16)
    path: Annotated[str, _cut(2048)]
    status: int = Field(ge=100, le=999)
    durationMs: float = Field(ge=0, le=1e12)
    bytesSent: int = Field(ge=0, le=schemas.JSON_SAFE_MAX)
    decision: Literal["allowed", "denied", "error", "unavailable", "no-route"]
    reason: Annotated[str, _cut(1024)] | None = None
    consumer: Consumer | None = None
    requestId: str | None = Field(default=None, max_length=100)
    traceId: Hex32 | None = None
    listener: str = Field(min_length=1, max_length=100)


class AccessBatch(Report):
    lines: list[AccessLine] = Field(max_length=5000)


class MetricPoint(Report):
    # What ``_complete`` checks, in the JSON schema: an http point has endpoint and buckets, a replica point replica.
    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"kind": {"const": "http"}}},
        "then": {"required": ["endpoint", "buckets"],
                 "properties": {"endpoint": {"type": "string"}, "buckets": {"type": "array"}}},
        "else": {"required": ["replica"], "properties": {"replica": {"type": "integer"}}}})
    kind: Literal["http", "replica"]
    environment: Label
    project: Label
    component: Label
    at: Recorded
    seconds: float = Field(gt=0, le=600)
    # http
    endpoint: Label | None = None
    consumer: MetricConsumer = ""
    requests: Count = 0
    errors: Count = 0
    clientErrors: Count = 0
    durationSum: float = Field(default=0.0, ge=0, le=1e12)
    buckets: list[Count] | None = Field(default=None, min_length=len(BUCKETS) + 1, max_length=len(BUCKETS) + 1)
    # replica
    replica: int | None = Field(default=None, ge=0, le=10000)
    release: str = Field(default="", max_length=40, description="the replica's release (rollout key)")
    cpu: float | None = Field(default=None, ge=0, le=1e6)
    memory: int | None = Field(default=None, ge=0, le=schemas.JSON_SAFE_MAX)
    restarts: Count = 0
    state: str = Field(default="", max_length=40)


def _complete(point: MetricPoint) -> MetricPoint:
    if point.kind == "http" and (point.endpoint is None or point.buckets is None):
        raise ValueError("an http point needs endpoint and buckets")
    if point.kind == "replica" and point.replica is None:
        raise ValueError("a replica point needs replica")
    return point


class MetricBatch(Report):
    points: list[Annotated[MetricPoint, AfterValidator(_complete)]] = Field(max_length=5000)


class Span(Report):
    traceId: Hex32
    spanId: Hex16
    parentId: Hex16 | None = None
    environment: Label
    project: Label
    component: Label
    endpoint: Label
    listener: Literal["external", "internal", "cell"]
    name: Annotated[str, _cut(512)]
    start: Recorded
    durationMs: float = Field(ge=0, le=1e12)
    status: int = Field(ge=100, le=999)
    consumer: Consumer | None = None
    requestId: str | None = Field(default=None, max_length=100)


class SpanBatch(Report):
    spans: list[Span] = Field(max_length=5000)


@router.mutation("POST", DATAPLANE + "/access-logs", AGENT, THE_DATAPLANE,
                 body=raw(AccessBatch, "at most 5000 access lines"),
                 response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_access(c: Call[Any], org: NamePath, name: NamePath) -> dict[str, int]:
    """Gateway access lines of routed requests."""
    p, who, body = c.platform, c.who, c.body
    with p.store.transaction() as s:
        plane = _plane(s, who, org, name)
        lines = kept(s, org, plane, parse(AccessBatch, body, "access-log batch").lines)
    return {"accepted": p.logs.append_access(org, [x.model_dump() for x in lines])}


@router.mutation("POST", DATAPLANE + "/metrics", AGENT, THE_DATAPLANE, body=raw(MetricBatch, "at most 5000 points"),
                 response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_metrics(c: Call[Any], org: NamePath, name: NamePath) -> dict[str, int]:
    """One point per series and window: requests per endpoint and consumer, resources per replica."""
    p, who, body = c.platform, c.who, c.body
    with p.store.transaction() as s:
        plane = _plane(s, who, org, name)
        points = kept(s, org, plane, parse(MetricBatch, body, "metric batch").points)
        return {"accepted": metrics.ingest(s, org, [x.model_dump() for x in points])}


@router.mutation("POST", DATAPLANE + "/spans", AGENT, THE_DATAPLANE, body=raw(SpanBatch, "at most 5000 spans"),
                 response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_spans(c: Call[Any], org: NamePath, name: NamePath) -> dict[str, int]:
    """Spans the gateways recorded; exported over OTLP too when the control plane has a collector."""
    p, who, body = c.platform, c.who, c.body
    with p.store.transaction() as s:
        plane = _plane(s, who, org, name)
        spans: list[Any] = [x.model_dump() for x in kept(s, org, plane, parse(SpanBatch, body, "span batch").spans)]
        accepted = traces.ingest(s, org, spans)
    if p.otlp is not None and spans:
        p.otlp.spans(org, spans)
    return {"accepted": accepted}
