"""The metric charts (console/charts.py) drawn from the JSON a real control plane answers for
``GET .../components/{c}/metrics`` (in this process): points stored through the telemetry service the agents'
route calls, with minutes missing, so the charts must leave gaps."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cellplane import API_VERSION
from cellplane.console.charts import Line, component_charts, line_chart, nice_step
from cellplane.contract.requestmetrics import BUCKETS
from cellplane.contract.telemetry import MetricPoint
from cellplane.controlplane.api.app import create_app
from cellplane.controlplane.telemetry import metrics
from inprocess import AppClient

ORG, P, C = "charts", "shop", "front"
SVG = "{http://www.w3.org/2000/svg}"


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Thirty one-minute points: requests in minutes 0-9 and 20-29 (none in 10-19), a 5xx in minute 5, replica CPU
    and memory in minutes 0-24."""
    data: Path = tmp_path_factory.mktemp("charts")
    app = create_app(data)
    runner = asyncio.Runner()
    try:
        admin = AppClient(app, runner, (data / "admin.token").read_text().strip())
        docs = [{"kind": "Organization", "metadata": {"name": ORG}, "spec": {}},
                {"kind": "Project", "metadata": {"name": P, "organization": ORG}, "spec": {}},
                {"kind": "Component", "metadata": {"name": C, "organization": ORG, "project": P}, "spec": {
                    "type": "service", "endpoints": [{"name": "api", "port": 8080, "visibility": ["Public"]}]}}]
        _ok(admin.post("/apply", json={"documents": [{"apiVersion": API_VERSION, **d} for d in docs]}))
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = now - timedelta(minutes=30)
        points = []
        for minute in range(30):
            at = start + timedelta(minutes=minute, seconds=5)
            if minute < 10 or minute >= 20:
                buckets = [0] * (len(BUCKETS) + 1)
                buckets[4] = 60  # all under 25 ms
                points.append(MetricPoint(kind="http", environment="development", project=P, component=C, at=at,
                                          seconds=60, endpoint="api", requests=60, errors=6 if minute == 5 else 0,
                                          durationSum=60 * 0.02, buckets=buckets))
            if minute < 25:
                points.append(MetricPoint(kind="replica", environment="development", project=P, component=C, at=at,
                                          seconds=60, replica=0, cpu=12.5 + minute, memory=(40 + minute) * 1048576))
        with app.state.platform.store.transaction() as s:
            metrics.ingest(s, ORG, points)
        yield _ok(admin.get(f"/organizations/{ORG}/projects/{P}/components/{C}/metrics",
                            params={"environment": "development", "since": start.isoformat(), "step": 60}))
    finally:
        runner.close()
        app.state.platform.close()


def _svg(chart: Any) -> ET.Element:
    return ET.fromstring(str(chart.svg))


def test_five_charts_with_titles_units_and_descriptions(answer: dict[str, Any]) -> None:
    charts = component_charts(answer)
    assert [(c.title, c.unit) for c in charts] == [
        ("Requests per second", "req/s"), ("Errors (5xx)", "% of requests"), ("Latency", "ms"),
        ("CPU", "% of a core"), ("Memory", "MiB")]
    for chart in charts:
        root = _svg(chart)
        assert root.get("role") == "img"
        assert root.findtext(f"{SVG}title") == f"{chart.title} ({chart.unit})"
        assert root.get("aria-labelledby") == f"{chart.ident}-title"
        assert "UTC, a point every 60 s" in (root.findtext(f"{SVG}desc") or "")
        texts = [t.text for t in root.iter(f"{SVG}text")]
        assert chart.unit in texts and "time (UTC)" in texts
    rps = _svg(charts[0]).findtext(f"{SVG}desc") or ""
    assert "requests/s: latest 0 req/s, highest 1.00 req/s" in rps  # the minute now has none yet


def test_missing_minutes_leave_gaps_in_the_lines(answer: dict[str, Any]) -> None:
    series = answer["series"]
    assert len(series) >= 30
    rps, errors, latency, cpu, memory = (_svg(c) for c in component_charts(answer))
    # rps is 0 (not missing) in the quiet minutes: one unbroken line
    assert len([p for p in rps.iter(f"{SVG}path") if p.get("class") == "series"]) == 1
    # the error rate and the latency have no value without requests: two runs each (and three lines of latency)
    assert len([p for p in errors.iter(f"{SVG}path") if p.get("class") == "series"]) == 2
    assert len([p for p in latency.iter(f"{SVG}path") if p.get("class") == "series"]) == 6
    assert [p.get("stroke-dasharray") for p in latency.iter(f"{SVG}path") if p.get("class") == "series"] == [
        None, None, "7 4", "7 4", "2 3", "2 3"]  # told apart by more than colour
    for chart in (cpu, memory):  # one run, ending where the replica stopped reporting
        lines = [p for p in chart.iter(f"{SVG}path") if p.get("class") == "series"]
        assert len(lines) == 1 and lines[0].get("d", "").count("L") == 24


def test_the_data_table_has_a_row_per_point_and_says_where_there_is_no_data(answer: dict[str, Any]) -> None:
    errors = component_charts(answer)[1]
    table = str(errors.table)
    assert table.count("<tr>") == 1 + len(answer["series"])
    assert "<caption>Errors (5xx) (% of requests)</caption>" in table
    assert "<td>10</td>" in table  # 6 errors of 60 requests in minute 5
    assert table.count("<td>no data</td>") >= 10
    memory = str(component_charts(answer)[4].table)
    assert "<td>40</td>" in memory and "<td>64</td>" in memory


def test_a_value_alone_is_a_dot_and_no_data_says_so() -> None:
    times = [datetime(2026, 1, 1, 10, m, tzinfo=UTC) for m in range(5)]
    chart = line_chart("t", "Alone", "ms", times, [Line("p50", [None, 3.0, None, None, None])], str)
    root = _svg(chart)
    assert len(list(root.iter(f"{SVG}circle"))) == 1 and not any(
        p.get("class") == "series" for p in root.iter(f"{SVG}path"))
    empty = _svg(line_chart("e", "Empty", "ms", times, [Line("p50", [None] * 5)], str))
    assert "No data in this range" in [t.text for t in empty.iter(f"{SVG}text")]
    assert "p50: no data" in (empty.findtext(f"{SVG}desc") or "")


def test_titles_and_labels_are_escaped() -> None:
    times = [datetime(2026, 1, 1, 10, 0, tzinfo=UTC)]
    chart = line_chart('x"><script>', "<b>title</b>", "<i>", times, [Line("<img src=x>", [1.0])], str)
    for html in (str(chart.svg), str(chart.table)):
        assert "<script" not in html and "<b>" not in html and "<img" not in html and "<i>" not in html
    assert _svg(chart).findtext(f"{SVG}title") == "<b>title</b> (<i>)"


def test_the_y_axis_steps_are_round_numbers() -> None:
    assert [nice_step(h) for h in (0, 0.3, 1, 4, 7, 9.5, 37, 1000, 1234)] == [
        1.0, 0.1, 0.25, 1, 2, 2.5, 10, 250, 500]
