"""The console's first page, ``/console/``: the organizations the signed-in user sees (``GET /organizations``), and
for a platform administrator a form creating one (``POST /organizations``; the API decides: anyone else's forged
POST gets the API's own refusal)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cellplane import API_VERSION
from cellplane.console.apicall import ApiProblem
from cellplane.console.viewer import Viewer, viewer

router = APIRouter()


async def _page(v: Viewer, status: int = 200, **context: Any) -> HTMLResponse:
    try:
        found = await v.api.get("/organizations")
    except ApiProblem as e:
        return v.problem(e)
    context.setdefault("problem", None)
    context.setdefault("form", {"name": "", "displayName": ""})
    return v.render("home/organizations.html", status=status, organizations=found.get("items", []), **context)


@router.get("/console/", include_in_schema=False)
async def organizations(v: Viewer = Depends(viewer)) -> HTMLResponse:
    return await _page(v)


@router.post("/console/", include_in_schema=False)
async def create_organization(name: Annotated[str, Form(max_length=200)] = "",
                              display_name: Annotated[str, Form(alias="displayName", max_length=400)] = "",
                              v: Viewer = Depends(viewer)) -> Response:
    document = {"apiVersion": API_VERSION, "kind": "Organization", "metadata": {"name": name.strip()},
                "spec": {"displayName": display_name.strip()} if display_name.strip() else {}}
    try:
        await v.api.send("POST", "/organizations", document)
    except ApiProblem as e:
        return await _page(v, status=e.status, problem=e, form={"name": name, "displayName": display_name})
    return RedirectResponse(f"/console/orgs/{name.strip()}", status_code=303)
