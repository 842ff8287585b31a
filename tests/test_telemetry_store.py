"""Telemetry storage on real SQLite and PostgreSQL: percentiles from summed histograms, downsampling that
keeps every count, retention by age, and traces assembled from their spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cellplane.contract.requestmetrics import BUCKETS
from cellplane.contract.telemetry import LogLineReport, MetricPoint, Span
from cellplane.controlplane.telemetry import durations, logs, metrics, traces
from cellplane.errors import InvalidError
from cellplane.store import Store
from cellplane.store.tables import MetricPointRow, SpanRow

KEY = {"project": "p", "component": "c", "environment": "dev"}


def http_point(at: datetime, requests: int, errors: int = 0, bucket: int = 0, endpoint: str = "api",
               consumer: str = "") -> MetricPoint:
    buckets = [0] * (len(BUCKETS) + 1)
    buckets[bucket] = requests
    return MetricPoint.model_validate({
        "kind": "http", **KEY, "endpoint": endpoint, "consumer": consumer, "at": at, "seconds": 10.0,
        "requests": requests, "errors": errors, "clientErrors": 0, "durationSum": requests * BUCKETS[bucket],
        "buckets": buckets})


def replica_point(at: datetime, cpu: float, memory: int, restarts: int = 0) -> MetricPoint:
    return MetricPoint.model_validate({"kind": "replica", **KEY, "replica": 0, "at": at, "seconds": 10.0, "cpu": cpu,
                                       "memory": memory, "restarts": restarts})


def test_percentiles_interpolate_inside_the_bucket() -> None:
    t = metrics.Totals()
    t.buckets[3] = 100  # all between 5 ms and 10 ms
    assert t.quantile_ms(0.5) == pytest.approx(7.5)
    assert t.quantile_ms(0.99) == pytest.approx(9.95)
    t.buckets[-1] = 900  # most beyond the last bound: the last bound is the answer
    assert t.quantile_ms(0.99) == BUCKETS[-1] * 1000
    assert metrics.Totals().quantile_ms(0.5) is None


def test_downsampling_keeps_counts_and_histograms(store: Store) -> None:
    base = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    with store.transaction() as s:
        metrics.ingest(s, "o", [http_point(base + timedelta(seconds=10 * i), 10, errors=i % 2, bucket=2)
                                for i in range(60)]  # ten minutes: two rollups
                       + [replica_point(base + timedelta(seconds=10 * i), cpu=10.0 * (i % 3), memory=1000 + i,
                                        restarts=1 if i == 5 else 0) for i in range(60)]
                       + [http_point(base + timedelta(minutes=30), 4)])  # newer than the cutoff: stays raw
    before = with_view(store, base, base + timedelta(hours=1))
    with store.transaction() as s:
        assert metrics.downsample(s, base + timedelta(minutes=12)) == 120
        assert metrics.downsample(s, base + timedelta(minutes=12)) == 0  # nothing raw is left there
    with store.transaction() as s:
        rows = s.query(MetricPointRow).order_by(MetricPointRow.kind, MetricPointRow.at).all()
        assert [(r.kind, r.resolution, r.requests) for r in rows] == [
            ("http", 300, 300), ("http", 300, 300), ("http", 0, 4), ("replica", 300, 0), ("replica", 300, 0)]
        assert [r.memory for r in rows if r.kind == "replica"] == [1029, 1059]
        assert rows[3].cpu == pytest.approx(10.0)
    after = with_view(store, base, base + timedelta(hours=1))
    for key in ("requests", "errors", "p50Ms", "p99Ms", "restarts"):
        assert after["summary"][key] == before["summary"][key], key
    assert after["summary"]["requests"] == 604


def with_view(store: Store, start: datetime, end: datetime) -> dict[str, Any]:
    with store.transaction() as s:
        return metrics.component_view(s, "o", "p", "c", "dev", start, end, 600)


def test_series_steps_are_zero_filled_and_replicas_summed(store: Store) -> None:
    base = datetime(2026, 1, 2, tzinfo=UTC)
    with store.transaction() as s:
        metrics.ingest(s, "o", [http_point(base, 5, errors=1), http_point(base + timedelta(seconds=120), 3),
                                replica_point(base + timedelta(seconds=120), 25.0, 2048)])
    view = with_view_step(store, base, base + timedelta(seconds=180), 60)
    assert [x["requests"] for x in view["series"]] == [5, 0, 3]
    assert [x["errorRate"] for x in view["series"]] == [0.2, None, 0.0]
    assert view["series"][2]["cpuPercent"] == 25.0 and view["series"][2]["memoryBytes"] == 2048
    assert view["summary"]["cpuPercent"] == 25.0
    assert view["summary"]["rps"] == pytest.approx(8 / 180, abs=1e-3)


def with_view_step(store: Store, start: datetime, end: datetime, step: int) -> dict[str, Any]:
    with store.transaction() as s:
        return metrics.component_view(s, "o", "p", "c", "dev", start, end, step)


def test_retention_deletes_by_age(store: Store) -> None:
    now = datetime.now(UTC)
    line = {**KEY, "deployment": None, "run": None, "replica": 0, "stream": "stdout"}
    with store.transaction() as s:
        logs.add_lines(s, "o", [LogLineReport.model_validate({**line, "at": now - timedelta(days=9), "line": "old"}),
                                LogLineReport.model_validate({**line, "at": now, "line": "new"})])
        metrics.ingest(s, "o", [http_point(now - timedelta(days=40), 1), http_point(now, 1)])
        traces.ingest(s, "o", [span("a" * 32, "1" * 16, None, now - timedelta(days=3)),
                               span("b" * 32, "2" * 16, None, now)])
    with store.transaction() as s:
        assert logs.expire(s, now - timedelta(days=7)) == 1
        assert metrics.expire(s, now - timedelta(days=30)) == 1
        assert traces.expire(s, now - timedelta(days=2)) == 1
        assert traces.expire(s, now - timedelta(days=2), bound=0) == 1  # and a count bound
        assert s.query(SpanRow).count() == 0
    with store.transaction() as s:
        page = logs.page(s, logs.WorkloadLogRow, logs.LogQuery("o", "p", "c", "dev", grep="ew"), logs.line_view)
        assert [x["line"] for x in page.items] == ["new"]


def span(trace: str, span_id: str, parent: str | None, start: datetime, component: str = "c",
         duration: float = 10.0, status: int = 200) -> Span:
    return Span.model_validate({"traceId": trace, "spanId": span_id, "parentId": parent, **KEY, "component": component,
                                "endpoint": "api", "listener": "external" if parent is None else "internal",
                                "name": "GET /", "start": start, "durationMs": duration, "status": status})


def test_a_trace_is_a_tree_of_its_spans(store: Store) -> None:
    t0 = datetime.now(UTC)
    trace = "c" * 32
    with store.transaction() as s:
        traces.ingest(s, "o", [
            span(trace, "3" * 16, "1" * 16, t0 + timedelta(milliseconds=8), "d", 2.0),
            span(trace, "1" * 16, "f" * 16, t0, "a", 20.0),  # its parent is the caller's: not stored
            span(trace, "2" * 16, "1" * 16, t0 + timedelta(milliseconds=2), "b", 5.0, 503),
            span(trace, "4" * 16, "2" * 16, t0 + timedelta(milliseconds=3), "e", 1.0),
            # its parent is b's own client span (OpenTelemetry), which no gateway recorded: it goes under b
            span(trace, "5" * 16, "9" * 16, t0 + timedelta(milliseconds=4), "f", 1.0).model_copy(
                update={"consumer": "p/b"}),
        ])
    with store.transaction() as s:
        got = traces.one(s, "o", trace, lambda project, environment: True)
        assert got is not None
        assert [(x["component"], x["depth"], x["offsetMs"], x["parentInferred"]) for x in got["spans"]] == [
            ("a", 0, 0.0, False), ("b", 1, 2.0, False), ("e", 2, 3.0, False), ("f", 2, 4.0, True),
            ("d", 1, 8.0, False)]
        assert traces.one(s, "o", "cccccccc", lambda project, environment: True)["traceId"] == trace  # a prefix will do
        assert (got["durationMs"], got["root"], got["error"], got["status"]) == (20.0, "p/a", True, 200)
        assert traces.one(s, "o", trace, lambda project, environment: False) is None
        listed = traces.of_component(s, "o", "p", "e", "dev", t0 - timedelta(minutes=1), 15.0, True, 10,
                                     lambda project, environment: True)
        assert [x["traceId"] for x in listed] == [trace]
        assert traces.of_component(s, "o", "p", "e", "dev", t0 - timedelta(minutes=1), 25.0, False, 10,
                                   lambda project, environment: True) == []


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("1h30m", 5400), ("2d", 172800),
                                               ("250ms", 0.25)])
def test_durations(text: str, seconds: float) -> None:
    assert durations.seconds(text, "x") == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "1x", "-5m", "5m ago"])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(InvalidError) as e:
        durations.seconds(text, "since")
    assert [d.field for d in e.value.details] == ["since"]
