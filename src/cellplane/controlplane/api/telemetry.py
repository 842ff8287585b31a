"""The data-plane agent's telemetry reports (docs/observability.md): gateway access lines, metric points and
spans. Like log lines, items of environments the data plane does not serve, or of components that do not
exist, are dropped; the answer says how many were kept. The bodies are the contract's (``cellplane.contract``)."""

from __future__ import annotations

from typing import Any

from cellplane.contract.telemetry import AccessBatch, MetricBatch, SpanBatch
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.dataplanes import AGENT, DATAPLANE, THE_DATAPLANE, _plane, kept
from cellplane.controlplane.api.declare import Call, raw
from cellplane.controlplane.api.deps import NamePath, parse
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.telemetry import metrics, traces

router = api_router(tags=["data plane agent"])


@router.mutation("POST", DATAPLANE + "/access-logs", AGENT, THE_DATAPLANE,
                 body=raw(AccessBatch, "at most 5000 access lines"),
                 response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_access(c: Call[Any], org: NamePath, name: NamePath) -> dict[str, int]:
    """Gateway access lines of routed requests."""
    p, who, body = c.platform, c.who, c.body
    with p.store.transaction() as s:
        plane = _plane(s, who, org, name)
        lines = kept(s, org, plane, parse(AccessBatch, body, "access-log batch").lines)
    return {"accepted": p.logs.append_access(org, lines)}


@router.mutation("POST", DATAPLANE + "/metrics", AGENT, THE_DATAPLANE, body=raw(MetricBatch, "at most 5000 points"),
                 response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_metrics(c: Call[Any], org: NamePath, name: NamePath) -> dict[str, int]:
    """One point per series and window: requests per endpoint and consumer, resources per replica."""
    p, who, body = c.platform, c.who, c.body
    with p.store.transaction() as s:
        plane = _plane(s, who, org, name)
        points = kept(s, org, plane, parse(MetricBatch, body, "metric batch").points)
        return {"accepted": metrics.ingest(s, org, points)}


@router.mutation("POST", DATAPLANE + "/spans", AGENT, THE_DATAPLANE, body=raw(SpanBatch, "at most 5000 spans"),
                 response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_spans(c: Call[Any], org: NamePath, name: NamePath) -> dict[str, int]:
    """Spans the gateways recorded; exported over OTLP too when the control plane has a collector."""
    p, who, body = c.platform, c.who, c.body
    with p.store.transaction() as s:
        plane = _plane(s, who, org, name)
        spans = kept(s, org, plane, parse(SpanBatch, body, "span batch").spans)
        accepted = traces.ingest(s, org, spans)
    if p.otlp is not None and spans:
        p.otlp.spans(org, spans)
    return {"accepted": accepted}
