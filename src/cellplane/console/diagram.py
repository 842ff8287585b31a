"""A project's cell in one environment drawn as SVG, from the JSON of ``GET .../projects/{project}/graph``.

The picture follows Choreo's cell diagram: the cell is a box; its Public endpoints are reached through the public
gateway on its top edge, its Organization endpoints through the internal gateway on its left edge, and its Project
endpoints only from inside (listed in each component's box). Components sit in rows by dependency order (a caller
above what it calls; longest path from the callers, cycles broken at the first name), at most ``COLUMNS`` a row,
each a link to its component page. Targets outside the cell (another project's component, an external URL) stand
in a column to its right. Connections are arrows labelled with their request rate when the graph measured one.

Layout is a pure function of the graph (names sorted, no randomness), boxes never overlap, and the SVG scales with
its viewBox. Lines are drawn first and boxes over them, so a line that passes behind a box is hidden, never over its
text. Every text is escaped (markupsafe); nothing uses a style attribute (the console's CSP forbids them): colours are
presentation attributes, and each part has a class the stylesheet may refine.

``text`` is the same content as tables (components, then every flow), to go below the picture. Cost: linear in
components plus connections: 3.4 ms for thirty components and fifteen connections (this project's busy 2-core
machine).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from cellplane.console.markup import built
from cellplane.console.markup import number as _n
from cellplane.figures import compact, percent, rate, target_label

COLUMNS = 5  # boxes a row at most: a wider layer wraps onto the next row
BOX_W, GAP_X, GAP_Y = 210, 40, 64
HEAD_H, LINE_H, MIN_H = 42, 16, 58  # a box: name and type/state, then one line per endpoint
PAD = 48  # inside the cell, around the rows (the gateways' bands are in it)
OUT_W, OUT_H, OUT_GAP = 210, 44, 16  # a target outside the cell
CHAR_W = 7.0  # the average width of a 12px sans-serif character, to cut long names
VISIBILITIES = ("Public", "Organization", "Project")
TEXT, MUTED, LINE, BOX, CELL = "#1b1f24", "#4a5560", "#57606a", "#ffffff", "#f3f6f9"


def component_href(org: str, project: str, component: str) -> str:
    """The console's page of a component (docs/console.md, URLs)."""
    return (f"/console/orgs/{quote(org, safe='')}/projects/{quote(project, safe='')}"
            f"/components/{quote(component, safe='')}")


@dataclass(frozen=True)
class Diagram:
    svg: Markup  # the picture: a group named by its <title>, described by its <desc>, with a link per component
    text: Markup  # the same as tables: components and flows, to go below the picture


@dataclass
class _Box:
    name: str
    x: float = 0.0
    y: float = 0.0
    w: float = BOX_W
    h: float = MIN_H
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


def _fit(text: str, width: float) -> str:
    """``text`` cut with an ellipsis to about ``width`` pixels of 12px text."""
    most = max(4, int(width / CHAR_W))
    return text if len(text) <= most else text[: most - 1] + "…"



def _rate_text(c: dict[str, Any]) -> str | None:
    """An arrow's label: its request rate, or None when the graph does not measure it (an external URL)."""
    if c.get("rps") is None or c.get("measured") == "none":
        return None
    text = f"{rate(c.get('rps'))} req/s"
    if c.get("errors"):
        text += f", {c['errors']} err"
    return text + (" (shared)" if c.get("measured") == "shared" else "")


def layers(names: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """The row of each component: 0 for those no component of the cell calls, else one below its lowest caller
    (longest path). A cycle is broken at its first name in order, which then counts as called by nobody left."""
    preds: dict[str, set[str]] = {n: set() for n in names}
    for a, b in edges:
        if a in preds and b in preds and a != b:
            preds[b].add(a)
    layer: dict[str, int] = {}
    left = list(names)
    while left:
        ready = [n for n in left if preds[n] <= layer.keys()]
        if not ready:  # a cycle: the first name left goes, its callers not yet placed ignored
            ready = [left[0]]
        for n in ready:
            layer[n] = max((layer[p] + 1 for p in preds[n] if p in layer), default=0)
        left = [n for n in left if n not in layer]
    return layer


def _rows(names: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Rows of at most COLUMNS names: each layer in order of its callers' mean column (then by name)."""
    layer = layers(names, edges)
    preds: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        preds[b].append(a)
    column: dict[str, float] = {}
    rows: list[list[str]] = []
    for depth in range(max(layer.values(), default=-1) + 1):
        members = [n for n in names if layer[n] == depth]

        def centre(n: str) -> tuple[float, str]:
            placed = [column[p] for p in preds[n] if p in column]
            return (sum(placed) / len(placed) if placed else 0.0, n)

        members.sort(key=centre)
        for start in range(0, len(members), COLUMNS):
            row = members[start:start + COLUMNS]
            rows.append(row)
            for i, n in enumerate(row):
                column[n] = i - (len(row) - 1) / 2
    return rows


def cell_diagram(graph: dict[str, Any], org: str, ident: str = "cell") -> Diagram:
    """The diagram and its text alternative. ``ident`` prefixes the ids inside the SVG (unique per page)."""
    project = str(graph.get("project") or "")
    environment = str(graph.get("environment") or "")
    components = sorted(graph.get("components") or [], key=lambda c: str(c.get("name")))
    connections = list(graph.get("connections") or [])
    names = [str(c.get("name")) for c in components]
    inside = set(names)

    def internal(c: dict[str, Any]) -> bool:
        to = c.get("to") or {}
        return not to.get("url") and (to.get("project") or project) == project and to.get("component") in inside

    edges = [(str(c.get("from")), str((c.get("to") or {}).get("component"))) for c in connections if internal(c)]
    boxes = {str(c.get("name")): _Box(str(c.get("name")), data=c) for c in components}
    for b in boxes.values():
        b.h = max(MIN_H, HEAD_H + LINE_H * len(b.data.get("endpoints") or []) + 8)
    rows = _rows(names, edges)
    widest = max((len(r) for r in rows), default=1)
    top_band = 34  # the public gateway's band on the top edge
    left_band = 34  # the internal gateway's band on the left edge
    cell_x, cell_y = 16.0, 44.0
    inner_w = widest * BOX_W + (widest - 1) * GAP_X
    cell_w = left_band + PAD + inner_w + PAD
    y = cell_y + top_band + PAD
    left = cell_x + left_band + PAD
    for row in rows:  # on a grid of columns, so the gaps between them are free channels from top to bottom
        height = max(boxes[n].h for n in row)
        first = (widest - len(row)) // 2
        for i, n in enumerate(row):
            boxes[n].x, boxes[n].y, boxes[n].h = left + (first + i) * (BOX_W + GAP_X), y, height
        y += height + GAP_Y
    cell_h = (y - GAP_Y if rows else y + 40) + PAD - cell_y
    # targets outside the cell, in the order their first caller stands
    outside: dict[str, _Box] = {}
    for c in sorted((c for c in connections if not internal(c)),
                    key=lambda c: (boxes[c["from"]].y, boxes[c["from"]].x) if c.get("from") in boxes else (0, 0)):
        key = target_label(c.get("to") or {}, project)
        if key not in outside:
            outside[key] = _Box(key, data=c.get("to") or {})
    out_x = cell_x + cell_w + 96
    oy = cell_y + top_band + PAD
    for b in outside.values():
        b.x, b.y, b.w, b.h = out_x, oy, OUT_W, OUT_H
        oy += OUT_H + OUT_GAP
    width = (out_x + OUT_W if outside else cell_x + cell_w) + 16
    height = max(cell_y + cell_h, oy) + 16

    p: list[str] = []
    title_id, desc_id = f"{ident}-title", f"{ident}-desc"
    arrow = f"{ident}-arrow"
    summary = (f"{len(components)} component{'s' if len(components) != 1 else ''} and "
               f"{len(connections)} connection{'s' if len(connections) != 1 else ''}")
    p.append(f'<svg xmlns="http://www.w3.org/2000/svg" class="cell-diagram" role="group" '
             f'viewBox="0 0 {_n(width)} {_n(height)}" width="{_n(width)}" height="{_n(height)}" '
             f'aria-labelledby="{escape(title_id)}" aria-describedby="{escape(desc_id)}" '
             f'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">')
    p.append(f'<title id="{escape(title_id)}">Cell diagram of project {escape(project)} in '
             f'{escape(environment)}</title>')
    p.append(f'<desc id="{escape(desc_id)}">{escape(summary)}; public endpoints are reached through the public '
             f'gateway at the top, organization endpoints through the internal gateway at the left, project '
             f'endpoints only from inside the cell. The tables below the diagram list the same.</desc>')
    p.append(f'<defs><marker id="{escape(arrow)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{LINE}"/>'
             f'</marker></defs>')
    # the cell and its gateways
    p.append(f'<text x="{_n(cell_x)}" y="{_n(cell_y - 26)}" font-weight="600" fill="{TEXT}">'
             f'Internet → public gateway</text>')
    p.append(f'<rect class="cell" x="{_n(cell_x)}" y="{_n(cell_y)}" width="{_n(cell_w)}" height="{_n(cell_h)}" '
             f'rx="18" fill="{CELL}" stroke="{LINE}" stroke-width="1.5"/>')
    p.append(f'<rect class="gateway public" x="{_n(cell_x + left_band)}" y="{_n(cell_y)}" '
             f'width="{_n(cell_w - left_band - 18)}" height="{top_band}" fill="#dbe9f7" stroke="{LINE}"/>')
    p.append(f'<text x="{_n(cell_x + left_band + 10)}" y="{_n(cell_y + 21)}" fill="{TEXT}">Public gateway · '
             f'cell {escape(_fit(project, cell_w / 2))} · {escape(_fit(environment, 120))}</text>')
    p.append(f'<rect class="gateway organization" x="{_n(cell_x)}" y="{_n(cell_y + 18)}" width="{left_band}" '
             f'height="{_n(cell_h - 36)}" fill="#e8e1f5" stroke="{LINE}"/>')
    gy = cell_y + cell_h / 2
    p.append(f'<text x="{_n(cell_x + 22)}" y="{_n(gy)}" fill="{TEXT}" text-anchor="middle" '
             f'transform="rotate(-90 {_n(cell_x + 22)} {_n(gy)})">Internal gateway (organization)</text>')
    if not components:
        p.append(f'<text x="{_n(cell_x + left_band + PAD)}" y="{_n(cell_y + top_band + PAD + 20)}" '
                 f'fill="{MUTED}">No components in this project yet.</text>')
    labels = _Labels()
    # entries through the gateways, then the connections: under the boxes. An entry runs down the free channel
    # left of its box (from the public gateway; from the internal one along the gap above the box's row).
    for b in boxes.values():
        kinds = {_visibility(e) for e in b.data.get("endpoints") or []}
        channel = b.x - GAP_X / 2
        if "Public" in kinds:
            p.append(f'<path class="entry public" d="M{_n(channel)},{_n(cell_y + top_band)} '
                     f'L{_n(channel)},{_n(b.y + 12)} L{_n(b.x)},{_n(b.y + 12)}" fill="none" stroke="{LINE}" '
                     f'stroke-dasharray="5 3" marker-end="url(#{escape(arrow)})"/>')
        if "Organization" in kinds:
            above = b.y - 10
            p.append(f'<path class="entry organization" d="M{_n(cell_x + left_band)},{_n(above)} '
                     f'L{_n(channel - 4)},{_n(above)} L{_n(channel - 4)},{_n(b.y + 28)} L{_n(b.x)},{_n(b.y + 28)}" '
                     f'fill="none" stroke="{LINE}" stroke-dasharray="2 3" marker-end="url(#{escape(arrow)})"/>')
    # where arrows leave and reach each box: spread along its edge, in the order of the other end
    ends: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    for i, c in enumerate(connections):
        source = boxes.get(str(c.get("from")))
        if source is None:
            continue
        if internal(c):
            target = boxes[str((c.get("to") or {}).get("component"))]
            ends[("out", source.name)].append((target.cx, i))
            ends[("in", target.name)].append((source.cx, i))
        else:
            ends[("side", source.name)].append((outside[target_label(c.get("to") or {}, project)].y, i))
    channels = [left + k * (BOX_W + GAP_X) - GAP_X / 2 for k in range(widest + 1)]
    spot: dict[tuple[str, int], float] = {}
    for (edge, _name), found in ends.items():
        for k, (_at, i) in enumerate(sorted(found)):
            spot[(edge, i)] = (k + 1) / (len(found) + 1)
    for i, c in enumerate(connections):
        source = boxes.get(str(c.get("from")))
        if source is None:
            continue
        if internal(c):
            target = boxes[str((c.get("to") or {}).get("component"))]
            if target.y > source.y + source.h + GAP_Y:  # past a row of boxes: down the channel nearest its ends
                p.append(_routed(source, target, arrow, c, labels, spot[("out", i)], spot[("in", i)], channels, i))
            else:
                p.append(_arrow(source, target, arrow, c, labels, spot[("out", i)], spot[("in", i)]))
        else:
            target = outside[target_label(c.get("to") or {}, project)]
            p.append(_arrow(source, target, arrow, c, labels, spot[("side", i)], 0.5, cell_x + cell_w))
    # the boxes, each a link to its component page
    for b in boxes.values():
        p.append(_component(b, org, project))
    for b in outside.values():
        p.append(_outside(b, project))
    p.extend(labels.drawn)
    p.append("</svg>")
    return Diagram(built(p), text_alternative(graph, org))


def _visibility(e: dict[str, Any]) -> str:
    v = e.get("visibility")
    if isinstance(v, list):
        return next((x for x in VISIBILITIES if x in v), "Project")
    return str(v) if v in VISIBILITIES else "Project"


class _Labels:
    """Rate labels, each moved down (a line at a time) until it overlaps none placed before it."""

    def __init__(self) -> None:
        self.drawn: list[str] = []
        self.taken: list[tuple[float, float, float, float]] = []

    def add(self, text: str, x: float, y: float, anchor: str) -> None:
        w = len(text) * 6.2 + 6
        for _ in range(12):
            left = x - w / 2 if anchor == "middle" else x
            box = (left, y - 11, w, 14)
            if not any(box[0] < o[0] + o[2] and o[0] < box[0] + box[2] and box[1] < o[1] + o[3]
                       and o[1] < box[1] + box[3] for o in self.taken):
                break
            y += 14
        self.taken.append(box)
        self.drawn.append(f'<text class="rate" x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" fill="{TEXT}" '
                          f'stroke="#ffffff" stroke-width="4" paint-order="stroke" font-size="11">{escape(text)}'
                          f'</text>')


def _arrow(a: _Box, b: _Box, marker: str, c: dict[str, Any], labels: _Labels, leave: float, reach: float,
           cell_right: float | None = None) -> str:
    """A line from ``a`` to ``b`` (down to a box below, round the top of one on the same row or above, straight
    out of the cell to a target outside, whose edge is at ``cell_right``), leaving and reaching each edge at the
    given fraction of it; its rate label is kept to be drawn over the boxes, near where it leaves."""
    if cell_right is not None:  # to a target outside the cell
        x1, y1, x2, y2 = a.x + a.w, a.y + a.h * leave, b.x, b.y + b.h * reach
        d = f"M{_n(x1)},{_n(y1)} L{_n(x2)},{_n(y2)}"
        t = (cell_right + 8 - x1) / (x2 - x1) if x2 != x1 else 0.5
        lx, ly, anchor = cell_right + 8, y1 + (y2 - y1) * t - 5, "start"
    elif b.y > a.y:  # below: from the bottom to the top, the label just under the caller
        x1, y1, x2, y2 = a.x + a.w * leave, a.y + a.h, b.x + b.w * reach, b.y
        d = f"M{_n(x1)},{_n(y1)} L{_n(x2)},{_n(y2)}"
        ly = y1 + 16
        lx, anchor = x1 + (x2 - x1) * (ly - y1) / (y2 - y1) + 5, "start"
    else:  # same row or above (a cycle): a curve over the top of both
        x1, y1, x2, y2 = a.x + a.w * leave, a.y, b.x + b.w * reach, b.y
        top = min(y1, y2) - GAP_Y / 2 - 6
        d = f"M{_n(x1)},{_n(y1)} C{_n(x1)},{_n(top)} {_n(x2)},{_n(top)} {_n(x2)},{_n(y2)}"
        lx, ly, anchor = (x1 + x2) / 2, top + 14, "middle"
    text = _rate_text(c)
    if text:
        labels.add(text, lx, ly, anchor)
    return (f'<path class="connection" d="{d}" fill="none" stroke="{LINE}" stroke-width="1.5" '
            f'marker-end="url(#{escape(marker)})"/>')


def _routed(a: _Box, b: _Box, marker: str, c: dict[str, Any], labels: _Labels, leave: float, reach: float,
            channels: list[float], n: int) -> str:
    """A line from ``a`` down to ``b`` rows below it that passes no box: down into the gap under ``a``, along it to
    the free channel between columns nearest the line's two ends, down the channel to the gap above ``b``, along
    to ``b``. Lines sharing a channel stand a few pixels apart (by ``n``), so each can be followed."""
    x1, y1, x2, y2 = a.x + a.w * leave, a.y + a.h, b.x + b.w * reach, b.y
    shift = (n % 5 - 2) * 4
    cx = min(channels, key=lambda x: (abs(x - x1) + abs(x - x2), x)) + shift + 6
    g1, g2 = y1 + GAP_Y / 2 + shift, y2 - GAP_Y / 2 + shift
    d = (f"M{_n(x1)},{_n(y1)} L{_n(x1)},{_n(g1)} L{_n(cx)},{_n(g1)} L{_n(cx)},{_n(g2)} L{_n(x2)},{_n(g2)} "
         f"L{_n(x2)},{_n(y2)}")
    text = _rate_text(c)
    if text:
        labels.add(text, x1 + 5, y1 + 14, "start")
    return (f'<path class="connection" d="{d}" fill="none" stroke="{LINE}" stroke-width="1.5" '
            f'stroke-linejoin="round" marker-end="url(#{escape(marker)})"/>')


def _component(b: _Box, org: str, project: str) -> str:
    c = b.data
    state = str(c.get("state") or "not-deployed")
    kind = str(c.get("type") or "service")
    endpoints = c.get("endpoints") or []
    name = (f"Component {b.name}: {kind}, {state}, "
            f"{len(endpoints)} endpoint{'s' if len(endpoints) != 1 else ''}")
    # named by its <title> (an aria-label would have to contain all the visible text to be allowed)
    p = [f'<a class="component" href="{escape(component_href(org, project, b.name))}">',
         f'<title>{escape(name)}</title>',
         f'<rect x="{_n(b.x)}" y="{_n(b.y)}" width="{_n(b.w)}" height="{_n(b.h)}" rx="8" fill="{BOX}" '
         f'stroke="{TEXT}" stroke-width="1.5"/>',
         f'<text x="{_n(b.x + 10)}" y="{_n(b.y + 18)}" font-weight="600" font-size="13" fill="#0b4f9c" '
         f'text-decoration="underline">{escape(_fit(b.name, b.w - 20))}</text>',
         f'<text x="{_n(b.x + 10)}" y="{_n(b.y + 34)}" fill="{MUTED}">{escape(_fit(f"{kind} · {state}", b.w - 20))}'
         f'</text>']
    order = sorted(endpoints, key=lambda e: (VISIBILITIES.index(_visibility(e)), str(e.get("name"))))
    for i, e in enumerate(order):
        line = f"{_visibility(e)}: {e.get('name')} {e.get('basePath') or '/'}"
        if e.get("rps"):
            line += f" · {rate(e.get('rps'))} req/s"
        p.append(f'<text class="endpoint" x="{_n(b.x + 10)}" y="{_n(b.y + HEAD_H + 10 + i * LINE_H)}" '
                 f'fill="{TEXT}" font-size="11">{escape(_fit(line, b.w - 20))}</text>')
    p.append("</a>")
    return "".join(p)


def _outside(b: _Box, project: str) -> str:
    to = b.data
    if to.get("url"):
        kind, name = "external URL", str(to["url"])
    else:
        kind = "another project" if to.get("project") and to["project"] != project else "not in this project"
        name = b.name
    return (f'<g class="outside"><title>{escape(kind)}: {escape(name)}</title>'
            f'<rect x="{_n(b.x)}" y="{_n(b.y)}" width="{_n(b.w)}" height="{_n(b.h)}" rx="8" fill="{BOX}" '
            f'stroke="{LINE}" stroke-dasharray="4 3"/>'
            f'<text x="{_n(b.x + 10)}" y="{_n(b.y + 18)}" fill="{TEXT}">{escape(_fit(name, b.w - 20))}</text>'
            f'<text x="{_n(b.x + 10)}" y="{_n(b.y + 34)}" fill="{MUTED}" font-size="11">{escape(kind)}</text></g>')


# -- the text alternative -------------------------------------------------------------------------------------------


def flows(graph: dict[str, Any]) -> list[dict[str, str]]:
    """Every flow the diagram draws, as text: into public and organization endpoints through the gateways, then
    the connections (from, to, through, rate, errors)."""
    project = str(graph.get("project") or "")
    out: list[dict[str, str]] = []
    through = {"Public": "public gateway (internet)", "Organization": "internal gateway (organization)"}
    for c in sorted(graph.get("components") or [], key=lambda c: str(c.get("name"))):
        for e in c.get("endpoints") or []:
            v = _visibility(e)
            if v in through:
                out.append({"from": through[v], "to": f"{c.get('name')}/{e.get('name')}", "through": v,
                            "rate": f"{rate(e.get('rps'))} req/s", "errors": ""})
    for c in graph.get("connections") or []:
        to = c.get("to") or {}
        if to.get("url"):
            way = "external URL"
        elif (to.get("project") or project) != project:
            way = "internal gateway (another project)"
        else:
            way = "inside the cell"
        measured = _rate_text(c)
        out.append({"from": str(c.get("from")), "to": target_label(to, project), "through": way,
                    "rate": (f"{rate(c.get('rps'))} req/s" if measured else "not measured")
                    + (" (shared with other callers)" if c.get("measured") == "shared" else "")
                    + (" (estimated from traces)" if c.get("measured") == "traces" else ""),
                    "errors": "" if not measured else str(c.get("errors") or 0)})
    return out


def text_alternative(graph: dict[str, Any], org: str) -> Markup:
    """Two tables: the components (linked, with type, state, traffic and endpoints by visibility), the flows."""
    project = str(graph.get("project") or "")
    environment = str(graph.get("environment") or "")
    window = graph.get("window")
    p = ['<div class="cell-text">',
         f'<table class="cell-components"><caption>Components of {escape(project)} in {escape(environment)}'
         + (f" (traffic of the last {escape(compact(window))})" if window else "") + '</caption>',
         '<thead><tr><th scope="col">Component</th><th scope="col">Type</th><th scope="col">State</th>'
         '<th scope="col">Requests/s</th><th scope="col">Errors</th><th scope="col">Endpoints</th></tr></thead><tbody>']
    components = sorted(graph.get("components") or [], key=lambda c: str(c.get("name")))
    for c in components:
        name = str(c.get("name"))
        ends = "; ".join(f"{e.get('name')} ({_visibility(e)})" for e in c.get("endpoints") or []) or "none"
        p.append(f'<tr><th scope="row"><a href="{escape(component_href(org, project, name))}">{escape(name)}</a></th>'
                 f'<td>{escape(c.get("type") or "service")}</td><td>{escape(c.get("state") or "not-deployed")}</td>'
                 f'<td>{escape(rate(c.get("rps")))}</td><td>{escape(percent(c.get("errorRate")))}</td>'
                 f'<td>{escape(ends)}</td></tr>')
    if not components:
        p.append('<tr><td colspan="6">No components yet.</td></tr>')
    p.append('</tbody></table>')
    p.append(f'<table class="cell-flows"><caption>Flows into and out of {escape(project)}</caption>'
             '<thead><tr><th scope="col">From</th><th scope="col">To</th><th scope="col">Through</th>'
             '<th scope="col">Rate</th><th scope="col">Errors</th></tr></thead><tbody>')
    found = flows(graph)
    for f in found:
        p.append(f'<tr><td>{escape(f["from"])}</td><td>{escape(f["to"])}</td><td>{escape(f["through"])}</td>'
                 f'<td>{escape(f["rate"])}</td><td>{escape(f["errors"])}</td></tr>')
    if not found:
        p.append('<tr><td colspan="5">No endpoints reached from outside and no connections.</td></tr>')
    p.append('</tbody></table></div>')
    return built(p)
