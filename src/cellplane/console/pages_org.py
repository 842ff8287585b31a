"""The organization's pages, ``/console/orgs/{org}``: projects (and creating one), members and their roles (grant,
revoke). The environments and pipeline pages are in ``pages_org_envs``, the approvals inbox and the audit log in
``pages_org_approvals``; their routers are included in this module's, so the console's ``AREAS`` lists one line.

Every page reads through the in-process API (``v.api``): the organization first (its 404 or 403 is the page's error
state), then the page's own lists, then the pending approvals' count for the tabs (one more request; a refusal
there shows no count). Every action posts a plain form (csrf field) whose handler sends one API request: success
is a 303 back to the page, a refusal the page again with the API's message and the fields it names, status kept.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cellplane import API_VERSION
from cellplane.console import pages_org_approvals, pages_org_envs
from cellplane.console.apicall import ApiProblem
from cellplane.console.pages_org_kit import base, org_page, page_all, within
from cellplane.console.viewer import Viewer, viewer
from cellplane.controlplane.rbac import ROLE_NAMES

router = APIRouter()
router.include_router(pages_org_envs.router)
router.include_router(pages_org_approvals.router)

Field = Annotated[str, Form(max_length=2000)]


# -- projects -------------------------------------------------------------------------------------------------------


async def _projects(v: Viewer, org: str, status: int = 200, **context: Any) -> HTMLResponse:
    async def load() -> dict[str, Any]:
        projects = await page_all(v, f"/organizations/{within(org)}/projects")
        counts: dict[str, int] = {}
        for c in await page_all(v, f"/organizations/{within(org)}/components"):
            project = c["metadata"].get("project", "")
            counts[project] = counts.get(project, 0) + 1
        return {"projects": projects, "counts": counts}

    context.setdefault("problem", None)
    context.setdefault("form", {"name": "", "displayName": "", "description": ""})
    return await org_page(v, org, "projects", "org/projects.html", load, status=status, **context)


@router.get("/console/orgs/{org}", include_in_schema=False)
async def projects(org: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    return await _projects(v, org)


@router.post("/console/orgs/{org}/projects", include_in_schema=False)
async def create_project(org: str, name: Field = "", displayName: Field = "", description: Field = "",
                         v: Viewer = Depends(viewer)) -> Response:
    spec = {k: val.strip() for k, val in (("displayName", displayName), ("description", description)) if val.strip()}
    document = {"apiVersion": API_VERSION, "kind": "Project", "metadata": {"name": name.strip()}, "spec": spec}
    try:
        await v.api.send("POST", f"/organizations/{within(org)}/projects", document)
    except ApiProblem as e:
        form = {"name": name, "displayName": displayName, "description": description}
        return await _projects(v, org, status=e.status, problem=e, form=form)
    return RedirectResponse(f"{base(org)}/projects/{name.strip()}", status_code=303)


# -- members --------------------------------------------------------------------------------------------------------


def _members(bindings: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Role bindings grouped by user, users by name (the API lists them so)."""
    by_user: dict[str, list[dict[str, Any]]] = {}
    for b in bindings:
        by_user.setdefault(b["user"], []).append(b)
    return sorted(by_user.items())


async def _members_page(v: Viewer, org: str, status: int = 200, **context: Any) -> HTMLResponse:
    async def load() -> dict[str, Any]:
        bindings = (await v.api.get(f"/organizations/{within(org)}/rolebindings"))["items"]
        return {"members": _members(bindings), "roles": ROLE_NAMES}

    context.setdefault("problem", None)
    context.setdefault("form", {"user": "", "role": "developer", "project": "", "environment": ""})
    return await org_page(v, org, "members", "org/members.html", load, status=status, **context)


@router.get("/console/orgs/{org}/members", include_in_schema=False)
async def members(org: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    return await _members_page(v, org)


@router.post("/console/orgs/{org}/members", include_in_schema=False)
async def grant(org: str, user: Field = "", role: Field = "", project: Field = "", environment: Field = "",
                v: Viewer = Depends(viewer)) -> Response:
    body: dict[str, Any] = {"user": user.strip(), "role": role.strip()}
    if project.strip():
        body["project"] = project.strip()
    if environment.strip():
        body["environment"] = environment.strip()
    try:
        await v.api.send("POST", f"/organizations/{within(org)}/rolebindings", body)
    except ApiProblem as e:
        form = {"user": user, "role": role, "project": project, "environment": environment}
        return await _members_page(v, org, status=e.status, problem=e, form=form)
    return RedirectResponse(f"{base(org)}/members", status_code=303)


@router.post("/console/orgs/{org}/members/{binding}/revoke", include_in_schema=False)
async def revoke(org: str, binding: str, v: Viewer = Depends(viewer)) -> Response:
    try:
        await v.api.send("DELETE", f"/organizations/{within(org)}/rolebindings/{within(binding)}")
    except ApiProblem as e:
        return await _members_page(v, org, status=e.status, problem=e)
    return RedirectResponse(f"{base(org)}/members", status_code=303)
