"""`metrics`, `traces` and `trace`: how a component does in an environment, and where its requests spend time.
Also the drawing of a project's cell for `describe project P --env ENV`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from cellplane.cli import charts
from cellplane.cli.app import app, state
from cellplane.cli.client import CliError
from cellplane.cli.commands_builds import component_path
from cellplane.cli.commands_deploy import ENV, OUTPUT, PROJECT
from cellplane.cli.output import Format, dump, out
from cellplane.figures import target_label

SINCE = typer.Option("1h", "--since", help="the time range: 10m, 1h, 2d, ... back from now, or an ISO 8601 time")
STATE_STYLE = {"ready": "green", "idle": "green", "scheduled": "green", "scaled-to-zero": "green", "failed": "red",
               "crash-loop": "red",
               "blocked": "red", "unreachable": "red"}
BAR = 30  # columns of a trace's waterfall
CHART_MIN, CHART_PIPED, CHART_SCALE = 20, 120, 30  # a chart's columns: at least; the width of piped output; its scale


def _styled(value: str) -> str:
    style = STATE_STYLE.get(value, "yellow")
    return f"[{style}]{escape(value)}[/]"


def _numbers(columns: Sequence[str], rows: Sequence[Sequence[object]], first: int = 1) -> Table:
    """A table like the CLI's others, with numbers (every column after the first ``first``) aligned right."""
    t = Table(box=None, pad_edge=False, header_style="bold")
    for i, title in enumerate(columns):
        t.add_column(title, justify="right" if i >= first else "left")
    for row in rows:
        t.add_row(*[escape(str(cell)) for cell in row])
    return t


# -- metrics -----------------------------------------------------------------------------------------------------


@app.command()
def metrics(
    ctx: typer.Context,
    component: str = typer.Argument(...),
    env: str = ENV,
    project: str = PROJECT,
    since: str = SINCE,
    output: Format = OUTPUT,
) -> None:
    """Is COMPONENT up in an environment, how busy and how fast is it.

    The deployment's state and restarts; requests, errors and latency (in all and per endpoint); CPU and memory
    per replica; task runs; and a chart of each over the time range."""
    st = state(ctx)
    since = charts.duration(since, "--since", timestamp=True) or "1h"
    m = st.client.get(component_path(st, project, component) + "/metrics", environment=env, since=since)
    if output != Format.table:
        return dump(m, output)
    show_metrics(m, since)


def show_metrics(m: dict[str, Any], since: str) -> None:
    name, env, window = m.get("component") or "", m.get("environment") or "", charts.span(since)
    s = m.get("summary") or {}
    dep = m.get("deployment")
    out.print(_health(name, env, dep, s, window))
    runs = s.get("taskRuns") or {}
    is_task = bool(dep and dep.get("state") in ("idle", "scheduled") and not dep.get("replicas"))
    if is_task or runs.get("succeeded") or runs.get("failed"):
        failed = runs.get("failed") or 0
        out.print(f"task runs {window}: {runs.get('succeeded') or 0} succeeded, "
                  + (f"[red]{failed} failed[/]" if failed else "0 failed"))
    out.print()
    if not s.get("requests"):
        out.print(f"no requests {window}")
    else:
        rows = [["(all)", s], *[[e.get("endpoint") or "-", e] for e in m.get("endpoints") or []]]
        out.print(_numbers(["ENDPOINT", "REQUESTS", "RPS", "ERRORS", "ERROR %", "P50", "P95", "P99"], [
            [label, r.get("requests") or 0, charts.rate(r.get("rps")), r.get("errors") or 0,
             charts.percent(r.get("errorRate")), charts.ms(r.get("p50Ms")), charts.ms(r.get("p95Ms")),
             charts.ms(r.get("p99Ms"))] for label, r in rows]))
    replicas = m.get("replicas") or []
    if replicas:
        states = {r.get("index"): r.get("state") for r in (dep or {}).get("replicas") or []}
        out.print()
        out.print(_numbers(["REPLICA", "STATE", "CPU %", "MEMORY MiB", "RESTARTS"], [
            [r.get("replica"), states.get(r.get("replica")) or "-", charts.number(r.get("cpuPercent")),
             charts.mib(r.get("memoryBytes")), r.get("restarts") or 0] for r in replicas], first=2))
    scaling = m.get("scaling")
    if scaling:
        cold = scaling.get("coldStarts") or 0
        out.print()
        took = (f", mean {scaling.get('coldStartMeanSeconds'):.2f}s, max {scaling.get('coldStartMaxSeconds'):.2f}s"
                if cold else "")
        out.print(f"scaling: {scaling.get('replicas')} replicas (wants {scaling.get('desiredReplicas')}); "
                  f"{charts.plural(cold, 'cold start')} {window}{took}")
    series = m.get("series") or []
    if any(p.get("requests") or p.get("cpuPercent") is not None or p.get("memoryBytes") is not None
           or p.get("replicas") is not None for p in series):
        out.print()
        _chart(series, m.get("since"), m.get("until"), m.get("step"), MEASURES + (SCALING_MEASURES if scaling else []))


def _health(name: str, env: str, dep: dict[str, Any] | None, s: dict[str, Any], window: str) -> str:
    """The answer to 'is it up': the deployment's state, replicas ready of all, restarts."""
    where = f"[bold]{escape(name)}[/] in {escape(env)}"
    if not dep:
        return f"{where}: [yellow]not deployed[/]"
    state_ = dep.get("state") or "pending"
    text = f"{where}: {_styled(state_)}"
    replicas = dep.get("replicas") or []
    if replicas:
        ready = sum(r.get("state") == "ready" for r in replicas)
        style = "green" if ready == len(replicas) else "red" if ready == 0 else "yellow"
        text += f", [{style}]{ready}/{len(replicas)} replicas ready[/]"
    total = sum(r.get("restarts") or 0 for r in replicas)
    recent = s.get("restarts") or 0
    if replicas or recent:
        text += f", {charts.plural(total, 'restart')}" + (f" ([red]{recent} {window}[/])" if recent else "")
    status = dep.get("scalingStatus") or {}
    if state_ == "scaled-to-zero":
        text += ": no replica runs, the next request wakes one"
    elif status and status.get("desired") != status.get("current"):
        text += f", scaling to {status.get('desired')}"
    if status.get("reason"):
        text += f" ({escape(str(status['reason']))})"
    if dep.get("message") and state_ not in ("ready", "idle", "scheduled", "scaled-to-zero"):
        text += f": {escape(dep['message'])}"
    return text


MEASURES: list[tuple[str, Callable[[dict[str, Any]], float | None], Callable[[float | None], str], bool]] = [
    ("rps", lambda p: p.get("rps"), charts.rate, True),
    ("error %", lambda p: None if p.get("errorRate") is None else p["errorRate"] * 100,
     lambda v: charts.number(v, 1) + "%" if v is not None else "-", True),
    ("p95", lambda p: p.get("p95Ms"), charts.ms, True),
    ("cpu %", lambda p: p.get("cpuPercent"), lambda v: charts.number(v, 1) + "%" if v is not None else "-", True),
    ("memory MiB", lambda p: p.get("memoryBytes"), charts.mib, False),
]
SCALING_MEASURES: list[tuple[str, Callable[[dict[str, Any]], float | None], Callable[[float | None], str], bool]] = [
    ("replicas", lambda p: p.get("replicas"), lambda v: charts.number(v, 0) if v is not None else "-", True),
    ("cold starts", lambda p: p.get("coldStarts"), lambda v: charts.number(v, 0) if v is not None else "-", True),
]


def _chart(series: list[dict[str, Any]], since: str | None, until: str | None, step: Any,
           measures: list[tuple[str, Callable[[dict[str, Any]], float | None], Callable[[float | None], str], bool]]
           ) -> None:
    """One sparkline per measure over the time range, its minimum and maximum, and the range's ends under it."""
    label = max(len(m[0]) for m in measures)
    room = max(CHART_MIN, (out.width if out.is_terminal else CHART_PIPED) - label - 2 - CHART_SCALE)
    width = min(len(series), room)
    per = -(-len(series) // width)  # points of the series per column
    for title, get, fmt, zero in measures:
        values = [get(p) for p in series]
        known = [v for v in values if v is not None]
        scale = f"min {fmt(min(known))}  max {fmt(max(known))}" if known else "no data"
        line = charts.sparkline(charts.squeeze(values, width), zero)
        out.print(f"{title:<{label}}  [cyan]{line}[/]  [dim]{escape(scale)}[/]")
    start, end = charts.when(since or series[0].get("at")), charts.when(until)
    width = len(line)
    every = f"   (one column per {charts.compact(step * per)})" if isinstance(step, int | float) and step else ""
    if width >= len(start) + len(end) + 2:
        out.print(f"[dim]{' ' * (label + 2)}{start}{' ' * (width - len(start) - len(end))}{end}{every}[/]")
    else:
        out.print(f"[dim]{' ' * (label + 2)}{start} → {end}{every}[/]")


# -- traces ------------------------------------------------------------------------------------------------------


@app.command()
def traces(
    ctx: typer.Context,
    component: str = typer.Argument(...),
    env: str = ENV,
    project: str = PROJECT,
    since: str = SINCE,
    slow: str = typer.Option(None, "--slow", help="only traces taking at least this long: 200ms, 1s, 0.5s "
                             "(a bare number is milliseconds)"),
    errors: bool = typer.Option(False, "--errors", help="only traces with a server error (status >= 500)"),
    limit: int = typer.Option(20, "--limit", min=1, max=200, help="at most this many traces"),
    output: Format = OUTPUT,
) -> None:
    """Recent requests that went through COMPONENT, newest first, with their hops across components.

    Each hop shows its status, duration and where in the request it happened (a waterfall).
    Show one trace: cellplane trace TRACE_ID."""
    st = state(ctx)
    since = charts.duration(since, "--since", timestamp=True) or "1h"
    slow_ms = charts.milliseconds(slow, "--slow")
    answer = st.client.get(component_path(st, project, component) + "/traces", environment=env, since=since,
                           slow=slow_ms, errors="true" if errors else None, limit=limit)
    if output != Format.table:
        return dump(answer, output)
    items = answer.get("items") or []
    if not items:
        which = " slow" if slow else ""
        which += " failed" if errors else ""
        out.print(f"no{which} traces through {escape(component)} in {escape(env)} {charts.span(since)}")
        return
    for n, trace_ in enumerate(items):
        if n:
            out.print()
        show_trace(trace_)


@app.command()
def trace(ctx: typer.Context, trace_id: str = typer.Argument(..., metavar="TRACE_ID",
                                                        help="32 hex digits, or the first 8 or more"),
          output: Format = OUTPUT) -> None:
    """One trace: every hop of a request across components (those you may see), with a waterfall."""
    st = state(ctx)
    trace_id = trace_id.strip().lower()
    if not 8 <= len(trace_id) <= 32 or any(c not in "0123456789abcdef" for c in trace_id):
        raise CliError(f"TRACE_ID: give a trace id's 32 hex digits, or its first 8 or more (cellplane traces "
                       f"COMPONENT and logs --access show them), not '{trace_id}'")
    t = st.client.get(f"/organizations/{st.org}/traces/{trace_id}")
    if output != Format.table:
        return dump(t, output)
    show_trace(t)


def show_trace(t: dict[str, Any]) -> None:
    """A header line (start, id, duration, status, root), then one line per span, indented by depth, with a bar
    placing it in the trace's time."""
    spans = t.get("spans") or []
    error = "red" if t.get("error") else "bold"
    out.print(f"[{error}]{escape(charts.when(t.get('start')))}  {escape(t.get('traceId') or '')}  "
              f"{charts.ms(t.get('durationMs'))}  {t.get('status')}  {escape(t.get('root') or '')} "
              f"{escape(t.get('name') or '')}[/]  [dim]{charts.plural(len(spans), 'span')}[/]")
    total = max([t.get("durationMs") or 0.0] + [(s.get("offsetMs") or 0) + (s.get("durationMs") or 0)
                                                for s in spans])
    labels = [("  " * (s.get("depth") or 0)) + f"{s.get('project')}/{s.get('component')} {s.get('endpoint')} "
              f"({s.get('listener')}) {s.get('name')}" for s in spans]
    width = max((len(label) for label in labels), default=0)
    durations = [charts.ms(s.get("durationMs")) for s in spans]
    offsets = [f"+{charts.ms(s.get('offsetMs') or 0)}" for s in spans]
    dw, ow = max(map(len, durations), default=0), max(map(len, offsets), default=0)
    for s, label, took, offset in zip(spans, labels, durations, offsets, strict=True):
        start, length = charts.bar(s.get("offsetMs") or 0, s.get("durationMs") or 0, total, BAR)
        failed = isinstance(s.get("status"), int) and s["status"] >= 500
        color = "red" if failed else "cyan"
        waterfall = f"[dim]{'·' * start}[/][{color}]{'█' * length}[/][dim]{'·' * (BAR - start - length)}[/]"
        line = escape(f"  {label:<{width}}  {s.get('status')!s:>3}  {took:>{dw}}  {offset:>{ow}}")
        out.print((f"[red]{line}[/]" if failed else line) + f"  {waterfall}")


# -- the cell of a project (describe project P --env ENV) --------------------------------------------------------


VISIBILITIES = ("Public", "Organization", "Project")


def show_graph(g: dict[str, Any]) -> None:
    """Each component with its state, traffic and endpoints by visibility, then the connections between them."""
    window = g.get("window")
    out.print(f"[bold]Project {escape(g.get('project') or '')}[/] in {escape(g.get('environment') or '')}"
              + (f"  [dim](traffic of the last {charts.compact(window)})[/]" if window else ""))
    components = g.get("components") or []
    if not components:
        out.print("  no components")
    for c in components:
        out.print()
        tree = Tree(f"[bold]{escape(c.get('name') or '')}[/]  {escape(c.get('type') or '-')}  "
                    f"{_styled(c.get('state') or 'not-deployed')}  {charts.rate(c.get('rps'))} req/s  "
                    f"{_error_rate(c.get('errorRate'))}", guide_style="dim")
        groups: dict[str, list[dict[str, Any]]] = {}
        for e in c.get("endpoints") or []:
            groups.setdefault(_visibility(e.get("visibility")), []).append(e)
        for visibility in sorted(groups, key=lambda v: VISIBILITIES.index(v) if v in VISIBILITIES else 9):
            branch = tree.add(f"[dim]{escape(visibility)}[/]")
            for e in groups[visibility]:
                branch.add(escape(f"{e.get('name')}  {e.get('url') or '(URL not reported yet)'}  "
                                  f"{charts.rate(e.get('rps'))} req/s"))
        if not groups:
            tree.add("[dim]no endpoints[/]")
        out.print(tree)
    connections = g.get("connections") or []
    out.print()
    out.print("[bold]Connections[/]")
    if not connections:
        out.print("  none")
        return
    rows = [(c.get("from") or "", target_label(c.get("to") or {}, g.get("project")), c) for c in connections]
    left = max(len(r[0]) for r in rows)
    right = max(len(r[1]) for r in rows)
    for source, target, c in rows:
        line = escape(f"  {source:<{left}} ──▶ {target:<{right}}  ")
        if c.get("rps") is None or c.get("measured") == "none":
            out.print(line + "[dim]not measured[/]")
            continue
        errors = c.get("errors") or 0
        said = f"[red]{charts.plural(errors, 'error')}[/]" if errors else "0 errors"
        note = {"shared": "  [dim](its calls through the cell, shared with other callers, are not told apart)[/]",
                "traces": "  [dim](its share of the cell's calls, estimated from traces)[/]"}.get(c.get("measured"), "")
        out.print(line + f"{charts.rate(c.get('rps'))} req/s ({said}){note}")


def _visibility(value: Any) -> str:
    """An endpoint's visibility; of a list (as in a component's spec), the widest."""
    if isinstance(value, list):
        return next((v for v in VISIBILITIES if v in value), value[0] if value else "-")
    return value or "-"



def _error_rate(ratio: float | None) -> str:
    if ratio is None:
        return "[dim]- errors[/]"
    text = f"{charts.percent(ratio)} errors"
    return f"[red]{text}[/]" if ratio > 0 else text
