"""The Deploy tab: one card per environment of the project's pipeline, in the pipeline's order. A card shows what
runs there (release, build, state, replicas, URLs), the approval requests and decisions of the environment, a
failure's reason with the workload's last log lines, and the actions the viewer may take: deploy the latest build,
promote from the previous environment (after a confirmation page showing the release diff), roll back to an
earlier release. Each action is a plain POST through the in-process API (the API decides and audits) answered by
a 303 back to the tab; made by htmx (console/actions.py), deploy and rollback answer the tab at once with the
result in the live region (the form takes the cards out of it: one extra read, the latest build, when the API's
answer does not name the build), promote with HX-Redirect; each shows its CLI equivalent.

Live state: a card's status part polls ``.../deploy/{env}/state`` every second while its rollout is under way
(every 5 s while only an approval is pending), and the fragment answers 286 (htmx stops polling) once it has
settled. The page costs eight API reads (component, project, pipeline, environments, deployments, releases,
approvals, the latest build; a failed deployment's last log lines besides), a poll six; measured on a test control
plane (SQLite, one component deployed): the page 38 ms, a poll 28 ms (median of 30, over HTTP with the session).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, Response

from cellplane.console import render
from cellplane.console.actions import by_htmx, go
from cellplane.console.apicall import ApiProblem
from cellplane.console.pages_component import BASE, api_path, failed, frame, optional, pipeline_order, project_pipeline
from cellplane.console.viewer import Viewer, viewer

router = APIRouter()

FAILED = ("failed", "crash-loop", "blocked")
LAST_LINES = 15


def rolling(card: dict[str, Any]) -> bool:
    d = card["deployment"]
    return d is not None and (d.get("observedRelease") != d.get("rollout") or d.get("state") == "progressing")


def settled(card: dict[str, Any]) -> bool:
    return not rolling(card) and not card["pending"]


async def _cards(v: Viewer, org: str, project: str, component: str, only: str | None = None) -> dict[str, Any]:
    """Everything the tab shows, read through the API; ``only``: one environment's card."""
    path = api_path(org, project, component)
    doc = await v.api.get(path)
    pipeline = await project_pipeline(v, org, project)
    environments = (await optional(v, f"/organizations/{org}/environments") or {}).get("items", [])
    env_docs = {e["metadata"]["name"]: e for e in environments}
    deployments = {d["environment"]: d for d in (await v.api.get(path + "/deployments"))["items"]}
    # a card's status fragment shows no actions: it needs neither the releases nor the latest build
    releases = [] if only else (await optional(v, path + "/releases", limit=200) or {}).get("items", [])
    approvals = [a for a in (await optional(v, f"/organizations/{org}/approvals", state="all", project=project)
                             or {}).get("items", []) if a.get("component") == component]
    latest = [] if only else (await optional(v, path + "/builds", state="succeeded", limit=1) or {}).get("items", [])
    cards = []
    for env, previous, path_approval in pipeline_order(pipeline, list(env_docs)):
        if only is not None and env != only:
            continue
        spec = (env_docs.get(env) or {}).get("spec") or {}
        flag = spec.get("requiresApproval")
        approval = path_approval or (bool(spec.get("production")) if flag is None else bool(flag))
        d = deployments.get(env)
        mine = [a for a in approvals if a.get("environment") == env]
        ran = [r for r in releases if r["environment"] == env]
        earlier = list({r["release"]: r for r in ran if d is None or r["release"] != d.get("release")}.values())
        last: list[dict[str, Any]] = []
        if d is not None and d.get("state") in FAILED:
            last = (await optional(v, path + "/logs", environment=env, limit=LAST_LINES) or {}).get("items", [])
        cards.append({"name": env, "previous": previous, "previous_deployment": deployments.get(previous or ""),
                      "requires_approval": approval, "deployment": d, "approvals": mine[:5],
                      "pending": [a for a in mine if a.get("state") == "pending"], "earlier": earlier[:20],
                      "last": last, "may_deploy": v.can("deployments:create", org, project, env),
                      "may_approve": v.can("deployments:approve", org, project, env)})
    return {"doc": doc, "cards": cards, "latest": latest[0] if latest else None}


async def _page(v: Viewer, org: str, project: str, component: str, status: int = 200,
                problem: ApiProblem | None = None, problem_env: str = "", flash: str = "") -> HTMLResponse:
    try:
        data = await _cards(v, org, project, component)
    except ApiProblem as e:
        return failed(v, e, org, project, component, "deploy")
    doc = data.pop("doc")
    return v.render("component/deploy.html", status=status, problem=problem, problem_env=problem_env, flash=flash,
                    settled=settled, rolling=rolling, **data, **frame(org, project, component, "deploy", doc))


async def _back(v: Viewer, org: str, project: str, component: str, env: str, outcome: Any, doing: str) -> Response:
    """After an action: a 303 back to the tab (plain form), or the tab rendered at once with ``doing`` in the live
    region (htmx: the form's hx-select takes the environment's card out of it)."""
    if not by_htmx(v.request):
        return go(v.request, f"{frame(org, project, component, 'deploy')['base_url']}/deploy#env-{env}")
    approval = (outcome or {}).get("approval") if isinstance(outcome, dict) else None
    if approval:
        doing = f"{doing}: waiting for approval"
    return await _page(v, org, project, component, flash=doing)


def _build_number(outcome: Any, build: str) -> str:
    deployment = (outcome or {}).get("deployment") if isinstance(outcome, dict) else None
    number = ((deployment or {}).get("build") or {}).get("number")
    return f"build #{number}" if number else (f"build {build}" if build else "the latest build")


@router.get(BASE + "/deploy", include_in_schema=False)
async def deploy_tab(org: str, project: str, component: str, v: Viewer = Depends(viewer)) -> HTMLResponse:
    return await _page(v, org, project, component)


@router.get(BASE + "/deploy/{env}/state", include_in_schema=False)
async def state_fragment(org: str, project: str, component: str, env: str,
                         v: Viewer = Depends(viewer)) -> Response:
    """One card's status part (htmx); 286 once its rollout has settled and no approval is pending."""
    try:
        data = await _cards(v, org, project, component, only=env)
        if not data["cards"]:
            raise ApiProblem(404, "not-found", f"environment '{env}' is not on this project's pipeline")
    except ApiProblem as e:
        # htmx swaps no 4xx answer and would ask again every second: say why in the status' place, and stop
        return HTMLResponse(render.render("component/_stopped.html", id=f"env-{env}-state", problem=e),
                            status_code=286)
    card = data["cards"][0]
    return v.render("component/_env_state.html", status=286 if settled(card) else 200, card=card,
                    settled=settled, rolling=rolling, **frame(org, project, component, "deploy"))


@router.post(BASE + "/deploy/{env}", include_in_schema=False)
async def deploy(org: str, project: str, component: str, env: str, build: Annotated[str, Form(max_length=100)] = "",
                 v: Viewer = Depends(viewer)) -> Response:
    """Deploy a build (default: the latest succeeded one) to ``env``: ``POST .../deployments``."""
    body = {"environment": env, **({"build": build} if build else {})}
    try:
        outcome = await v.api.send("POST", api_path(org, project, component) + "/deployments", body)
    except ApiProblem as e:
        return await _page(v, org, project, component, status=e.status, problem=e, problem_env=env)
    what = _build_number(outcome, build)
    if by_htmx(v.request) and not what.startswith("build #") and not build:
        # the answer (an approval request, or a deployment without its build's number yet) may not name the build:
        # the API deployed the latest succeeded one, as the button said
        latest = await optional(v, api_path(org, project, component) + "/builds", state="succeeded", limit=1)
        what = _build_number({"deployment": {"build": ((latest or {}).get("items") or [{}])[0]}}, build)
    return await _back(v, org, project, component, env, outcome, f"Deploying {what} to {env}")


@router.get(BASE + "/deploy/{env}/promote", include_in_schema=False)
async def confirm_promotion(org: str, project: str, component: str, env: str, source: str = "",
                            v: Viewer = Depends(viewer)) -> HTMLResponse:
    """The confirmation step: what would change in ``env`` (the release diff), before promoting."""
    try:
        data = await _cards(v, org, project, component)
        card = next((c for c in data["cards"] if c["name"] == env), None)
        if card is None:
            raise ApiProblem(404, "not-found", f"environment '{env}' is not on this project's pipeline")
        source = source or card["previous"] or ""
        incoming = next((c["deployment"] for c in data["cards"] if c["name"] == source), None)
        if incoming is None:
            raise ApiProblem(409, "not-deployed", f"nothing runs in '{source or 'the previous environment'}' "
                                                  f"to promote to '{env}'")
        current = card["deployment"]
        diff = None
        if current is not None:
            diff = await v.api.get(f"/organizations/{org}/releases/{current['release']}/diff/{incoming['release']}")
    except ApiProblem as e:
        return failed(v, e, org, project, component, "deploy")
    return v.render("component/promote.html", card=card, source=source, incoming=incoming, current=current,
                    diff=diff, **frame(org, project, component, "deploy", data["doc"]))


@router.post(BASE + "/deploy/{env}/promote", include_in_schema=False)
async def promote(org: str, project: str, component: str, env: str,
                  source: Annotated[str, Form(alias="from", max_length=100)] = "",
                  v: Viewer = Depends(viewer)) -> Response:
    """Promote what runs in ``from`` to ``env``: ``POST .../promotions`` (202: an approval request)."""
    try:
        await v.api.send("POST", api_path(org, project, component) + "/promotions", {"from": source, "to": env})
    except ApiProblem as e:
        return await _page(v, org, project, component, status=e.status, problem=e, problem_env=env)
    # the confirmation page is left for the tab: htmx navigates (HX-Redirect), a plain form follows the 303
    return go(v.request, f"{frame(org, project, component, 'deploy')['base_url']}/deploy#env-{env}")


@router.post(BASE + "/deploy/{env}/rollback", include_in_schema=False)
async def rollback(org: str, project: str, component: str, env: str,
                   to: Annotated[str, Form(max_length=100)] = "", v: Viewer = Depends(viewer)) -> Response:
    """Run an earlier release again in ``env``: ``POST .../deployments/{env}/rollback``."""
    body = {"to": to} if to else {}
    try:
        outcome = await v.api.send("POST", f"{api_path(org, project, component)}/deployments/{env}/rollback", body)
    except ApiProblem as e:
        return await _page(v, org, project, component, status=e.status, problem=e, problem_env=env)
    release = (outcome or {}).get("release") if isinstance(outcome, dict) else None
    return await _back(v, org, project, component, env, outcome, f"Rolling back {env} to release {release or to}")
