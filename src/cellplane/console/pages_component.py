"""A component's pages: the shared frame (heading, breadcrumbs, the tab bar of templates/component/_tabs.html) and
the Overview tab: type, source, the URLs of its endpoints in each environment (copyable), its latest build and its
releases, each with the CLI command that shows the same.

Every read goes through the in-process API (``Viewer.api``): the overview costs four API requests (the
component, its deployments, its latest build, its releases), each one as the REST API serves it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from cellplane.console.apicall import ApiProblem
from cellplane.console.viewer import Viewer, viewer

router = APIRouter()

BASE = "/console/orgs/{org}/projects/{project}/components/{component}"
# (tab id, label, path below the component's URL); test, observe, config and connections are helper observe's
TABS = [("overview", "Overview", ""), ("build", "Build", "/build"), ("deploy", "Deploy", "/deploy"),
        ("test", "Test", "/test"), ("observe", "Observe", "/observe"), ("config", "Configuration", "/config"),
        ("connections", "Connections", "/connections")]


def console_url(org: str, project: str, component: str) -> str:
    return BASE.format(org=org, project=project, component=component)


def api_path(org: str, project: str, component: str) -> str:
    """The component's path below /api/v1."""
    return f"/organizations/{org}/projects/{project}/components/{component}"


def frame(org: str, project: str, component: str, tab: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every component page's template needs for its heading, breadcrumbs and tab bar."""
    url = console_url(org, project, component)
    return {"org": org, "project": project, "component": component, "tab": tab, "doc": doc or {},
            "base_url": url, "tabs": [(key, label, url + sub) for key, label, sub in TABS],
            "cp": "cellplane" if org == "default" else f"cellplane --org {org}", "cli_scope": f"-p {project}",
            "breadcrumbs": [(org, f"/console/orgs/{org}"), (project, f"/console/orgs/{org}/projects/{project}"),
                            (component, url)]}


def failed(v: Viewer, e: ApiProblem, org: str, project: str, component: str, tab: str) -> HTMLResponse:
    """The API's refusal (404, 403...) inside the component's frame, with the API's status."""
    return v.render("component/problem.html", status=e.status, problem=e, **frame(org, project, component, tab))


async def optional(v: Viewer, path: str, **params: Any) -> Any:
    """A read that may be refused without failing the page (e.g. releases of environments one cannot read):
    None on a 403 or 404."""
    try:
        return await v.api.get(path, **params)
    except ApiProblem as e:
        if e.status in (403, 404):
            return None
        raise


def pipeline_order(pipeline: dict[str, Any] | None, known: list[str]) -> list[tuple[str, str | None, bool]]:
    """(environment, the environment it is promoted from or None, whether the path requires approval), from the
    pipeline's first environment along its promotion paths; environments off the pipeline come last."""
    paths = ((pipeline or {}).get("spec") or {}).get("promotionPaths") or []
    edges = [(p["source"], t["name"], bool(t.get("requiresApproval"))) for p in paths for t in p.get("targets") or []]
    targets = {t for _, t, _ in edges}
    order: list[tuple[str, str | None, bool]] = []
    seen: set[str] = set()
    queue: list[tuple[str, str | None, bool]] = [(s, None, False) for s in dict.fromkeys(p["source"] for p in paths)
                                                 if s not in targets]
    while queue:
        env, previous, approval = queue.pop(0)
        if env in seen:
            continue
        seen.add(env)
        order.append((env, previous, approval))
        queue += [(t, s, a) for s, t, a in edges if s == env and t not in seen]
    order += [(env, None, False) for env in known if env not in seen]
    return order


async def project_pipeline(v: Viewer, org: str, project: str) -> dict[str, Any] | None:
    """The project's deployment pipeline (two API reads), None when the viewer may not read it."""
    project_doc = await v.api.get(f"/organizations/{org}/projects/{project}")
    name = (project_doc.get("spec") or {}).get("deploymentPipeline") or "default"
    found: dict[str, Any] | None = await optional(v, f"/organizations/{org}/deploymentpipelines/{name}")
    return found


def in_pipeline_order(pipeline: dict[str, Any] | None, deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The deployments in the pipeline's order (as the Deploy tab's cards), those off the pipeline last by name."""
    order = [env for env, _, _ in pipeline_order(pipeline, sorted({d["environment"] for d in deployments}))]
    return sorted(deployments, key=lambda d: (order.index(d["environment"]), d.get("track") or ""))


def urls_by_environment(deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (environment, endpoint) with its URLs, in the deployments' order."""
    rows = []
    for d in deployments:
        for ep in d.get("endpoints") or []:
            urls = [(kind, url) for kind, url in (ep.get("urls") or {}).items() if url]
            rows.append({"environment": d["environment"], "endpoint": ep["name"], "type": ep.get("type", ""),
                         "visibility": ", ".join(ep.get("visibility") or []), "state": d.get("state", ""),
                         "urls": urls})
    return rows


@router.get(BASE, include_in_schema=False)
async def overview(org: str, project: str, component: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    path = api_path(org, project, component)
    try:
        doc = await v.api.get(path)
        deployments = in_pipeline_order(await project_pipeline(v, org, project),
                                        (await v.api.get(path + "/deployments"))["items"])
        builds = (await optional(v, path + "/builds", limit=1) or {}).get("items", [])
        releases = (await optional(v, path + "/releases", limit=10) or {}).get("items", [])
    except ApiProblem as e:
        return failed(v, e, org, project, component, "overview")
    return v.render("component/overview.html", latest=builds[0] if builds else None, releases=releases,
                    deployments=deployments, endpoints=urls_by_environment(deployments),
                    **frame(org, project, component, "overview", doc))
