"""Routes that answer an on-call engineer (docs/observability.md): a component's logs and access logs (with
search, filters, pagination and following), its metrics, its traces, one trace, and a project's cell graph."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from cellplane.controlplane import deployments, resources, taskruns
from cellplane.controlplane.api import ndjson, schemas
from cellplane.controlplane.api.declare import ORGANIZATION, Call, environment, reads, requires
from cellplane.controlplane.api.deps import NamePath
from cellplane.controlplane.api.routing import api_router, checked_required
from cellplane.controlplane.platform import Platform
from cellplane.controlplane.rbac import Target
from cellplane.controlplane.telemetry import durations, graph, metrics, traces
from cellplane.controlplane.telemetry.logs import LogPage, LogQuery
from cellplane.errors import CellplaneError, FieldProblem, InvalidError, NotFoundError
from cellplane.model import KINDS
from cellplane.model.meta import NAME_SCHEMA
from cellplane.store.tables import now

router = api_router(tags=["observability"])
ORG = "/organizations/{org}"
PROJECT = ORG + "/projects/{project}"
COMPONENT = PROJECT + "/components/{component}"
RUN_GRACE = 2.0  # seconds a followed run's stream stays open after the run ended, for its last lines
TracePath = Annotated[str, PathParam(pattern=r"^[0-9a-f]{8,32}$",
                                     description="a W3C trace id (32 hex digits), or its first 8 or more")]

# Patterns documented (json_schema_extra) are checked by the routes themselves, with their own messages.
Env = checked_required("the environment", NAME_SCHEMA, max_length=63)
After = Query(None, ge=-1, le=schemas.JSON_SAFE_MAX,
              description="the last line id already seen: lines after it, oldest first")
Before = Query(None, ge=0, le=schemas.JSON_SAFE_MAX,
               description="lines before this id (paging back): the last `limit` of them")
SINCE = {"pattern": f"{schemas.DURATION_PATTERN}|{schemas.TIMESTAMP_PATTERN}"}
Since = Query(None, max_length=40, json_schema_extra=SINCE,
              description="only lines since: a duration ago (10m, 2h) or an ISO timestamp (at most 90 days ago)")
Grep = Query(None, min_length=1, max_length=200, description="only lines containing this text (any case)")
Follow = Query(False, description="stream lines (NDJSON) as they arrive")
Limit = Query(1000, ge=1, le=10000)


def _environment(s: Session, org: str, environment: str | None) -> str:
    if not environment:
        raise InvalidError("give the environment to read (?environment=)",
                           [FieldProblem("environment", "required")])
    if resources.find(s, resources.Scope(KINDS["Environment"], org), environment) is None:
        raise InvalidError(f"environment '{environment}' not found in organization '{org}'",
                           [FieldProblem("environment", "no such environment")])
    return environment


def _component(s: Session, org: str, project: str, component: str, environment: str | None) -> str:
    """The component (its organization and project) must exist; the environment, which must be given and exist."""
    resources.get_component(s, org, project, component)
    return _environment(s, org, environment)


# Where telemetry is read: the environment of the query (the project's target when it is absent, for a refusal to
# name; the route then says the environment is required).
IN_ENVIRONMENT = environment("query")


def _since(text: str | None) -> Any:
    """The start of a filter's range, or None (no bound)."""
    return durations.since(text, 0.0) if text is not None else None


def _since_query(c: Call[Any]) -> None:
    """Checked before the permission: the range's start (``since``), on ``c.prepared``."""
    c.prepared = _since(c["since"])


async def _follow(request: Request, first: LogPage, fetch: Callable[[int], LogPage], after: int, limit: int,
                  run: Callable[[], dict[str, Any] | None] | None = None) -> AsyncIterator[bytes]:
    """An NDJSON stream of ``first``'s lines, then of every line after them as it comes. With ``run`` (the
    followed task run, as ``fetch`` last saw it), the stream also says how the run goes, and ends a moment
    after it ended."""
    items, last = first.items, after
    shown: dict[str, Any] | None = None
    ended: float | None = None
    quiet = ndjson.Quiet(request)
    while True:
        for item in items:
            yield ndjson.line(item)
            last = item["id"]
        if items:
            quiet.spoke()
        info = run() if run is not None else None
        if info is not None:
            if info != shown:
                shown = info
                quiet.spoke()
                yield ndjson.line({"event": "run", "run": info})
            if info["state"] in taskruns.RUN_TERMINAL:
                ended = ended or time.monotonic()
                if not items and time.monotonic() - ended >= RUN_GRACE:
                    return
        if len(items) < limit:
            said = await quiet.wait()
            if said is None:
                return
            if said:
                yield said
        try:
            items = (await asyncio.to_thread(fetch, last)).items
        except CellplaneError:  # deleted meanwhile
            return


# -- logs -----------------------------------------------------------------------------------------------------------


@router.read(COMPONENT + "/logs", requires("logs:get"), IN_ENVIRONMENT, session=None, before=_since_query,
             response_model=schemas.LogPage, response_model_exclude_unset=True,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "with follow: one LogLine (or event) per line"}})
async def component_logs(
        c: Call[None], org: NamePath, project: NamePath, component: NamePath, environment: str | None = Env,
        after: int | None = After, before: int | None = Before, limit: int = Limit, follow: bool = Follow,
        run: str | None = Query(None, min_length=1, max_length=20, description="only the lines of this task run; "
                                "a followed stream ends with the run"),
        since: str | None = Since, grep: str | None = Grep,
        replica: int | None = Query(None, ge=0, le=10000, description="only the lines of this replica"),
        stream: schemas.LogStream | None = Query(None, description="only this stream"),
        ) -> Any:
    """A component's log lines in one environment (the last `limit` by default); with ``follow``, an NDJSON
    stream. Filters combine; ``grep`` matches a substring ignoring case."""
    p, request, start = c.platform, c.request, c.prepared
    run_info: dict[str, Any] | None = None

    def fetch(after_id: int | None, before_id: int | None = None) -> LogPage:
        nonlocal run_info
        with p.store.transaction() as s:
            env = _component(s, org, project, component, environment)
            if run is not None:
                row = taskruns.get_run(s, org, run)
                if (row.project, row.component, row.environment) != (project, component, env):
                    raise NotFoundError(f"task run '{run}' is not a run of '{project}/{component}' in '{env}'",
                                        [FieldProblem("run", "not a run of this component there")])
                run_info = taskruns.run_view(row)
        return p.logs.query(LogQuery(org, project, component, env, after_id, before_id, limit, start, grep, run,
                                     replica, stream))

    if not follow:
        return (await asyncio.to_thread(fetch, after, before)).view(after)
    first = await asyncio.to_thread(fetch, after if after is not None else -1)

    return StreamingResponse(_follow(request, first, fetch, after if after is not None else -1, limit,
                                     (lambda: run_info) if run is not None else None),
                             media_type="application/x-ndjson")


_STATUS = re.compile(r"^([1-5])xx$|^([1-9][0-9]{2})$")


def _status_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = _STATUS.match(text.strip().lower())
    if match is None:
        raise InvalidError(f"status: '{text}' is neither a status code (503) nor a class (5xx)",
                           [FieldProblem("status", "not a status code or class")])
    if match.group(1):
        low = int(match.group(1)) * 100
        return low, low + 99
    return int(match.group(2)), int(match.group(2))


def _access_query(c: Call[Any]) -> None:
    """Checked before the permission: the range's start and the status filter, on ``c.prepared``."""
    c.prepared = _since(c["since"]), _status_range(c["status"])


@router.read(COMPONENT + "/access-logs", requires("logs:get"), IN_ENVIRONMENT, session=None, before=_access_query,
             response_model=schemas.AccessPage, response_model_exclude_unset=True,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "with follow: one AccessLine per line"}})
async def access_logs(
        c: Call[None], org: NamePath, project: NamePath, component: NamePath, environment: str | None = Env,
        after: int | None = After, before: int | None = Before, limit: int = Limit, follow: bool = Follow,
        since: str | None = Since,
        grep: str | None = Query(None, min_length=1, max_length=200, description="only requests whose path or "
                                 "refusal reason contains this text (any case)"),
        status: str | None = Query(None, max_length=3, json_schema_extra={"pattern": _STATUS.pattern},
                                   description="only this status (503) or class (5xx)"),
        endpoint: str | None = Query(None, min_length=1, max_length=63, description="only this endpoint"),
        ) -> Any:
    """The gateway's access lines of a component's endpoints in one environment (routed requests: answered,
    refused or failed)."""
    p, request, (start, statuses) = c.platform, c.request, c.prepared

    def fetch(after_id: int | None, before_id: int | None = None) -> LogPage:
        with p.store.transaction() as s:
            env = _component(s, org, project, component, environment)
        return p.logs.query_access(LogQuery(org, project, component, env, after_id, before_id, limit, start, grep,
                                            status=statuses, endpoint=endpoint))

    if not follow:
        return (await asyncio.to_thread(fetch, after, before)).view(after)
    first = await asyncio.to_thread(fetch, after if after is not None else -1)
    return StreamingResponse(_follow(request, first, fetch, after if after is not None else -1, limit),
                             media_type="application/x-ndjson")


# -- metrics --------------------------------------------------------------------------------------------------------


def _deployment(s: Session, p: Platform, org: str, project: str, component: str, env: str) -> dict[str, Any] | None:
    rows = deployments.list_rows(s, org, project, component, env)
    if not rows:
        return None
    viewer = deployments.Viewer(s, p.keyring, org)
    views = [viewer.view(r) for r in rows]
    view = next((v for v in views if v["state"] != "superseded"), views[0])
    return {"state": view["state"], "message": view["message"], "track": view["track"],
            "replicas": [{"index": r.get("index"), "state": r.get("state"), "restarts": r.get("restarts", 0)}
                         for r in view["replicas"]],
            "scaling": view["scaling"], "scalingStatus": view["scalingStatus"]}


def _metrics_range(c: Call[Any]) -> None:
    """Checked before the permission: the range (``since`` to now) and its ``step``, on ``c.prepared``."""
    step = c["step"]
    start = durations.since(c["since"], 3600.0)
    end = now()
    if start >= end:
        raise InvalidError("since: the range starts in the future", [FieldProblem("since", "in the future")])
    if step is not None and (end - start).total_seconds() / step > 2000:
        raise InvalidError(f"step: {step}s gives more than 2000 points over the range",
                           [FieldProblem("step", "too small for the range")])
    c.prepared = start, end


@router.read(COMPONENT + "/metrics", requires("metrics:get"), IN_ENVIRONMENT, before=_metrics_range,
             response_model=schemas.ComponentMetrics, response_model_exclude_unset=True)
def component_metrics(
        c: Call[None], org: NamePath, project: NamePath, component: NamePath, environment: str | None = Env,
        since: str | None = Query(None, max_length=40, json_schema_extra=SINCE,
                                  description="the range's start: a duration ago (default 1h) "
                                  "or an ISO timestamp"),
        step: int | None = Query(None, ge=10, le=604800, description="seconds per point of the series (default: "
                                 "at most 60 points)"),
        ) -> dict[str, Any]:
    """Is it up, is it erroring, is it slow: requests (RED) per endpoint, replicas' CPU and memory, restarts
    and task runs over a range, with a series for charts."""
    s, (start, end) = c.session, c.prepared
    env = _component(s, org, project, component, environment)
    view = metrics.component_view(s, org, project, component, env, start, end, step)
    return {"project": project, "component": component, "environment": env,
            "deployment": _deployment(s, c.platform, org, project, component, env), **view}


# -- traces ---------------------------------------------------------------------------------------------------------


def _hops(c: Call[Any]) -> traces.Visible:
    """The hops of a trace the caller sees: those in a project and environment where it may read traces (an
    environment-scoped binding sees its environment's hops only; see ``rbac.ENVIRONMENT_BOUND``)."""
    who, org, permission = c.who, c["org"], c.permission
    return lambda project, environment: who.can(permission, Target(org, project, environment))


def _traces_since(c: Call[Any]) -> None:
    """Checked before the permission: the range's start (default: an hour ago), on ``c.prepared``."""
    c.prepared = durations.since(c["since"], 3600.0)


@router.read(COMPONENT + "/traces", requires("traces:get"), IN_ENVIRONMENT, before=_traces_since,
             response_model=schemas.TraceList, response_model_exclude_unset=True)
def component_traces(
        c: Call[None], org: NamePath, project: NamePath, component: NamePath, environment: str | None = Env,
        since: str | None = Query(None, max_length=40, json_schema_extra=SINCE,
                                  description="a duration ago (default 1h) or a timestamp"),
        slow: float | None = Query(None, ge=0, le=1e7, description="only traces taking at least this many ms"),
        errors: bool = Query(False, description="only traces with a failed hop (status 5xx)"),
        limit: int = Query(20, ge=1, le=200),
        ) -> dict[str, Any]:
    """Recent traces through the component, newest first, each with every hop the caller may see."""
    s = c.session
    env = _component(s, org, project, component, environment)
    return {"items": traces.of_component(s, org, project, component, env, c.prepared, slow, errors, limit,
                                         _hops(c))}


@router.read(ORG + "/traces/{trace}", reads("traces:get"), ORGANIZATION, response_model=schemas.Trace,
             response_model_exclude_unset=True)
def show_trace(c: Call[None], org: NamePath, trace: TracePath) -> dict[str, Any]:
    """One trace: the hops the caller may see (of projects and environments where it may read traces)."""
    found = traces.one(c.session, org, trace, _hops(c))
    if found is None:
        raise NotFoundError(f"trace '{trace}' not found in organization '{org}'",
                            [FieldProblem("trace", "not found (or past its retention)")])
    return found


# -- the cell -------------------------------------------------------------------------------------------------------


def _window(c: Call[Any]) -> None:
    """Checked before the permission: the window, in seconds, on ``c.prepared``."""
    c.prepared = durations.seconds(c["window"], "window", 10.0, 86400.0)


@router.read(PROJECT + "/graph", requires("metrics:get"), IN_ENVIRONMENT, before=_window,
             response_model=schemas.CellGraph, response_model_exclude_unset=True)
def cell_graph(c: Call[None], org: NamePath, project: NamePath, environment: str | None = Env,
               window: str = Query("5m", max_length=20, json_schema_extra={"pattern": schemas.DURATION_PATTERN},
                                   description="the range request rates are taken over (10s..1d)"),
               ) -> dict[str, Any]:
    """The project's cell in one environment: components with their endpoints by visibility, and the
    connections between them (and to other projects and external URLs) with their request rates. Its rates are
    the environment's metrics: reading it needs ``metrics:get`` there."""
    s = c.session
    resources.get(s, resources.Scope(KINDS["Project"], org), project)
    env = _environment(s, org, environment)
    end = now()
    return graph.cell(s, c.platform.keyring, org, project, env, end - timedelta(seconds=c.prepared), end)
