"""Routes for releases and their movement: promotion, rollback, history, diffs and approvals."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from cellplane.controlplane import approvals, cascade, deployments, previews, releases, resources
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.builds import wake
from cellplane.controlplane.api.declare import (
    COMPONENT_SUBJECT,
    ORGANIZATION,
    PROJECT,
    Call,
    Rule,
    Subject,
    documented,
    environment,
    found,
    looked_up,
    reads,
    requires,
)
from cellplane.controlplane.api.deployments import name_query, outcome_view, outcome_words
from cellplane.controlplane.api.deps import NamePath, require
from cellplane.controlplane.api.routing import api_router, checked_required
from cellplane.controlplane.rbac import Target
from cellplane.errors import FieldProblem, ForbiddenError, InvalidError
from cellplane.model import KINDS
from cellplane.store.tables import ReleaseRow

router = api_router(tags=["releases"])
ORG = "/organizations/{org}"
COMPONENT = ORG + "/projects/{project}/components/{component}"
IdPath = NamePath  # release and approval ids are short names
OUTCOMES: dict[int | str, dict[str, Any]] = {
    200: {"model": schemas.ChangeOutcome, "description": "updated, or unchanged"},
    202: {"model": schemas.ChangeOutcome, "description": "an approval request is pending"}}


def _respond(s: Session, p: Any, org: str, outcome: deployments.Outcome) -> JSONResponse:
    status = {"created": 201, "pending": 202}.get(outcome.action, 200)
    return JSONResponse(outcome_view(s, p.keyring, org, outcome), status_code=status)


@router.mutation("POST", COMPONENT + "/promotions", requires("deployments:create"), environment("body", "to"),
                 action="promote", subject=COMPONENT_SUBJECT,
                 body=documented(schemas.PromoteRequest, "promotion request", "from where to where"),
                 status_code=201, response_model=schemas.ChangeOutcome, responses=OUTCOMES)
def promote(c: Call[schemas.PromoteRequest], org: NamePath, project: NamePath, component: NamePath) -> JSONResponse:
    """Promote the release running in one environment to the next one along the project's pipeline: the same
    artifact and spec, with the target environment's configuration. Into an environment that requires approval
    (or along a path that does), this makes an approval request."""
    p, s, req = c.platform, c.session, c.body
    row = resources.get_component(s, org, project, component)
    outcome = deployments.promote(s, p.keyring, row, req.from_, req.to, c.who.user, req.track)
    c.work.message = f"{req.from_} → {req.to}: {outcome_words(outcome)}"
    return _respond(s, p, org, outcome)


@router.mutation("POST", COMPONENT + "/deployments/{environment}/rollback", requires("deployments:create"),
                 environment("path"), action="rollback", subject=COMPONENT_SUBJECT,
                 body=documented(schemas.RollbackRequest, "rollback request", "which release"),
                 message=lambda c: f"in {c['environment']}",
                 response_model=schemas.ChangeOutcome, responses={200: {"model": schemas.ChangeOutcome}})
def rollback(c: Call[schemas.RollbackRequest], org: NamePath, project: NamePath, component: NamePath,
             environment: NamePath) -> JSONResponse:
    """Run the release before the current one again (or ``to``, a release that ran there): its artifact and its
    configuration both come back."""
    s, req = c.session, c.body
    row = resources.get_component(s, org, project, component)
    outcome = deployments.rollback(s, row, environment, c.who.user, req.track, req.to)
    c.work.message = f"in {environment}: {outcome_words(outcome)}"
    return JSONResponse(outcome_view(s, c.platform.keyring, org, outcome), status_code=200)


@router.read(COMPONENT + "/releases", reads("deployments:list"), PROJECT, response_model=schemas.ReleaseHistory,
             response_model_exclude_unset=True)
def history(c: Call[None], org: NamePath, project: NamePath, component: NamePath,
            environment: str | None = name_query("in this environment"),
            track: str | None = Query(None, min_length=1, max_length=100, description="only this track"),
            limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """The component's release history, newest first: which release ran where, from when, by whom, and how (in
    the environments where the caller may read deployments)."""
    s = c.session
    resources.get_component(s, org, project, component)
    if environment is not None:
        deployments.environment(s, org, environment)
    events = releases.history(s, org, project, component, environment, track, limit,
                              c.who.environments(c.permission, Target(org, project)))
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


def _release(c: Call[Any], parameter: str, permission: str) -> ReleaseRow:
    """The release the path's ``parameter`` names, after ``permission`` on the organization for a non-member (no
    release is found by guessing ids)."""
    if not c.who.member_of(c["org"]):
        require(c.who, permission, Target(c["org"]))
    return releases.get(c.session, c["org"], c[parameter], f"path.{parameter}")


def _ran(row: ReleaseRow) -> Target:
    return Target(row.organization, row.project, row.environment)


def _whole_release(c: Call[Any], target: Target) -> None:
    """A release is read whole: its configuration is read like the environment's (config:read)."""
    require(c.who, "deployments:get", target)
    require(c.who, "config:read", target)


RELEASE_READER = Rule("deployments:get", _whole_release, "deployments:get and config:read")


def _one_release(c: Call[Any], permission: str) -> Target:
    c.row = _release(c, "release", permission)
    return _ran(c.row)


def _both_releases(c: Call[Any], permission: str) -> Target:
    """The first release, read whole (checked where it ran), then the second, where the rule checks it."""
    first = _release(c, "release", permission)
    RELEASE_READER.check(c, _ran(first))
    c.row = first, _release(c, "other", permission)
    return _ran(c.row[1])


@router.read(ORG + "/releases/{release}", RELEASE_READER, looked_up("the release's environment", _one_release),
             response_model=schemas.Release, response_model_exclude_unset=True)
def show_release(c: Call[None], org: NamePath, release: IdPath) -> dict[str, Any]:
    """One release: its artifact, spec and configuration (secret values masked)."""
    row = c.row
    number = releases.builds_numbers(c.session, {row.build_id}).get(row.build_id)
    return releases.view(row, number, detail=True)


@router.read(ORG + "/releases/{release}/diff/{other}", RELEASE_READER,
             looked_up("each release's environment", _both_releases), response_model=schemas.ReleaseDiff,
             response_model_exclude_unset=True)
def diff(c: Call[None], org: NamePath, release: IdPath, other: IdPath) -> dict[str, Any]:
    """What changes from one release to another: artifact, spec fields and configuration keys. A secret's value
    is never shown, only that it changed."""
    a, b = c.row
    return releases.diff(a, b)


# -- approvals ------------------------------------------------------------------------------------------------------


@router.read(ORG + "/approvals", reads("deployments:list"), found(ORGANIZATION), response_model=schemas.ApprovalList,
             response_model_exclude_unset=True)
def list_approvals(c: Call[None], org: NamePath,
                   state: str | None = Query("pending", pattern="^(pending|approved|rejected|superseded|all)$",
                                             description="which requests ('all' for every state)"),
                   project: str | None = name_query("of this project")) -> dict[str, Any]:
    """Approval requests the caller may see, newest first (pending ones by default)."""
    rows = approvals.list_rows(c.session, org, None if state == "all" else state, project)
    return {"items": [approvals.view(r) for r in rows
                      if c.who.can(c.permission, Target(org, r.project, r.environment))]}


def _approval(c: Call[Any], _: str) -> Target:
    """The approval request (404 before any permission is checked), and the component it is about (audited)."""
    row = c.row = approvals.get(c.session, c["org"], c["approval"])
    c.work.project, c.work.name = row.project, row.component
    return Target(row.organization, row.project, row.environment)


APPROVAL = looked_up("the approval's environment", _approval)


@router.read(ORG + "/approvals/{approval}", requires("deployments:get"), APPROVAL, response_model=schemas.Approval,
             response_model_exclude_unset=True)
def show_approval(c: Call[None], org: NamePath, approval: IdPath) -> dict[str, Any]:
    return approvals.view(c.row)


def _decider(c: Call[Any], target: Target) -> None:
    require(c.who, "deployments:approve", target)
    if c.who.user == c.row.requested_by:
        raise ForbiddenError(f"{c.who.user} requested {c.row.id}: a request is approved or rejected by someone else",
                             [FieldProblem("path.approval", "your own request")], code="own-request")


DECIDER = Rule("deployments:approve", _decider)  # and not the request's own author
APPROVAL_SUBJECT = Subject("Component", "approval", project="")  # then the approval's component


@router.mutation("POST", ORG + "/approvals/{approval}/approve", DECIDER, APPROVAL, action="approval.approve",
                 subject=APPROVAL_SUBJECT, response_model=schemas.ChangeOutcome, status_code=201,
                 responses={200: {"model": schemas.ChangeOutcome, "description": "the deployment was updated"}})
def approve(c: Call[None], org: NamePath, approval: IdPath) -> JSONResponse:
    """Approve a pending request: its release runs in the environment now."""
    row = c.row
    c.work.message = f"{row.id}: release {row.release_id} in {row.environment} (requested by {row.requested_by})"
    outcome = deployments.approve(c.session, row, c.who.user)
    return _respond(c.session, c.platform, org, outcome)


@router.mutation("POST", ORG + "/approvals/{approval}/reject", DECIDER, APPROVAL, action="approval.reject",
                 subject=APPROVAL_SUBJECT, body=documented(schemas.RejectRequest, "rejection", "why"),
                 response_model=schemas.Approval, status_code=200)
def reject(c: Call[schemas.RejectRequest], org: NamePath, approval: IdPath) -> dict[str, Any]:
    """Reject a pending request, with a reason; nothing runs."""
    row, reason = c.row, c.body.reason
    c.work.message = f"{row.id}: release {row.release_id} in {row.environment}: {reason}"
    approvals.decide(row, c.who.user, "rejected", reason)
    return approvals.view(row)


# -- previews -------------------------------------------------------------------------------------------------------

PREVIEWS = ORG + "/projects/{project}/previews"
BRANCH = Query(None, min_length=1, max_length=250, description="the git branch")


def _preview_view(s: Session, p: Any, row: Any) -> dict[str, Any]:
    viewer = deployments.Viewer(s, p.keyring, row.organization)
    views = [viewer.view(d) for d in deployments.list_rows(s, row.organization, row.project, None, row.environment)]
    return previews.view(s, row, views)


PREVIEW_SUBJECT = Subject("Project", "project")


def _waking(request: Request) -> Any:
    def then(answer: Any) -> Any:
        wake(request)  # once the commit is in: the workers find the new builds
        return answer

    return then


@router.mutation("POST", PREVIEWS, requires("previews:create"), PROJECT, action="preview.create",
                 subject=PREVIEW_SUBJECT, body=documented(schemas.PreviewRequest, "preview request", "the branch"),
                 status_code=201, response_model=schemas.Preview, response_model_exclude_unset=True)
def create_preview(c: Call[schemas.PreviewRequest], org: NamePath, project: NamePath) -> dict[str, Any]:
    """Build the project's components from a branch and deploy each into a new environment of its own as its
    build succeeds."""
    row = previews.create(c.session, org, project, c.body.branch, c.who.user)
    c.work.message = f"branch {c.body.branch}: environment {row.environment}"
    c.after_commit(_waking(c.request))
    return _preview_view(c.session, c.platform, row)


@router.read(PREVIEWS, reads("deployments:list"), PROJECT, response_model=schemas.PreviewList,
             response_model_exclude_unset=True)
def list_previews(c: Call[None], org: NamePath, project: NamePath, branch: str | None = BRANCH) -> dict[str, Any]:
    """The project's previews whose environments the caller may read deployments in."""
    s = c.session
    resources.get(s, resources.Scope(KINDS["Project"], org), project)
    rows = [previews.get(s, org, project, branch)] if branch else previews.list_rows(s, org, project)
    return {"items": [_preview_view(s, c.platform, r) for r in rows
                      if c.who.can(c.permission, Target(org, project, r.environment))]}


def _branch_given(c: Call[Any]) -> None:
    if not c["branch"]:
        raise InvalidError("give the branch whose preview to delete (?branch=)", [FieldProblem("branch", "required")])


@router.mutation("DELETE", PREVIEWS, requires("previews:delete"), PROJECT, action="preview.delete",
                 subject=PREVIEW_SUBJECT, before=_branch_given, message=lambda c: f"branch {c['branch']}",
                 response_model=schemas.ResourceDeleted, response_model_exclude_unset=True)
def delete_preview(c: Call[None], org: NamePath, project: NamePath,
                   branch: str | None = checked_required("the git branch", min_length=1, max_length=250),
                   ) -> dict[str, Any]:
    """Remove a preview environment and everything it made."""
    assert branch is not None  # _branch_given
    row = previews.get(c.session, org, project, branch)
    return {"deleted": cascade.delete_preview(c.session, row)}
