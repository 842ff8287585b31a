"""The data-plane agent's telemetry reports (docs/observability.md): gateway access lines, metric points and
spans. Like log lines, items of environments the data plane does not serve, or of components that do not
exist, are dropped; the answer says how many were kept. The bodies are the contract's (``cellplane.contract``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request

from cellplane.contract.telemetry import AccessBatch, MetricBatch, SpanBatch
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.dataplanes import DATAPLANE, _body, _plane, kept
from cellplane.controlplane.api.deps import Caller, NamePath, parse, platform
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.rbac import Principal
from cellplane.controlplane.telemetry import metrics, traces

router = api_router(tags=["data plane agent"])

if TYPE_CHECKING:  # a documented body is parsed as a JSON object (see ``schemas.documented``)
    AccessBody = dict[str, Any]
    MetricsBody = dict[str, Any]
    SpansBody = dict[str, Any]
else:
    AccessBody = _body(AccessBatch, "at most 5000 access lines")
    MetricsBody = _body(MetricBatch, "at most 5000 points")
    SpansBody = _body(SpanBatch, "at most 5000 spans")


@router.post(DATAPLANE + "/access-logs", response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_access(request: Request, org: NamePath, name: NamePath, body: AccessBody,
                  who: Principal = Caller) -> dict[str, int]:
    """Gateway access lines of routed requests."""
    p = platform(request)
    with p.store.transaction() as s:
        plane = _plane(s, who, org, name)
        lines = kept(s, org, plane, parse(AccessBatch, body, "access-log batch").lines)
    return {"accepted": p.logs.append_access(org, lines)}


@router.post(DATAPLANE + "/metrics", response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_metrics(request: Request, org: NamePath, name: NamePath, body: MetricsBody,
                   who: Principal = Caller) -> dict[str, int]:
    """One point per series and window: requests per endpoint and consumer, resources per replica."""
    p = platform(request)
    with p.store.transaction() as s:
        plane = _plane(s, who, org, name)
        points = kept(s, org, plane, parse(MetricBatch, body, "metric batch").points)
        return {"accepted": metrics.ingest(s, org, points)}


@router.post(DATAPLANE + "/spans", response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_spans(request: Request, org: NamePath, name: NamePath, body: SpansBody,
                 who: Principal = Caller) -> dict[str, int]:
    """Spans the gateways recorded; exported over OTLP too when the control plane has a collector."""
    p = platform(request)
    with p.store.transaction() as s:
        plane = _plane(s, who, org, name)
        spans = kept(s, org, plane, parse(SpanBatch, body, "span batch").spans)
        accepted = traces.ingest(s, org, spans)
    if p.otlp is not None and spans:
        p.otlp.spans(org, spans)
    return {"accepted": accepted}
