"""The cell diagram (console/diagram.py) drawn from the graph a real control plane serves (in this process: the
API's own routes, store and services; no server), and from hand-written graphs of the documented shape for what a
fresh control plane cannot show (rates, names full of markup, thirty components)."""

from __future__ import annotations

import asyncio
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cellplane import API_VERSION
from cellplane.console.diagram import cell_diagram, component_href, flows, layers
from cellplane.controlplane.api.app import create_app
from inprocess import AppClient

ORG, P = "diagram", "shop"
SVG = "{http://www.w3.org/2000/svg}"


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def _component(name: str, spec: dict[str, Any], project: str = P) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Component",
            "metadata": {"name": name, "organization": ORG, "project": project}, "spec": spec}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """shop/front (Public) calls shop/store (Project), the other project's ledger (Organization) and an external
    URL; shop/worker calls store; shop/admin (Organization) calls front; ledger is in another project."""
    data: Path = tmp_path_factory.mktemp("diagram")
    app = create_app(data)
    runner = asyncio.Runner()
    try:
        admin = AppClient(app, runner, (data / "admin.token").read_text().strip())
        docs = [{"apiVersion": API_VERSION, "kind": "Organization", "metadata": {"name": ORG}, "spec": {}}] + [
            {"apiVersion": API_VERSION, "kind": "Project", "metadata": {"name": name, "organization": ORG},
             "spec": {}} for name in (P, "books")] + [
            _component("ledger", {"type": "service", "endpoints": [
                {"name": "api", "port": 8080, "visibility": ["Organization"]}]}, "books"),
            _component("store", {"type": "service", "endpoints": [
                {"name": "api", "port": 8080, "visibility": ["Project"]}]}),
            _component("front", {"type": "web-app", "endpoints": [
                {"name": "web", "port": 8080, "visibility": ["Public"]},
                {"name": "health", "port": 8081, "visibility": ["Project"], "basePath": "/health"}],
                "dependencies": [{"name": "store", "component": "store"},
                                 {"name": "ledger", "component": "ledger", "project": "books", "endpoint": "api"},
                                 {"name": "payments", "url": "https://pay.example.com/v1?x=<b>&y=\"z\""}]}),
            _component("worker", {"type": "service", "endpoints": [],
                                   "dependencies": [{"name": "store", "component": "store"}]}),
            _component("admin", {"type": "service", "endpoints": [
                {"name": "api", "port": 8080, "visibility": ["Organization"]}],
                "dependencies": [{"name": "front", "component": "front", "endpoint": "web"}]}),
        ]
        _ok(admin.post("/apply", json={"documents": docs}))
        yield _ok(admin.get(f"/organizations/{ORG}/projects/{P}/graph", params={"environment": "development"}))
    finally:
        runner.close()
        app.state.platform.close()


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def _boxes(root: ET.Element) -> dict[str, tuple[float, float, float, float]]:
    """The rectangle of each component link, by its href's last part."""
    out = {}
    for a in root.iter(f"{SVG}a"):
        rect = a.find(f"{SVG}rect")
        assert rect is not None
        out[a.get("href", "").rsplit("/", 1)[-1]] = tuple(float(rect.get(k, "0"))
                                                          for k in ("x", "y", "width", "height"))
    return out  # type: ignore[return-value]


def test_the_diagram_of_a_real_graph_links_every_component_to_its_page(graph: dict[str, Any]) -> None:
    d = cell_diagram(graph, ORG)
    root = _parse(str(d.svg))
    assert root.get("role") == "group" and root.get("viewBox", "").startswith("0 0 ")
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == f"Cell diagram of project {P} in development"
    assert root.get("aria-labelledby") == title.get("id")
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.text and desc.text.startswith("4 components and 5 connections")
    links = {a.get("href"): a.findtext(f"{SVG}title") for a in root.iter(f"{SVG}a")}  # the <title> names a link
    assert links == {
        f"/console/orgs/{ORG}/projects/{P}/components/{name}": label for name, label in {
            "admin": "Component admin: service, not-deployed, 1 endpoint",
            "front": "Component front: web-app, not-deployed, 2 endpoints",
            "store": "Component store: service, not-deployed, 1 endpoint",
            "worker": "Component worker: service, not-deployed, 0 endpoints"}.items()}
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "Public: web /" in texts and "Project: health /health" in texts and "Organization: api /" in texts
    assert "books/ledger/api" in texts and "another project" in texts and "external URL" in texts


def test_callers_stand_above_what_they_call_and_no_two_boxes_overlap(graph: dict[str, Any]) -> None:
    boxes = _boxes(_parse(str(cell_diagram(graph, ORG).svg)))
    assert boxes["admin"][1] < boxes["front"][1] < boxes["store"][1]
    assert boxes["worker"][1] < boxes["store"][1]
    _no_overlap(list(boxes.values()))


def _no_overlap(rects: list[tuple[float, float, float, float]]) -> None:
    for i, (x, y, w, h) in enumerate(rects):
        for (x2, y2, w2, h2) in rects[i + 1:]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y, ((x, y, w, h), (x2, y2, w2, h2))


def test_the_text_alternative_lists_the_same_components_and_flows(graph: dict[str, Any]) -> None:
    d = cell_diagram(graph, ORG)
    text = str(d.text)
    assert f'<a href="{component_href(ORG, P, "front")}">front</a>' in text
    rows = [(f["from"], f["to"], f["through"]) for f in flows(graph)]
    assert rows == [
        ("internal gateway (organization)", "admin/api", "Organization"),
        ("public gateway (internet)", "front/web", "Public"),
        ("admin", "front/web", "inside the cell"),
        ("front", "store", "inside the cell"),
        ("front", "books/ledger/api", "internal gateway (another project)"),
        ("front", "https://pay.example.com/v1?x=<b>&y=\"z\"", "external URL"),
        ("worker", "store", "inside the cell")]
    assert "&lt;b&gt;&amp;y=&#34;z&#34;" in text and "<b>" not in text  # the URL's markup is text
    assert text.count("<tr>") == 1 + 4 + 1 + 7  # heads, components, flows


def test_the_drawing_is_the_same_for_the_same_graph(graph: dict[str, Any]) -> None:
    assert str(cell_diagram(graph, ORG).svg) == str(cell_diagram(graph, ORG).svg)


def _graph(components: list[dict[str, Any]], connections: list[dict[str, Any]]) -> dict[str, Any]:
    return {"project": P, "environment": "development", "window": 300, "components": components,
            "connections": connections}


def test_names_and_urls_full_of_markup_are_drawn_as_text() -> None:
    evil = '"><script>alert(1)</script>'
    g = _graph([{"name": evil, "type": "<i>x</i>", "state": "ready&", "rps": 1.0, "endpoints": [
        {"name": evil, "visibility": "Public", "basePath": "/<img src=x onerror=alert(1)>", "rps": 2.5}]}],
        [{"from": evil, "name": "out", "to": {"url": "javascript:alert('<x>')"}, "rps": None, "measured": "none"},
         {"from": evil, "name": "self", "to": {"project": P, "component": evil, "endpoint": None}, "rps": 3.0,
          "requests": 900, "errors": 2, "measured": "exact"}])
    d = cell_diagram(g, '"org<')
    for html in (str(d.svg), str(d.text)):
        assert "<script" not in html and "<img" not in html and "<i>" not in html
        assert not re.search(r"\son\w+=", html.replace("onerror=alert", ""))  # no attribute made of the data
    root = _parse(str(d.svg))
    hrefs = [a.get("href") for a in root.iter(f"{SVG}a")]
    assert hrefs == ["/console/orgs/%22org%3C/projects/shop/components/%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E"]
    assert "3.00 req/s, 2 err" in [t.text for t in root.iter(f"{SVG}text")]


def test_rates_label_the_arrows_and_a_shared_rate_says_so() -> None:
    g = _graph([{"name": n, "type": "service", "state": "ready", "endpoints": []} for n in ("a", "b", "c")],
               [{"from": "a", "name": "b", "to": {"project": P, "component": "b"}, "rps": 12.5, "errors": 0,
                 "measured": "endpoint"},
                {"from": "c", "name": "b", "to": {"project": P, "component": "b"}, "rps": 0.0, "errors": 0,
                 "measured": "shared"}])
    labels = [t.text for t in _parse(str(cell_diagram(g, ORG).svg)).iter(f"{SVG}text")
              if t.get("class") == "rate"]
    assert labels == ["12.5 req/s", "0 req/s (shared)"]


def test_thirty_components_in_layers_wrap_into_rows_without_overlap() -> None:
    names = [f"c{i:02d}" for i in range(30)]
    # a chain of three layers of ten, each calling two of the next
    connections = [{"from": names[i], "name": f"to{j}", "to": {"project": P, "component": names[j]}, "rps": 1.0,
                    "errors": 0, "measured": "exact"}
                   for i in range(20) for j in (10 + (i + 10) % 10 + (10 if i >= 10 else 0), 10 + i % 10 + 10)
                   if j < 30 and j > i]
    g = _graph([{"name": n, "type": "service", "state": "ready", "endpoints": [
        {"name": "api", "visibility": "Project", "rps": 0}]} for n in names], connections)
    root = _parse(str(cell_diagram(g, ORG).svg))
    boxes = _boxes(root)
    assert len(boxes) == 30
    _no_overlap(list(boxes.values()))
    width = float(root.get("width", "0"))
    assert all(x + w <= width for x, _y, w, _h in boxes.values())
    rows = sorted({y for _x, y, _w, _h in boxes.values()})
    assert len(rows) >= 6  # three layers of ten, five a row
    lines = [p.get("d", "") for p in root.iter(f"{SVG}path") if p.get("class") == "connection"]
    assert len(lines) == len(connections)
    for d in lines:  # straight to the next row, or round through the gaps: never across a box
        points = [tuple(map(float, xy.split(","))) for xy in re.findall(r"[ML]([\d.]+,[\d.]+)", d)]
        for (x1, y1), (x2, y2) in itertools.pairwise(points):
            for rect in boxes.values():
                assert not _crosses((x1, y1, x2, y2), rect), (d, rect)


def _crosses(segment: tuple[float, float, float, float], rect: tuple[float, float, float, float]) -> bool:
    """Whether the segment passes through the rectangle's inside (touching its edge does not count): Liang-Barsky
    clipping against the rectangle shrunk by a pixel."""
    x1, y1, x2, y2 = segment
    x, y, w, h = rect[0] + 1, rect[1] + 1, rect[2] - 2, rect[3] - 2
    dx, dy = x2 - x1, y2 - y1
    low, high = 0.0, 1.0
    for p, q in ((-dx, x1 - x), (dx, x + w - x1), (-dy, y1 - y), (dy, y + h - y1)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return False
    return True


def test_layers_break_a_cycle_at_the_first_name() -> None:
    assert layers(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a")]) == {"a": 0, "b": 1, "c": 2}
    assert layers(["x", "y"], [("y", "x")]) == {"y": 0, "x": 1}
    assert layers(["solo"], []) == {"solo": 0}


def test_an_empty_project_says_so() -> None:
    d = cell_diagram(_graph([], []), ORG)
    assert "No components in this project yet." in str(d.svg)
    assert "No components yet." in str(d.text)
    _parse(str(d.svg))
