"""The project's pages: ``/console/orgs/{org}/projects/{project}`` (its components by environment with their
deployments' states, and the cell diagram of one environment with its text alternative) and ``.../new`` (create a
component from a Git repository, through the component-imports API, or from a pasted descriptor, through
``POST .../components``).

Everything is read and changed through the API (``v.api``): the same permission checks, validation and audit as
the CLI. The page costs four API reads (project, components, environments, deployments) plus the pipeline and the
cell graph; the graph needs ``metrics:get`` in its environment, and without it the page still shows the table with
a line saying why the diagram is missing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import quote, urlencode

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cellplane.console.apicall import ApiProblem
from cellplane.console.diagram import cell_diagram
from cellplane.console.viewer import Viewer, viewer

router = APIRouter()
BASE = "/console/orgs/{org}/projects/{project}"
# the API's field paths for a component import, as the form's fields
IMPORT_FIELDS = {"name": "name", "metadata.name": "name", "source.repository": "repository",
                 "source.branch": "branch", "source.ref": "branch", "source.path": "path"}


def project_url(org: str, project: str) -> str:
    return f"/console/orgs/{quote(org, safe='')}/projects/{quote(project, safe='')}"


def crumbs(org: str, project: str, *more: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Organizations", "/console/"), (org, f"/console/orgs/{quote(org, safe='')}"),
            (project, project_url(org, project)), *more]


def ordered_environments(environments: list[dict[str, Any]], pipeline: dict[str, Any] | None) -> list[str]:
    """Environment names in the order of the project's pipeline (each source before its targets, from the first
    source), then any others by name."""
    names = sorted(str(e["metadata"]["name"]) for e in environments)
    order: list[str] = []
    for path in ((pipeline or {}).get("spec") or {}).get("promotionPaths") or []:
        for name in [path.get("source"), *[t.get("name") for t in path.get("targets") or []]]:
            if name in names and name not in order:
                order.append(name)
    return order + [n for n in names if n not in order]


def states(deployments: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    """(component, environment) -> its deployments shown (a superseded one only when nothing else is there)."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for d in deployments:
        found[(d["component"], d["environment"])].append(d)
    out: dict[tuple[str, str], list[dict[str, str]]] = {}
    for key, items in found.items():
        live = [d for d in items if d.get("state") != "superseded"] or items[:1]
        out[key] = [{"state": str(d.get("state")), "track": str(d.get("track") or ""), "message": str(
            d.get("message") or "")} for d in sorted(live, key=lambda d: str(d.get("track")))]
    return out


async def _graph(v: Viewer, org: str, project: str, environment: str) -> tuple[Any, str | None]:
    """The diagram of ``environment``, or None and why not."""
    if not environment:
        return None, "This organization has no environments yet."
    try:
        graph = await v.api.get(f"/organizations/{org}/projects/{project}/graph", environment=environment)
    except ApiProblem as e:
        return None, e.message
    return cell_diagram(graph, org, ident=f"cell-{environment}"), None


@router.get(BASE, include_in_schema=False)
async def project_page(org: str, project: str, environment: str | None = None,
                       v: Viewer = Depends(viewer)) -> HTMLResponse:
    try:
        doc = await v.api.get(f"/organizations/{org}/projects/{project}")
        components = (await v.api.get(f"/organizations/{org}/projects/{project}/components"))["items"]
        envs = (await v.api.get(f"/organizations/{org}/environments"))["items"]
        deployed = (await v.api.get(f"/organizations/{org}/deployments", project=project))["items"]
    except ApiProblem as e:
        return v.problem(e, breadcrumbs=crumbs(org, project))
    pipeline = None
    try:
        name = (doc.get("spec") or {}).get("deploymentPipeline") or "default"
        pipeline = await v.api.get(f"/organizations/{org}/deploymentpipelines/{name}")
    except ApiProblem:
        pass  # the environments by name, then
    names = ordered_environments(envs, pipeline)
    shown = environment if environment in names else (names[0] if names else "")
    diagram, why = await _graph(v, org, project, shown)
    return v.render("project/project.html", breadcrumbs=crumbs(org, project), org=org, project=project, doc=doc,
                    components=components, environments=names, states=states(deployed), environment=shown,
                    diagram=diagram, diagram_problem=why, can_create=v.can("components:create", org, project),
                    created=v.request.query_params.get("created"), base=project_url(org, project))


@router.get(BASE + "/cell", include_in_schema=False)
async def cell_fragment(request: Request, org: str, project: str, environment: str = "",
                        v: Viewer = Depends(viewer)) -> Response:
    """The diagram of one environment (htmx swaps it in); a plain request goes to the page showing it."""
    if not request.headers.get("hx-request"):
        return RedirectResponse(project_url(org, project) + "?" + urlencode({"environment": environment}),
                                status_code=303)
    diagram, why = await _graph(v, org, project, environment)
    return v.render("project/cell.html", org=org, project=project, environment=environment, diagram=diagram,
                    diagram_problem=why)


# -- creating a component ---------------------------------------------------------------------------------------


def _new(v: Viewer, org: str, project: str, status: int = 200, **context: Any) -> HTMLResponse:
    values = {"name": "", "repository": "", "branch": "", "path": ".", "descriptor": "", **context.pop("values", {})}
    return v.render("project/new.html", status=status, breadcrumbs=crumbs(org, project, ("New component", "")),
                    org=org, project=project, base=project_url(org, project), values=values,
                    git_problem=context.pop("git_problem", None), git_errors=context.pop("git_errors", {}),
                    descriptor_problem=context.pop("descriptor_problem", None),
                    can_create=v.can("components:create", org, project), **context)


@router.get(BASE + "/new", include_in_schema=False)
async def new_page(org: str, project: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    try:
        await v.api.get(f"/organizations/{org}/projects/{project}")
    except ApiProblem as e:
        return v.problem(e, breadcrumbs=crumbs(org, project))
    return _new(v, org, project)


def _created(org: str, project: str, name: str) -> Response:
    return RedirectResponse(project_url(org, project) + "?" + urlencode({"created": name}), status_code=303)


@router.post(BASE + "/new/git", include_in_schema=False)
async def create_from_git(request: Request, org: str, project: str, v: Viewer = Depends(viewer)) -> Response:
    form = await request.form()
    values = {k: str(form.get(k) or "").strip() for k in ("name", "repository", "branch", "path")}
    source: dict[str, Any] = {"repository": values["repository"], "path": values["path"] or "."}
    if values["branch"]:
        source["branch"] = values["branch"]
    try:
        await v.api.send("POST", f"/organizations/{org}/projects/{project}/component-imports",
                         {"name": values["name"], "source": source})
    except ApiProblem as e:
        errors: dict[str, str] = {}
        for path, what in e.fields:
            key = IMPORT_FIELDS.get(path) or next((IMPORT_FIELDS[p] for p in IMPORT_FIELDS if path.startswith(p)),
                                                  None)
            if key and key not in errors:
                errors[key] = what
        return _new(v, org, project, status=e.status, values=values, git_problem=e, git_errors=errors)
    return _created(org, project, values["name"])


@router.post(BASE + "/new/descriptor", include_in_schema=False)
async def create_from_descriptor(request: Request, org: str, project: str, v: Viewer = Depends(viewer)) -> Response:
    form = await request.form()
    text = str(form.get("descriptor") or "")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = ApiProblem(422, "invalid", f"the descriptor is not YAML{where}: {getattr(e, 'problem', e)}",
                             [("descriptor", "not valid YAML")])
        return _new(v, org, project, status=422, values={"descriptor": text}, descriptor_problem=problem)
    if not isinstance(doc, dict):
        problem = ApiProblem(422, "invalid", "the descriptor must be a Component document: a mapping with "
                             "metadata and spec", [("descriptor", "not a mapping")])
        return _new(v, org, project, status=422, values={"descriptor": text}, descriptor_problem=problem)
    try:
        created = await v.api.send("POST", f"/organizations/{org}/projects/{project}/components", doc)
    except ApiProblem as e:
        return _new(v, org, project, status=e.status, values={"descriptor": text}, descriptor_problem=e)
    return _created(org, project, str(created["metadata"]["name"]))
