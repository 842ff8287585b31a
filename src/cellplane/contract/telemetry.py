"""What an agent ships to the control plane besides its status: workload output and its deployments' events
(``POST …/logs``; events are lines of the ``system`` stream), the gateways' access lines (``POST …/access-logs``),
metric points (``POST …/metrics``) and spans (``POST …/spans``), at most 5000 items a call (docs/dataplane.md,
docs/observability.md).

The control plane parses each batch with these models at the route (a 422 with field paths when malformed) and
stores the items of environments the data plane serves. Times are ISO 8601 text, never more than an hour ahead
(``Recorded``); long texts are cut. An http metric point counts latencies in ``requestmetrics.BUCKETS`` (plus
+Inf). Cost: pydantic's validation, about 35 ms for a full batch of 5000 log lines (busy 2-core machine).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field

from cellplane.contract.requestmetrics import BUCKETS
from cellplane.contract.wire import JSON_SAFE_MAX, MAX_LOG_LINE, Label, LogStream, Recorded, Report, cut

Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Hex16 = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Consumer = Annotated[str, Field(max_length=127, pattern=r"^([a-z0-9-]+/[a-z0-9-]+)?$")]
MetricConsumer = Annotated[str, Field(max_length=127, pattern=r"^(@cell|[a-z0-9-]+/[a-z0-9-]+)?$",
                                      description='"project/component", "@cell" (through a cell) or ""')]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]


class LogLineReport(Report):
    deployment: str | None = Field(default=None, max_length=20)
    run: str | None = Field(default=None, max_length=20)
    environment: Label
    project: Label
    component: Label
    replica: int | None = Field(default=None, ge=0, le=10000)
    stream: LogStream
    at: Recorded
    line: Annotated[str, cut(MAX_LOG_LINE)]


class LogBatch(Report):
    lines: list[LogLineReport] = Field(max_length=5000)


class AccessLine(Report):
    environment: Label
    project: Label
    component: Label
    endpoint: Label
    at: Recorded
    method: str = Field(min_length=1, max_length=16)
    path: Annotated[str, cut(2048)]
    status: int = Field(ge=100, le=999)
    durationMs: float = Field(ge=0, le=1e12)
    bytesSent: int = Field(ge=0, le=JSON_SAFE_MAX)
    decision: Literal["allowed", "denied", "error", "unavailable", "no-route"]
    reason: Annotated[str, cut(1024)] | None = None
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
    memory: int | None = Field(default=None, ge=0, le=JSON_SAFE_MAX)
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
    name: Annotated[str, cut(512)]
    start: Recorded
    durationMs: float = Field(ge=0, le=1e12)
    status: int = Field(ge=100, le=999)
    consumer: Consumer | None = None
    requestId: str | None = Field(default=None, max_length=100)


class SpanBatch(Report):
    spans: list[Span] = Field(max_length=5000)
