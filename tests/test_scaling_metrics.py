"""Scaling metric points (kind "scaling": an autoscaled deployment's replicas and its cold starts) stored and served
as a series: on SQLite and PostgreSQL, through downsampling, and ingested through the data plane's API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cellplane.contract.telemetry import MetricPoint
from cellplane.controlplane.telemetry import metrics
from cellplane.store import Store
from cellplane.store.tables import MetricPointRow

KEY = {"project": "p", "component": "c", "environment": "dev"}
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def scaling_point(at: datetime, replicas: int, desired: int, cold: int = 0, cold_seconds: float = 0.0) -> MetricPoint:
    return MetricPoint.model_validate({"kind": "scaling", **KEY, "at": at, "seconds": 10.0, "replicas": replicas,
                                       "desiredReplicas": desired, "coldStarts": cold,
                                       "coldStartSeconds": cold_seconds})


def view(store: Store, start: datetime, end: datetime, step: int) -> dict[str, Any]:
    with store.transaction() as s:
        return metrics.component_view(s, "o", "p", "c", "dev", start, end, step)


def test_scaling_points_give_replicas_over_time_and_cold_starts(store: Store) -> None:
    with store.transaction() as s:
        assert metrics.ingest(s, "o", [
            scaling_point(BASE, 0, 0),
            scaling_point(BASE + timedelta(seconds=60), 1, 1, cold=2, cold_seconds=0.9),
            scaling_point(BASE + timedelta(seconds=70), 3, 4),
            scaling_point(BASE + timedelta(seconds=130), 2, 2, cold=1, cold_seconds=0.7)]) == 4
    shown = view(store, BASE, BASE + timedelta(seconds=180), 60)
    assert [(p.get("replicas"), p.get("desiredReplicas"), p.get("coldStarts")) for p in shown["series"]] == [
        (0, 0, 0), (3, 4, 2), (2, 2, 1)]
    assert shown["scaling"] == {"replicas": 2, "desiredReplicas": 2, "coldStarts": 3,
                                "coldStartMeanSeconds": 0.5333, "coldStartMaxSeconds": 0.7}
    assert shown["replicas"] == [] and shown["summary"]["restarts"] == 0  # not mistaken for replica points
    assert view(store, BASE - timedelta(hours=2), BASE - timedelta(hours=1), 600)["scaling"] is None


def test_downsampling_keeps_the_last_replicas_and_every_cold_start(store: Store) -> None:
    base = BASE + timedelta(days=1)
    with store.transaction() as s:
        metrics.ingest(s, "o", [scaling_point(base + timedelta(seconds=10 * i), i % 4, 3, cold=1 if i % 10 == 0
                                              else 0, cold_seconds=0.5 if i % 10 == 0 else 0.0)
                                for i in range(60)])
    before = view(store, base, base + timedelta(hours=1), 600)
    with store.transaction() as s:
        assert metrics.downsample(s, base + timedelta(minutes=12)) == 60
    with store.transaction() as s:
        rows = s.query(MetricPointRow).order_by(MetricPointRow.at).all()
        assert [(r.kind, r.resolution, r.replicas, r.cold_starts) for r in rows] == [
            ("scaling", 300, 29 % 4, 3), ("scaling", 300, 59 % 4, 3)]
    after = view(store, base, base + timedelta(hours=1), 600)
    assert after["scaling"]["coldStarts"] == before["scaling"]["coldStarts"] == 6
    assert after["scaling"]["coldStartMeanSeconds"] == pytest.approx(0.5)
    assert after["scaling"]["replicas"] == before["scaling"]["replicas"] == 59 % 4
