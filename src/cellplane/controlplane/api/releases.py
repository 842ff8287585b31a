"""Routes for releases and their movement: promotion, rollback, history, diffs and approvals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from cellplane.controlplane import approvals, cascade, deployments, previews, releases
from cellplane.controlplane import resources as store
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.builds import wake
from cellplane.controlplane.api.deployments import name_query, outcome_view, outcome_words
from cellplane.controlplane.api.deps import Caller, NamePath, Work, audited, parse, platform, require
from cellplane.controlplane.api.routing import api_router, checked_required
from cellplane.controlplane.rbac import Principal, Target
from cellplane.errors import FieldProblem, ForbiddenError, InvalidError
from cellplane.model import KINDS
from cellplane.store.tables import ReleaseRow

router = api_router(tags=["releases"])
ORG = "/organizations/{org}"
COMPONENT = ORG + "/projects/{project}/components/{component}"
if TYPE_CHECKING:  # a documented body is parsed as a JSON object (see ``schemas.documented``)
    PromoteBody = dict[str, Any]
    RollbackBody = dict[str, Any]
    RejectBody = dict[str, Any]
else:
    PromoteBody = Annotated[schemas.documented(schemas.PromoteRequest), Body(description="from where to where")]
    RollbackBody = Annotated[schemas.documented(schemas.RollbackRequest), Body(description="which release")]
    RejectBody = Annotated[schemas.documented(schemas.RejectRequest), Body(description="why")]
IdPath = NamePath  # release and approval ids are short names
OUTCOMES: dict[int | str, dict[str, Any]] = {
    200: {"model": schemas.ChangeOutcome, "description": "updated, or unchanged"},
    202: {"model": schemas.ChangeOutcome, "description": "an approval request is pending"}}


def _respond(s: Session, p: Any, org: str, outcome: deployments.Outcome) -> JSONResponse:
    status = {"created": 201, "pending": 202}.get(outcome.action, 200)
    return JSONResponse(outcome_view(s, p.keyring, org, outcome), status_code=status)


@router.post(COMPONENT + "/promotions", status_code=201, response_model=schemas.ChangeOutcome, responses=OUTCOMES)
def promote(request: Request, org: NamePath, project: NamePath, component: NamePath, body: PromoteBody,
            who: Principal = Caller) -> JSONResponse:
    """Promote the release running in one environment to the next one along the project's pipeline: the same
    artifact and spec, with the target environment's configuration. Into an environment that requires approval
    (or along a path that does), this makes an approval request."""
    p = platform(request)
    work = Work("promote", "Component", org, project, component)
    with audited(p, who, work) as s:
        req = parse(schemas.PromoteRequest, body, "promotion request")
        work.message = f"{req.from_} → {req.to}"
        require(who, "deployments:create", Target(org, project, req.to))
        row = store.get_component(s, org, project, component)
        outcome = deployments.promote(s, p.keyring, row, req.from_, req.to, who.user, req.track)
        work.message = f"{req.from_} → {req.to}: {outcome_words(outcome)}"
        return _respond(s, p, org, outcome)


@router.post(COMPONENT + "/deployments/{environment}/rollback", response_model=schemas.ChangeOutcome,
             responses={200: {"model": schemas.ChangeOutcome}})
def rollback(request: Request, org: NamePath, project: NamePath, component: NamePath, environment: NamePath,
             body: RollbackBody, who: Principal = Caller) -> JSONResponse:
    """Run the release before the current one again (or ``to``, a release that ran there): its artifact and its
    configuration both come back."""
    p = platform(request)
    work = Work("rollback", "Component", org, project, component, f"in {environment}")
    with audited(p, who, work) as s:
        req = parse(schemas.RollbackRequest, body, "rollback request")
        require(who, "deployments:create", Target(org, project, environment))
        row = store.get_component(s, org, project, component)
        outcome = deployments.rollback(s, row, environment, who.user, req.track, req.to)
        work.message = f"in {environment}: {outcome_words(outcome)}"
        return JSONResponse(outcome_view(s, p.keyring, org, outcome), status_code=200)


@router.get(COMPONENT + "/releases", response_model=schemas.ReleaseHistory, response_model_exclude_unset=True)
def history(request: Request, org: NamePath, project: NamePath, component: NamePath,
            environment: str | None = name_query("in this environment"),
            track: str | None = Query(None, min_length=1, max_length=100, description="only this track"),
            limit: int = Query(100, ge=1, le=1000), who: Principal = Caller) -> dict[str, Any]:
    """The component's release history, newest first: which release ran where, from when, by whom, and how (in
    the environments where the caller may read deployments)."""
    p = platform(request)
    with p.store.transaction() as s:
        if not who.sees_project(org, project):
            require(who, "deployments:list", Target(org, project))
        store.get_component(s, org, project, component)
        if environment is not None:
            deployments.environment(s, org, environment)
        events = releases.history(s, org, project, component, environment, track, limit,
                                  who.environments("deployments:list", Target(org, project)))
        rows = {r.id: r for r in s.query(ReleaseRow).filter(ReleaseRow.id.in_({e.release_id for e in events}))}
        numbers = releases.builds_numbers(s, {r.build_id for r in rows.values()})
        current = {(d.environment, d.track): d.release_id for d in deployments.list_rows(s, org, project, component)}
        seen: set[tuple[str, str]] = set()
        items = []
        for e in events:
            key = (e.environment, e.track)
            release = rows.get(e.release_id)
            is_current = key not in seen and current.get(key) == e.release_id
            seen.add(key)
            items.append(releases.event_view(e, release, numbers.get(release.build_id) if release else None,
                                             is_current))
        return {"items": items}


def _release(s: Session, who: Principal, org: str, release_id: str, field_path: str) -> ReleaseRow:
    """A release the caller may read whole: its configuration is read like the environment's (config:read)."""
    if not who.member_of(org):
        require(who, "deployments:get", Target(org))
    row = releases.get(s, org, release_id, field_path)
    require(who, "deployments:get", Target(org, row.project, row.environment))
    require(who, "config:read", Target(org, row.project, row.environment))
    return row


@router.get(ORG + "/releases/{release}", response_model=schemas.Release, response_model_exclude_unset=True)
def show_release(request: Request, org: NamePath, release: IdPath, who: Principal = Caller) -> dict[str, Any]:
    """One release: its artifact, spec and configuration (secret values masked)."""
    p = platform(request)
    with p.store.transaction() as s:
        row = _release(s, who, org, release, "path.release")
        number = releases.builds_numbers(s, {row.build_id}).get(row.build_id)
        return releases.view(row, number, detail=True)


@router.get(ORG + "/releases/{release}/diff/{other}", response_model=schemas.ReleaseDiff,
            response_model_exclude_unset=True)
def diff(request: Request, org: NamePath, release: IdPath, other: IdPath, who: Principal = Caller) -> dict[str, Any]:
    """What changes from one release to another: artifact, spec fields and configuration keys. A secret's value
    is never shown, only that it changed."""
    p = platform(request)
    with p.store.transaction() as s:
        a = _release(s, who, org, release, "path.release")
        b = _release(s, who, org, other, "path.other")
        return releases.diff(a, b)


# -- approvals ------------------------------------------------------------------------------------------------------


@router.get(ORG + "/approvals", response_model=schemas.ApprovalList, response_model_exclude_unset=True)
def list_approvals(request: Request, org: NamePath,
                   state: str | None = Query("pending", pattern="^(pending|approved|rejected|superseded|all)$",
                                             description="which requests ('all' for every state)"),
                   project: str | None = name_query("of this project"), who: Principal = Caller) -> dict[str, Any]:
    """Approval requests the caller may see, newest first (pending ones by default)."""
    p = platform(request)
    with p.store.transaction() as s:
        store.require_owner(s, store.Scope(KINDS["Project"], org), field_path="path")
        if not who.member_of(org):
            require(who, "deployments:list", Target(org))
        rows = approvals.list_rows(s, org, None if state == "all" else state, project)
        return {"items": [approvals.view(r) for r in rows
                          if who.can("deployments:list", Target(org, r.project, r.environment))]}


@router.get(ORG + "/approvals/{approval}", response_model=schemas.Approval, response_model_exclude_unset=True)
def show_approval(request: Request, org: NamePath, approval: IdPath, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with p.store.transaction() as s:
        row = approvals.get(s, org, approval)
        require(who, "deployments:get", Target(org, row.project, row.environment))
        return approvals.view(row)


def _decider(who: Principal, row: Any) -> None:
    require(who, "deployments:approve", Target(row.organization, row.project, row.environment))
    if who.user == row.requested_by:
        raise ForbiddenError(f"{who.user} requested {row.id}: a request is approved or rejected by someone else",
                             [FieldProblem("path.approval", "your own request")], code="own-request")


@router.post(ORG + "/approvals/{approval}/approve", response_model=schemas.ChangeOutcome, status_code=201,
             responses={200: {"model": schemas.ChangeOutcome, "description": "the deployment was updated"}})
def approve(request: Request, org: NamePath, approval: IdPath, who: Principal = Caller) -> JSONResponse:
    """Approve a pending request: its release runs in the environment now."""
    p = platform(request)
    work = Work("approval.approve", "Component", org, name=approval)
    with audited(p, who, work) as s:
        row = approvals.get(s, org, approval)
        work.project, work.name = row.project, row.component
        work.message = f"{row.id}: release {row.release_id} in {row.environment} (requested by {row.requested_by})"
        _decider(who, row)
        outcome = deployments.approve(s, row, who.user)
        return _respond(s, p, org, outcome)


@router.post(ORG + "/approvals/{approval}/reject", response_model=schemas.Approval, status_code=200)
def reject(request: Request, org: NamePath, approval: IdPath, body: RejectBody,
           who: Principal = Caller) -> dict[str, Any]:
    """Reject a pending request, with a reason; nothing runs."""
    p = platform(request)
    work = Work("approval.reject", "Component", org, name=approval)
    with audited(p, who, work) as s:
        req = parse(schemas.RejectRequest, body, "rejection")
        row = approvals.get(s, org, approval)
        work.project, work.name = row.project, row.component
        work.message = f"{row.id}: release {row.release_id} in {row.environment}: {req.reason}"
        _decider(who, row)
        approvals.decide(row, who.user, "rejected", req.reason)
        return approvals.view(row)


# -- previews -------------------------------------------------------------------------------------------------------

PREVIEWS = ORG + "/projects/{project}/previews"
if TYPE_CHECKING:  # a documented body is parsed as a JSON object (see ``schemas.documented``)
    PreviewBody = dict[str, Any]
else:
    PreviewBody = Annotated[schemas.documented(schemas.PreviewRequest), Body(description="the branch")]
BRANCH = Query(None, min_length=1, max_length=250, description="the git branch")


def _preview_view(s: Session, p: Any, row: Any) -> dict[str, Any]:
    viewer = deployments.Viewer(s, p.keyring, row.organization)
    views = [viewer.view(d) for d in deployments.list_rows(s, row.organization, row.project, None, row.environment)]
    return previews.view(s, row, views)


@router.post(PREVIEWS, status_code=201, response_model=schemas.Preview, response_model_exclude_unset=True)
def create_preview(request: Request, org: NamePath, project: NamePath, body: PreviewBody,
                   who: Principal = Caller) -> dict[str, Any]:
    """Build the project's components from a branch and deploy each into a new environment of its own as its
    build succeeds."""
    p = platform(request)
    work = Work("preview.create", "Project", org, project, project)
    with audited(p, who, work) as s:
        req = parse(schemas.PreviewRequest, body, "preview request")
        work.message = f"branch {req.branch}"
        require(who, "previews:create", Target(org, project))
        row = previews.create(s, org, project, req.branch, who.user)
        work.message = f"branch {req.branch}: environment {row.environment}"
        view = _preview_view(s, p, row)
    wake(request)
    return view


@router.get(PREVIEWS, response_model=schemas.PreviewList, response_model_exclude_unset=True)
def list_previews(request: Request, org: NamePath, project: NamePath, branch: str | None = BRANCH,
                  who: Principal = Caller) -> dict[str, Any]:
    """The project's previews whose environments the caller may read deployments in."""
    p = platform(request)
    with p.store.transaction() as s:
        if not who.sees_project(org, project):
            require(who, "deployments:list", Target(org, project))
        store.get(s, store.Scope(KINDS["Project"], org), project)
        rows = [previews.get(s, org, project, branch)] if branch else previews.list_rows(s, org, project)
        return {"items": [_preview_view(s, p, r) for r in rows
                          if who.can("deployments:list", Target(org, project, r.environment))]}


@router.delete(PREVIEWS, response_model=schemas.ResourceDeleted, response_model_exclude_unset=True)
def delete_preview(request: Request, org: NamePath, project: NamePath,
                   branch: str | None = checked_required("the git branch", min_length=1, max_length=250),
                   who: Principal = Caller) -> dict[str, Any]:
    """Remove a preview environment and everything it made."""
    p = platform(request)
    work = Work("preview.delete", "Project", org, project, project, f"branch {branch}")
    with audited(p, who, work) as s:
        if not branch:
            raise InvalidError("give the branch whose preview to delete (?branch=)", [FieldProblem("branch",
                                                                                                  "required")])
        require(who, "previews:delete", Target(org, project))
        row = previews.get(s, org, project, branch)
        return {"deleted": cascade.delete_preview(s, row)}
