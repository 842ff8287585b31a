"""The trace waterfall (console/waterfall.py) drawn from the JSON a real control plane answers for
``GET /organizations/{org}/traces/{trace}`` (in this process): spans stored through the telemetry service the agents'
route calls, one of them with markup in its name and one whose parent no gateway recorded."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cellplane import API_VERSION
from cellplane.console.waterfall import waterfall
from cellplane.contract.telemetry import Span
from cellplane.controlplane.api.app import create_app
from cellplane.controlplane.telemetry import traces
from inprocess import AppClient

ORG = "falls"
TRACE = "0af7651916cd43dd8448eb211c80319c"
EVIL = "GET /checkout?q=<script>alert(1)</script>"


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """shop/front (120 ms) calls shop/store (30 ms, at +10) and books/ledger (60 ms at +50, a 503), which calls
    books/audit (20 ms at +55, a 500); a span at +70 whose parent (front's own client span) was not recorded."""
    data: Path = tmp_path_factory.mktemp("waterfall")
    app = create_app(data)
    runner = asyncio.Runner()
    try:
        admin = AppClient(app, runner, (data / "admin.token").read_text().strip())
        docs = [{"kind": "Organization", "metadata": {"name": ORG}, "spec": {}}] + [
            {"kind": "Project", "metadata": {"name": p, "organization": ORG}, "spec": {}} for p in ("shop", "books")]
        _ok(admin.post("/apply", json={"documents": [{"apiVersion": API_VERSION, **d} for d in docs]}))
        t0 = datetime.now(UTC) - timedelta(minutes=1)

        def span(sid: str, parent: str | None, project: str, component: str, listener: str, name: str, at: float,
                 took: float, status: int) -> Span:
            return Span(traceId=TRACE, spanId=sid * 16, parentId=parent * 16 if parent else None,
                        environment="development", project=project, component=component, endpoint="api",
                        listener=listener, name=name, start=t0 + timedelta(milliseconds=at), durationMs=took,
                        status=status)

        spans = [span("a", None, "shop", "front", "external", EVIL, 0, 120, 200),
                 span("b", "a", "shop", "store", "cell", "GET /items", 10, 30, 200),
                 span("c", "a", "books", "ledger", "internal", "POST /pay", 50, 60, 503),
                 span("d", "c", "books", "audit", "cell", "PUT /entries", 55, 20, 500),
                 span("e", "f", "shop", "store", "cell", "GET /stock", 70, 5, 200)]
        with app.state.platform.store.transaction() as s:
            traces.ingest(s, ORG, spans)
        yield _ok(admin.get(f"/organizations/{ORG}/traces/{TRACE}"))
    finally:
        runner.close()
        app.state.platform.close()


def _root(html: str) -> ET.Element:
    return ET.fromstring(f"<div>{html}</div>")  # well-formed, or this raises


def _rows(root: ET.Element) -> list[tuple[int, str]]:
    """(nesting level of its list, its label's text) of every span row, in document order."""
    out: list[tuple[int, str]] = []

    def walk(element: ET.Element, level: int) -> None:
        for child in element:
            if child.tag == "li":
                label = child.find("div/span[@class='span-label']")
                assert label is not None
                out.append((level, "".join(label.itertext())))
                for sub in child.findall("ol"):
                    walk(sub, level + 1)

    top = root.find(".//ol[@class='spans']")
    assert top is not None
    walk(top, 0)
    return out


def test_spans_are_nested_under_their_parents(trace: dict[str, Any]) -> None:
    rows = _rows(_root(str(waterfall(trace, ORG))))
    assert rows == [(0, f"shop/front api (external) {EVIL}"),
                    (1, "shop/store api (cell) GET /items"),
                    (1, "books/ledger api (internal) POST /pay"),
                    (2, "books/audit api (cell) PUT /entries"),
                    (1, "shop/store api (cell) GET /stock")]


def test_each_row_says_status_duration_and_start_and_errors_in_words(trace: dict[str, Any]) -> None:
    root = _root(str(waterfall(trace, ORG)))
    figures = ["".join(f.itertext()) for f in root.iter("span") if f.get("class") == "span-figures"]
    assert figures == ["status 200, 120ms, at +0ms", "status 200, 30.0ms, at +10.0ms",
                       "status 503, 60.0ms, at +50.0ms error", "status 500, 20.0ms, at +55.0ms error",
                       "status 200, 5.00ms, at +70.0ms (parent inferred)"]
    head = root.find("section/p[@class='trace-head']")
    assert head is not None and "".join(head.itertext()) == (
        f"Trace {TRACE} shop/front {EVIL}: 120ms, status 200, 5 spans, 2 errors")
    assert [li.get("class") for li in root.iter("li")] == ["span", "span", "span error", "span error", "span"]


def test_bars_are_drawn_to_the_traces_scale(trace: dict[str, Any]) -> None:
    root = _root(str(waterfall(trace, ORG)))
    bars = [svg.findall("rect")[1] for svg in root.iter("svg") if svg.get("class") == "span-bar"]
    assert [(b.get("x"), b.get("width")) for b in bars] == [
        ("0", "1000"), ("83.3", "250"), ("416.7", "500"), ("458.3", "166.7"), ("583.3", "41.7")]
    assert [b.get("fill") for b in bars][2:4] == ["url(#trace-hatch)"] * 2  # hatched, not only red
    assert all(svg.get("aria-hidden") == "true" and "style" not in svg.attrib
               for svg in root.iter("svg"))


def test_each_span_links_to_its_component_page(trace: dict[str, Any]) -> None:
    root = _root(str(waterfall(trace, ORG)))
    assert [a.get("href") for a in root.iter("a")][:3] == [
        f"/console/orgs/{ORG}/projects/shop/components/front", f"/console/orgs/{ORG}/projects/shop/components/store",
        f"/console/orgs/{ORG}/projects/books/components/ledger"]


def test_markup_in_a_span_name_is_text(trace: dict[str, Any]) -> None:
    html = str(waterfall(trace, ORG))
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_an_empty_or_odd_trace_still_makes_well_formed_lists() -> None:
    assert "No spans of this trace" in str(waterfall({"traceId": "x", "spans": []}, ORG))
    odd = {"traceId": "y", "durationMs": 0, "spans": [
        {"project": "p", "component": "c", "depth": 3, "offsetMs": 0, "durationMs": 0, "status": 200},
        {"project": "p", "component": "d", "depth": 1, "offsetMs": 0, "durationMs": 0, "status": 200},
        {"project": "p", "component": "e", "depth": 0, "offsetMs": 0, "durationMs": 0, "status": 200}]}
    assert [level for level, _ in _rows(_root(str(waterfall(odd, ORG))))] == [0, 1, 0]
