"""The component's Observe page: logs (a live tail and a search), access logs, RED and resource figures, traces
(a trace as a waterfall) and alerts, each panel with its CLI equivalent.

Everything comes through the in-process API (``v.api``): ``.../logs``, ``.../access-logs``, ``.../metrics``,
``.../traces``, ``.../alerts`` (and each rule's latest firings, ``/organizations/{org}/alerts/{id}/events``) and
``/organizations/{org}/traces/{id}`` (drawn by ``charts.component_charts`` and ``waterfall.waterfall``, each chart with
its data table), the panels' requests made together (``asyncio.gather``: the API runs its
sync routes in worker threads); one panel the API refuses (a role without
``traces:get``...) shows the API's message and the others still show. The live tail is htmx polling every second
of ``.../observe/logs?after=<cursor>`` (one API request each): the answer appends the new lines to the list and
replaces the poller with one carrying the new cursor (out of band); nothing new is a 204 (htmx swaps nothing).
Polling stops with the page. Without htmx the page shows the last lines and a reload shows the new ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from cellplane.console import charts
from cellplane.console.apicall import ApiProblem
from cellplane.console.place import Place, place
from cellplane.console.viewer import Viewer, viewer
from cellplane.console.waterfall import waterfall

router = APIRouter()
COMPONENT = "/console/orgs/{org}/projects/{project}/components/{component}"
STREAMS = ("stdout", "stderr", "system")
TAIL = 200  # lines on the page at first
MAX_RULES = 10  # alert rules whose latest firings are read (one API request each)
T = TypeVar("T")

Text = Annotated[str, Query(max_length=200)]


async def attempt(call: Awaitable[T]) -> tuple[T | None, ApiProblem | None]:
    """The API's answer, or its refusal for this panel only."""
    try:
        return await call, None
    except ApiProblem as e:
        return None, e


def _filters(grep: str, stream: str, since: str) -> dict[str, str]:
    return {k: v for k, v in (("grep", grep.strip()), ("stream", stream if stream in STREAMS else ""),
                              ("since", since.strip())) if v}


def _tail_url(p: Place, after: int, filters: dict[str, str]) -> str:
    query = {"env": p.environment, "after": str(after), **{k: v for k, v in filters.items() if k != "since"}}
    return f"{p.url}/observe/logs?{urlencode(query)}"


def _cli(p: Place, *args: str) -> str:
    return " ".join(["cellplane", *args, "-p", p.project])


def log_cli(p: Place, filters: dict[str, str]) -> str:
    extra = [f"--{k} {_quote(v)}" for k, v in filters.items()]
    return _cli(p, "logs", p.component, "--env", p.environment, *extra) + (" --follow" if not filters else "")


def _quote(text: str) -> str:
    return text if text.replace("-", "").replace("_", "").isalnum() else "'" + text.replace("'", "'\\''") + "'"


@router.get(COMPONENT + "/observe", include_in_schema=False)
async def observe(org: str, project: str, component: str, env: Text = "", grep: Text = "", stream: Text = "",
                  since: Text = "", v: Viewer = Depends(viewer)) -> HTMLResponse:
    try:
        p = await place(v, org, project, component, env)
    except ApiProblem as e:
        return v.problem(e)
    filters = _filters(grep, stream, since)
    env_q = {"environment": p.environment}
    (logs, logs_problem), (access, access_problem), (metrics, metrics_problem), (traces, traces_problem), \
        (alerts, alerts_problem) = await asyncio.gather(
            attempt(v.api.get(p.api + "/logs", limit=TAIL, **env_q, **filters)),
            attempt(v.api.get(p.api + "/access-logs", limit=50, **env_q)),
            attempt(v.api.get(p.api + "/metrics", since="1h", **env_q)),
            attempt(v.api.get(p.api + "/traces", since="1h", limit=20, **env_q)),
            attempt(v.api.get(p.api + "/alerts", **env_q)))
    rules = (alerts or {}).get("items", [])[:MAX_RULES]
    fired = await asyncio.gather(*(attempt(v.api.get(f"/organizations/{org}/alerts/{rule['id']}/events", limit=5))
                                   for rule in rules))
    for rule, (events, _) in zip(rules, fired, strict=True):
        rule["firings"] = (events or {}).get("items", [])
    lines = (logs or {}).get("items", [])
    cursor = int((logs or {}).get("next") or (lines[-1]["id"] if lines else -1))
    series = [s for s in (metrics or {}).get("series", []) if s.get("requests") or s.get("memoryBytes")]
    return v.render(
        "component/observe.html", place=p, tab="observe", breadcrumbs=p.breadcrumbs("Observe"),
        form={"grep": grep, "stream": stream, "since": since}, streams=STREAMS, searching=bool(filters),
        lines=lines, more=bool((logs or {}).get("more")), logs_problem=logs_problem,
        tail_url=_tail_url(p, cursor, filters), log_cli=log_cli(p, filters),
        access=(access or {}).get("items", [])[::-1], access_problem=access_problem,
        metrics=metrics, series=series, metrics_problem=metrics_problem,
        charts=charts.component_charts(metrics, "chart") if metrics and series else [],
        traces=(traces or {}).get("items", []), traces_problem=traces_problem,
        alerts=rules, alerts_problem=alerts_problem,
        cli={"access": _cli(p, "logs", p.component, "--env", p.environment, "--access"),
             "metrics": _cli(p, "metrics", p.component, "--env", p.environment),
             "traces": _cli(p, "traces", p.component, "--env", p.environment),
             "alerts": _cli(p, "alerts", "list", "-c", p.component, "--env", p.environment)})


@router.get(COMPONENT + "/observe/logs", include_in_schema=False)
async def log_tail(org: str, project: str, component: str, env: Text = "", after: int = -1, grep: Text = "",
                   stream: Text = "", v: Viewer = Depends(viewer)) -> Response:
    """The lines after ``after`` (htmx fragment): ``<li>``s to append, and the poller with the new cursor."""
    base = f"/organizations/{org}/projects/{project}/components/{component}"
    filters = _filters(grep, stream, "")
    try:
        page = await v.api.get(base + "/logs", environment=env or None, after=after, limit=500, **filters)
    except ApiProblem as e:
        return HTMLResponse(f"{e.message}", status_code=e.status)
    lines = page.get("items", [])
    if not lines:
        return Response(status_code=204)
    p = Place(org, project, component, {}, [env], env)
    cursor = int(page.get("next") or lines[-1]["id"])
    return v.render("component/_log_lines.html", lines=lines, tail_url=_tail_url(p, cursor, filters), oob=True)


@router.get(COMPONENT + "/observe/traces/{trace}", include_in_schema=False)
async def trace_page(org: str, project: str, component: str, trace: str, env: Text = "",
                     v: Viewer = Depends(viewer)) -> HTMLResponse:
    try:
        p = await place(v, org, project, component, env)
        found = await v.api.get(f"/organizations/{org}/traces/{trace}")
    except ApiProblem as e:
        return v.problem(e)
    return v.render("component/trace.html", place=p, tab="observe",
                    breadcrumbs=p.breadcrumbs("Trace " + str(found.get("traceId", trace))[:8]),
                    trace=found, drawn=waterfall(found, org), cli=f"cellplane trace {found.get('traceId', trace)}")
