"""What an agent ships to the control plane besides its status: workload output and its deployments' events
(``POST …/logs``; events are lines of the ``system`` stream), the gateways' access lines (``POST …/access-logs``),
metric points (``POST …/metrics``) and spans (``POST …/spans``), at most 5000 items a call (docs/dataplane.md,
docs/observability.md).

The control plane parses each batch with these models at the route (a 422 with field paths when malformed) and
stores the items of environments the data plane serves. Times are ISO 8601 text, never more than an hour ahead
(``Recorded``); long texts are cut. An http metric point counts latencies in ``requestmetrics.BUCKETS`` (plus
+Inf). Cost: pydantic's validation, about 35 ms for a full batch of 5000 log lines (busy 2-core machine).

Each item's times are its type parameter (``wire.When``), so that both planes use one definition of its keys: the
control plane's models (``LogLineReport``, ``AccessLine``, ``MetricPoint``, ``Span``) read them as datetimes, the
agent's (``LogLineSent``, ``AccessLineSent``, ``MetricPointSent``, ``SpanSent``) keep the ISO 8601 text it wrote, so
that what it sends is the JSON it sent when these were dicts. Building one costs 5 to 10 µs (its dict: 1.5 to 3).
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal

from pydantic import AfterValidator, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from cellplane.contract.requestmetrics import BUCKETS
from cellplane.contract.wire import (
    JSON_SAFE_MAX,
    MAX_LOG_LINE,
    InstantText,
    Label,
    LogStream,
    Recorded,
    Report,
    When,
    cut,
)

Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Hex16 = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Consumer = Annotated[str, Field(max_length=127, pattern=r"^([a-z0-9-]+/[a-z0-9-]+)?$")]
MetricConsumer = Annotated[str, Field(max_length=127, pattern=r"^(@cell|[a-z0-9-]+/[a-z0-9-]+)?$",
                                      description='"project/component", "@cell" (through a cell) or ""')]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]


# The generic bases carry no docstring: it would be their models' description in the OpenAPI document.
class LogLineOf(Report, Generic[When]):
    deployment: str | None = Field(default=None, max_length=20)
    run: str | None = Field(default=None, max_length=20)
    environment: Label
    project: Label
    component: Label
    replica: int | None = Field(default=None, ge=0, le=10000)
    stream: LogStream
    at: When
    line: Annotated[str, cut(MAX_LOG_LINE)]


class LogLineReport(LogLineOf[Recorded]):
    pass


class LogLineSent(LogLineOf[InstantText]):
    pass


class LogBatch(Report):
    lines: list[LogLineReport] = Field(max_length=5000)


class AccessLineOf(Report, Generic[When]):
    environment: Label
    project: Label
    component: Label
    endpoint: Label
    at: When
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


class AccessLine(AccessLineOf[Recorded]):
    pass


class AccessLineSent(AccessLineOf[InstantText]):
    pass


class AccessBatch(Report):
    lines: list[AccessLine] = Field(max_length=5000)


class MetricPointOf(Report, Generic[When]):
    kind: Literal["http", "replica", "scaling"]
    environment: Label
    project: Label
    component: Label
    at: When
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
    # scaling (an autoscaled deployment, once per window)
    replicas: int | None = Field(default=None, ge=0, le=10000, description="replicas running at the window's end")
    desiredReplicas: int | None = Field(default=None, ge=0, le=10000)
    coldStarts: Count = Field(default=0, description="wake-ups from zero that ended in the window")
    coldStartSeconds: float = Field(default=0.0, ge=0, le=1e9, description="their summed duration")


class MetricPoint(MetricPointOf[Recorded]):
    # What ``_complete`` checks, in the JSON schema: an http point has endpoint and buckets, a replica point replica,
    # a scaling point replicas.
    model_config = ConfigDict(json_schema_extra={"allOf": [
        {"if": {"properties": {"kind": {"const": "http"}}},
         "then": {"required": ["endpoint", "buckets"],
                  "properties": {"endpoint": {"type": "string"}, "buckets": {"type": "array"}}}},
        {"if": {"properties": {"kind": {"const": "replica"}}},
         "then": {"required": ["replica"], "properties": {"replica": {"type": "integer"}}}},
        {"if": {"properties": {"kind": {"const": "scaling"}}},
         "then": {"required": ["replicas"], "properties": {"replicas": {"type": "integer"}}}}]})


# The keys of each kind of point in the order the agent has always sent them (the model's order is the schema's).
POINT_KEYS = {
    "http": ("kind", "environment", "project", "component", "endpoint", "consumer", "at", "seconds", "requests",
             "errors", "clientErrors", "durationSum", "buckets"),
    "replica": ("kind", "environment", "project", "component", "release", "replica", "at", "seconds", "cpu",
                "memory", "restarts", "state"),
    "scaling": ("kind", "environment", "project", "component", "at", "seconds", "replicas", "desiredReplicas",
                "coldStarts", "coldStartSeconds"),
}


class MetricPointSent(MetricPointOf[InstantText]):
    """A point as the agent sends it: the keys of its kind (``POINT_KEYS``), in that order."""

    @model_serializer(mode="wrap")
    def _keys_of_its_kind(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: data[key] for key in POINT_KEYS[self.kind] if key in data}


def _complete(point: MetricPoint) -> MetricPoint:
    if point.kind == "http" and (point.endpoint is None or point.buckets is None):
        raise ValueError("an http point needs endpoint and buckets")
    if point.kind == "replica" and point.replica is None:
        raise ValueError("a replica point needs replica")
    if point.kind == "scaling" and point.replicas is None:
        raise ValueError("a scaling point needs replicas")
    return point


class MetricBatch(Report):
    points: list[Annotated[MetricPoint, AfterValidator(_complete)]] = Field(max_length=5000)


class SpanOf(Report, Generic[When]):
    traceId: Hex32
    spanId: Hex16
    parentId: Hex16 | None = None
    environment: Label
    project: Label
    component: Label
    endpoint: Label
    listener: Literal["external", "internal", "cell"]
    name: Annotated[str, cut(512)]
    start: When
    durationMs: float = Field(ge=0, le=1e12)
    status: int = Field(ge=100, le=999)
    consumer: Consumer | None = None
    requestId: str | None = Field(default=None, max_length=100)


class Span(SpanOf[Recorded]):
    pass


class SpanSent(SpanOf[InstantText]):
    pass


class SpanBatch(Report):
    spans: list[Span] = Field(max_length=5000)
