"""``/console/orgs/{org}/environments`` (environments with their data plane, approval and URLs; data planes with
their state, last heartbeat, runtime and version) and ``/pipeline`` (each deployment pipeline drawn as stages).

Read only: three lists from the API (environments, data planes, pipelines; projects too for the pipeline page),
each paged to its end. A data plane's state follows what the control plane concludes from its reports: connected
while it reported within ``dataplanes.STALE_AFTER`` seconds, unreachable after, never connected without an agent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from cellplane.console.pages_org_kit import org_page, page_all, within
from cellplane.console.viewer import Viewer, viewer
from cellplane.controlplane.dataplanes import STALE_AFTER

router = APIRouter()


def requires_approval(env: dict[str, Any]) -> bool:
    """As pipelines.requires_approval without a path: the environment's flag, by default whether it is production."""
    spec = env.get("spec") or {}
    flag = spec.get("requiresApproval")
    return bool(spec.get("production")) if flag is None else bool(flag)


def plane_view(plane: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    status = plane.get("status") or {}
    agent = status.get("agent") or {}
    seen = agent.get("lastSeen")
    state = "never connected"
    if seen:
        at = datetime.fromisoformat(seen)
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        state = "connected" if ((now or datetime.now(UTC)) - at).total_seconds() <= STALE_AFTER else "unreachable"
    return {"name": plane["metadata"]["name"], "displayName": (plane.get("spec") or {}).get("displayName"),
            "runtime": (plane.get("spec") or {}).get("type", "local"), "state": state, "lastSeen": seen,
            "version": agent.get("version"), "hostname": agent.get("hostname"),
            "gateways": status.get("gateways") or {}}


def environment_view(env: dict[str, Any], planes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = env.get("spec") or {}
    plane = planes.get(spec.get("dataPlane") or "")
    name = env["metadata"]["name"]
    urls = {k: v for k, v in ((plane or {}).get("gateways", {}).get(name) or {}).items()
            if k in ("external", "internal") and isinstance(v, str) and v}
    return {"name": name, "displayName": spec.get("displayName"), "description": spec.get("description"),
            "production": bool(spec.get("production")), "dataPlane": spec.get("dataPlane"),
            "planeState": plane["state"] if plane else None, "approval": requires_approval(env), "urls": urls}


@router.get("/console/orgs/{org}/environments", include_in_schema=False)
async def environments(org: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    async def load() -> dict[str, Any]:
        planes = [plane_view(p) for p in await page_all(v, f"/organizations/{within(org)}/dataplanes")]
        by_name = {p["name"]: p for p in planes}
        envs = [environment_view(e, by_name) for e in await page_all(v, f"/organizations/{within(org)}/environments")]
        return {"environments": envs, "planes": planes}

    return await org_page(v, org, "environments", "org/environments.html", load)


def stages(pipeline: dict[str, Any], envs: dict[str, dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The pipeline as columns of stages: the first column the environments no path leads to, each next column
    the targets of the previous one (an environment in the column where it is first reached). Each stage:
    name, whether it needs approval (the environment's own rule, or the path's), where it comes from."""
    paths = (pipeline.get("spec") or {}).get("promotionPaths") or []
    targets: dict[str, list[dict[str, Any]]] = {}
    for p in paths:
        targets.setdefault(p["source"], []).extend(p.get("targets") or [])
    reached = {t["name"] for ts in targets.values() for t in ts}
    column: list[dict[str, Any]] = [{"name": s, "approval": requires_approval(envs.get(s, {})), "from": []}
              for s in targets if s not in reached]
    if not column and targets:  # a cycle: start anywhere
        first = next(iter(targets))
        column = [{"name": first, "approval": requires_approval(envs.get(first, {})), "from": []}]
    placed = {s["name"] for s in column}
    out: list[list[dict[str, Any]]] = []
    while column:
        out.append(column)
        following: dict[str, dict[str, Any]] = {}
        for stage in column:
            for t in targets.get(stage["name"], []):
                name = t["name"]
                if name in placed and name not in following:
                    continue
                entry = following.setdefault(name, {"name": name, "from": [],
                                                    "approval": requires_approval(envs.get(name, {}))})
                entry["from"].append(stage["name"])
                entry["approval"] = entry["approval"] or bool(t.get("requiresApproval"))
        placed |= set(following)
        column = list(following.values())
    return out


@router.get("/console/orgs/{org}/pipeline", include_in_schema=False)
async def pipeline(org: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    async def load() -> dict[str, Any]:
        envs = {e["metadata"]["name"]: e for e in await page_all(v, f"/organizations/{within(org)}/environments")}
        projects = await page_all(v, f"/organizations/{within(org)}/projects")
        drawn = []
        for p in await page_all(v, f"/organizations/{within(org)}/deploymentpipelines"):
            name = p["metadata"]["name"]
            users = [q["metadata"]["name"] for q in projects
                     if ((q.get("spec") or {}).get("deploymentPipeline") or "default") == name]
            drawn.append({"name": name, "displayName": (p.get("spec") or {}).get("displayName"),
                          "stages": stages(p, envs), "projects": users})
        return {"pipelines": drawn}

    return await org_page(v, org, "pipeline", "org/pipeline.html", load)
