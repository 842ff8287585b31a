"""The approvals inbox, ``/console/orgs/{org}/approvals`` (and one request, ``/approvals/{id}``: the link an
approver is sent), and the audit log, ``/console/orgs/{org}/audit``.

A pending request is shown with the component, the environment, the requester, its age and what it would change:
the release diff (``GET /releases/{running}/diff/{requested}``) against the release that runs there now (``GET
.../deployments/{environment}?track=``; nothing running: the requested release's artifact and build). That is two
API requests per pending request; decided requests (the latest ``DECIDED`` of them) are listed without. Approve and
Reject show only to who may decide (``deployments:approve`` there, and not the requester); the API decides anyway.

The audit log is ``GET /audit?organization=`` (with ``actor`` passed through); the API filters neither action nor
outcome, so the page filters those in the pages it reads (at most ``AUDIT_SCAN`` pages of ``AUDIT_PAGE`` events)
and its "Older" link carries the API's ``before`` cursor.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cellplane.console.apicall import ApiProblem
from cellplane.console.pages_org_kit import base, org_page, within
from cellplane.console.viewer import Viewer, viewer

router = APIRouter()
DECIDED = 20
AUDIT_PAGE = 200
AUDIT_SCAN = 5
AUDIT_SHOWN = 50
OUTCOMES = ("succeeded", "failed", "denied")


def short(value: Any, limit: int = 120) -> str:
    """A spec or configuration value in one line: JSON for structures, cut at ``limit`` characters."""
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def diff_rows(d: dict[str, Any]) -> list[dict[str, str]]:
    """A release diff as rows (what, from, to), secrets never valued; empty when the releases are the same."""
    rows: list[dict[str, str]] = []
    for what in ("environment", "artifact"):
        if d.get(what):
            rows.append({"what": what, "from": short(d[what]["from"]), "to": short(d[what]["to"])})
    for change in d.get("spec") or []:
        rows.append({"what": change["path"], "from": short(change.get("from")), "to": short(change.get("to"))})
    for c in d.get("configuration") or []:
        what = f"configuration {c['key']}"
        if c.get("secret"):
            rows.append({"what": what, "from": f"secret {c['change']}", "to": "(value not shown)"})
        else:
            rows.append({"what": what, "from": short(c.get("from")) if "from" in c else f"({c['change']})",
                         "to": short(c.get("to")) if "to" in c else f"({c['change']})"})
    return rows


def component_path(org: str, a: dict[str, Any]) -> str:
    return f"/organizations/{within(org)}/projects/{within(a['project'])}/components/{within(a['component'])}"


UNSETTLED = ("pending", "progressing")


def settled(deployment: dict[str, Any] | None) -> bool:
    """Whether a deployment's data plane reported its current rollout in a lasting state (nothing to follow)."""
    return deployment is None or (deployment.get("observedRelease") == deployment.get("rollout")
                                  and deployment.get("state") not in UNSETTLED)


async def detailed(v: Viewer, org: str, a: dict[str, Any]) -> dict[str, Any]:
    """The request with what runs in its environment now (``running``: the deployment or None), the diff's rows
    (or ``release``: the requested release, when nothing runs there), ``diff_problem`` (a refusal of either read)
    and whether the viewer may decide it."""
    out: dict[str, Any] = {"a": a, "running": None, "rows": None, "release": None, "diff_problem": None,
                           "settled": True}
    out["may_decide"] = (a["state"] == "pending" and a["requestedBy"] != v.user
                         and v.can("deployments:approve", org, a["project"], a["environment"]))
    try:
        out["running"] = await v.api.get(f"{component_path(org, a)}/deployments/{within(a['environment'])}",
                                         track=a.get("track"))
    except ApiProblem as e:
        if e.status != 404:
            out["diff_problem"] = e
    out["settled"] = settled(out["running"])
    if a["state"] != "pending":
        return out  # decided: what it changed is history; what runs now is shown (and followed while it rolls out)
    try:
        running = out["running"]
        if running and running.get("release") != a["release"]:
            d = await v.api.get(f"/organizations/{within(org)}/releases/{within(running['release'])}"
                                f"/diff/{within(a['release'])}")
            out["rows"] = diff_rows(d)
        elif not running:
            out["release"] = await v.api.get(f"/organizations/{within(org)}/releases/{within(a['release'])}")
    except ApiProblem as e:
        out["diff_problem"] = e
    return out


async def _inbox(v: Viewer, org: str, status: int = 200, **context: Any) -> HTMLResponse:
    async def load() -> dict[str, Any]:
        every = (await v.api.get(f"/organizations/{within(org)}/approvals", state="all"))["items"]
        pending = [await detailed(v, org, a) for a in every if a["state"] == "pending"]
        decided = [a for a in every if a["state"] != "pending"][:DECIDED]
        return {"requests": pending, "decided": decided}

    context.setdefault("problem", None)
    context.setdefault("problem_for", None)
    return await org_page(v, org, "approvals", "org/approvals.html", load, status=status, **context)


@router.get("/console/orgs/{org}/approvals", include_in_schema=False)
async def approvals(org: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    return await _inbox(v, org)


async def _one(v: Viewer, org: str, approval: str, status: int = 200, **context: Any) -> HTMLResponse:
    async def load() -> dict[str, Any]:
        a = await v.api.get(f"/organizations/{within(org)}/approvals/{within(approval)}")
        return {"r": await detailed(v, org, a)}

    context.setdefault("problem", None)
    return await org_page(v, org, "approvals", "org/approval.html", load, status=status, **context)


@router.get("/console/orgs/{org}/approvals/{approval}", include_in_schema=False)
async def approval_page(org: str, approval: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    return await _one(v, org, approval)


@router.get("/console/orgs/{org}/approvals/{approval}/running", include_in_schema=False)
async def running(org: str, approval: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    """htmx fragment: what runs in the request's environment now; 286 (htmx: stop polling) once it settled."""
    try:
        a = await v.api.get(f"/organizations/{within(org)}/approvals/{within(approval)}")
        r = await detailed(v, org, a)
    except ApiProblem as e:
        return v.render("org/_running_problem.html", status=286 if e.status < 500 else e.status, problem=e)
    done = r["settled"] or a["state"] != "approved"
    return v.render("org/_running.html", status=286 if done else 200, r=r, base=base(org), org=org)


async def _decide(v: Viewer, org: str, approval: str, verb: str, body: Any, back: str) -> Response:
    try:
        await v.api.send("POST", f"/organizations/{within(org)}/approvals/{within(approval)}/{verb}", body)
    except ApiProblem as e:
        if back == "inbox":
            return await _inbox(v, org, status=e.status, problem=e, problem_for=approval)
        return await _one(v, org, approval, status=e.status, problem=e)
    return RedirectResponse(f"{base(org)}/approvals/{within(approval)}", status_code=303)


Text = Annotated[str, Form(max_length=2000)]


@router.post("/console/orgs/{org}/approvals/{approval}/approve", include_in_schema=False)
async def approve(org: str, approval: str, back: Text = "", v: Viewer = Depends(viewer)) -> Response:
    return await _decide(v, org, approval, "approve", {}, back)


@router.post("/console/orgs/{org}/approvals/{approval}/reject", include_in_schema=False)
async def reject(org: str, approval: str, reason: Text = "", back: Text = "", v: Viewer = Depends(viewer)) -> Response:
    return await _decide(v, org, approval, "reject", {"reason": reason.strip()}, back)


# -- audit ----------------------------------------------------------------------------------------------------------


@router.get("/console/orgs/{org}/audit", include_in_schema=False)
async def audit(org: str, actor: Annotated[str, Query(max_length=63)] = "",
                action: Annotated[str, Query(max_length=100)] = "",
                outcome: Annotated[str, Query(max_length=20)] = "",
                before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
                v: Viewer = Depends(viewer)) -> HTMLResponse:
    actor, action, outcome = actor.strip(), action.strip(), outcome.strip()

    async def load() -> dict[str, Any]:
        shown: list[dict[str, Any]] = []
        cursor = before
        for _ in range(AUDIT_SCAN):
            found = await v.api.get("/audit", organization=org, actor=actor or None, limit=AUDIT_PAGE,
                                    before=cursor)
            for e in found["items"]:
                if (not action or e["action"] == action or e["action"].startswith(action + ".")) \
                        and (not outcome or e["outcome"] == outcome):
                    shown.append(e)
            cursor = found["metadata"]["before"]
            if cursor is None or len(shown) >= AUDIT_SHOWN:
                break
        if len(shown) > AUDIT_SHOWN:
            cursor, shown = shown[AUDIT_SHOWN - 1]["id"], shown[:AUDIT_SHOWN]
        return {"events": shown, "older": cursor}

    filters = {"actor": actor, "action": action, "outcome": outcome}
    return await org_page(v, org, "audit", "org/audit.html", load, filters=filters, outcomes=OUTCOMES)
