"""The control plane's telemetry housekeeping: alert evaluation every few seconds, and every minute the
retention of logs, access logs and spans, the downsampling and retention of metric points, and the removal of
expired console sessions.

Every replica of the control plane runs it. Deleting what is old is idempotent; raw points are merged by
one replica at a time (locked rows are skipped, and a merge that finds its rows gone rolls back); rules are
evaluated one transaction each, under a row lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx

from cellplane.controlplane import identity
from cellplane.controlplane.platform import Platform
from cellplane.controlplane.telemetry import alerts, logs, metrics, traces
from cellplane.store.tables import now

log = logging.getLogger("cellplane.telemetry")


@dataclass
class TelemetrySettings:
    """How long telemetry is kept (seconds) and how often rules are evaluated."""

    alert_interval: float = 5.0
    retention_interval: float = 60.0
    log_retention: float = 7 * 86400.0  # workload and access log lines
    trace_retention: float = 2 * 86400.0
    metric_retention: float = 30 * 86400.0
    raw_metric_retention: float = 86400.0  # then merged into five-minute points
    otlp_endpoint: str | None = None  # an OpenTelemetry collector's OTLP/HTTP traces URL


def enforce_retention(p: Platform, settings: TelemetrySettings) -> dict[str, int]:
    """Delete what is older than the retention periods and downsample old metric points; counts per kind."""
    at = now()
    done = {}
    with p.store.transaction() as s:
        done["logs"] = logs.expire(s, at - timedelta(seconds=settings.log_retention))
        done["spans"] = traces.expire(s, at - timedelta(seconds=settings.trace_retention))
        done["metrics"] = metrics.expire(s, at - timedelta(seconds=settings.metric_retention))
        done["alert events"] = alerts.expire(s, at - timedelta(seconds=settings.metric_retention))
        done["sessions"] = identity.expire_sessions(s, at)
    merged = 0
    while True:
        with p.store.transaction() as s:
            n = metrics.downsample(s, at - timedelta(seconds=settings.raw_metric_retention))
        merged += n
        if n < 20000:
            break
    done["downsampled"] = merged
    return done


class TelemetryLoop:
    def __init__(self, p: Platform, settings: TelemetrySettings) -> None:
        self.platform = p
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telemetry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last_retention = 0.0
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            while True:
                try:
                    await alerts.tick(self.platform, client)
                except Exception:
                    log.exception("alert evaluation failed; trying again in %gs", self.settings.alert_interval)
                if time.monotonic() - last_retention >= self.settings.retention_interval:
                    last_retention = time.monotonic()
                    try:
                        done = await asyncio.to_thread(enforce_retention, self.platform, self.settings)
                        if any(done.values()):
                            log.info("telemetry retention: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
                    except Exception:
                        log.exception("telemetry retention failed; trying again in %gs",
                                      self.settings.retention_interval)
                await asyncio.sleep(self.settings.alert_interval)
