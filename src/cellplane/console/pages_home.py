"""The console's first page, ``/console/``: the organizations the signed-in user sees (``GET /organizations``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from cellplane.console.apicall import ApiProblem
from cellplane.console.viewer import Viewer, viewer

router = APIRouter()


@router.get("/console/", include_in_schema=False)
async def organizations(v: Viewer = Depends(viewer)) -> HTMLResponse:
    try:
        found = await v.api.get("/organizations")
    except ApiProblem as e:
        return v.problem(e)
    return v.render("home/organizations.html", organizations=found.get("items", []))
