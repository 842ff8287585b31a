"""The control plane's own metrics at ``GET /metrics`` (Prometheus text): API requests by route template,
method and status with their durations, and, read from the database at scrape time, builds by state,
deployments and the age of each data plane's last report. Tenant telemetry (what components do) is read
through the API, and scraped from each data plane's own endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellplane.controlplane import dataplanes
from cellplane.controlplane.platform import Platform
from cellplane.store.tables import BuildRow, DeploymentRow, ResourceRow


class SelfMetrics:
    def __init__(self, platform: Platform) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("cellplane_api_requests", "API requests answered.", ("method", "route", "code"),
                                registry=self.registry)
        self.duration = Histogram("cellplane_api_request_duration_seconds", "Time to answer an API request.",
                                  ("method", "route"), registry=self.registry)
        self.registry.register(_StoreCollector(platform))

    def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class Measured:
    """ASGI middleware: counts and times every HTTP request by its route template (never its raw path, so
    names in paths cannot grow the series)."""

    def __init__(self, app: ASGIApp, metrics: SelfMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.duration.labels(method, template).observe(time.perf_counter() - started)


class _StoreCollector(Collector):
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[Any]:
        builds = GaugeMetricFamily("cellplane_builds", "Builds kept, by state.", labels=["state"])
        deployments = GaugeMetricFamily("cellplane_deployments", "Deployments, by organization.",
                                        labels=["organization"])
        seen = GaugeMetricFamily("cellplane_dataplane_report_age_seconds",
                                 "Seconds since each data plane's agent last reported.",
                                 labels=["organization", "dataplane"])
        with self.platform.store.transaction() as s:
            for state, n in s.execute(select(BuildRow.state, func.count()).group_by(BuildRow.state)):
                builds.add_metric([state], n)
            for org, n in s.execute(select(DeploymentRow.organization, func.count())
                                    .group_by(DeploymentRow.organization)):
                deployments.add_metric([org], n)
            now = datetime.now(UTC)
            for row in s.scalars(select(ResourceRow).where(ResourceRow.kind == "DataPlane")):
                at = dataplanes.last_seen(row)
                if at is not None:
                    seen.add_metric([row.organization, row.name], (now - at).total_seconds())
        yield builds
        yield deployments
        yield seen
