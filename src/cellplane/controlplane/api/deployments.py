"""Routes for deployments, endpoints and task runs (the user's side of the data plane; logs are in ``observe``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from cellplane.controlplane import approvals, deployments, resources, taskruns
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.declare import (
    COMPONENT_SUBJECT,
    ORGANIZATION,
    PROJECT,
    Call,
    documented,
    environment,
    found,
    looked_up,
    reads,
    requires,
)
from cellplane.controlplane.api.deps import NamePath, require
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.rbac import Principal, Target
from cellplane.errors import ConflictError, FieldProblem, InvalidError
from cellplane.model.component import TASK_TYPES
from cellplane.store.tables import DeploymentRow

router = api_router(tags=["deployments"])
ORG = "/organizations/{org}"
COMPONENT = ORG + "/projects/{project}/components/{component}"
RunPath = Annotated[str, PathParam(min_length=1, max_length=20, description="a task run id (run_...)")]

def name_query(what: str) -> Any:
    """A filter by name (a new parameter each time: FastAPI binds one Query object to one parameter name)."""
    return Query(None, min_length=1, max_length=63, description=f"only {what}")


def _readable(who: Principal, permission: str, rows: list[DeploymentRow]) -> list[DeploymentRow]:
    """The deployments whose ``permission`` (a read) the caller holds where they run: an environment-scoped binding
    reads its own environment's only (``rbac.ENVIRONMENT_BOUND``), a project binding its project's."""
    return [r for r in rows if who.can(permission, Target(r.organization, r.project, r.environment))]


# -- deployments ----------------------------------------------------------------------------------------------------


@router.mutation("POST", COMPONENT + "/deployments", requires("deployments:create"), environment("body"),
                 action="deploy", subject=COMPONENT_SUBJECT,
                 body=documented(schemas.DeployRequest, "deploy request", "what to deploy where"),
                 status_code=201, response_model=schemas.Deployment, response_model_exclude_unset=True,
                 responses={200: {"model": schemas.Deployment,
                                  "description": "already deployed there: updated to the build, or unchanged"},
                            202: {"model": schemas.ChangeOutcome,
                                  "description": "the environment requires approval: an approval request is pending"}})
def deploy(c: Call[schemas.DeployRequest], response: Response, org: NamePath, project: NamePath,
           component: NamePath) -> Any:
    """Deploy a build of the component (its latest succeeded build by default) to an environment: a release of
    that artifact with the component's spec and the environment's configuration."""
    s, keyring, req = c.session, c.platform.keyring, c.body
    row = resources.get_component(s, org, project, component)
    outcome = deployments.deploy(s, keyring, row, req.environment, req.build, c.who.user, req.track)
    c.work.message = f"to {req.environment}: {outcome_words(outcome)}"
    if outcome.action == "pending":
        return JSONResponse(outcome_view(s, keyring, org, outcome), status_code=202)
    assert outcome.deployment is not None
    response.status_code = 201 if outcome.action == "created" else 200
    return deployments.Viewer(s, keyring, org).view(outcome.deployment)


def outcome_words(outcome: deployments.Outcome) -> str:
    r = outcome.release
    if outcome.action == "pending":
        assert outcome.approval is not None
        return f"release {r.id} waits for approval ({outcome.approval.id})"
    return f"release {r.id} (build {r.build_id}, {outcome.action})"


def outcome_view(s: Session, keyring: Any, org: str, outcome: deployments.Outcome) -> dict[str, Any]:
    dep = outcome.deployment
    return {"action": outcome.action, "release": outcome.release.id,
            "deployment": deployments.Viewer(s, keyring, org).view(dep) if dep is not None else None,
            "approval": approvals.view(outcome.approval) if outcome.approval is not None else None}


@router.read(ORG + "/deployments", reads("deployments:list"), found(ORGANIZATION), session="run",
             response_model=schemas.DeploymentList, response_model_exclude_unset=True)
def list_deployments(c: Call[None], org: NamePath, environment: str | None = name_query("in this environment"),
                     project: str | None = name_query("of this project"),
                     component: str | None = name_query("of this component")) -> dict[str, Any]:
    """The organization's deployments the caller may see."""
    s = c.session
    rows = _readable(c.who, c.permission, deployments.list_rows(s, org, project, component, environment))
    return {"items": deployments.Viewer(s, c.platform.keyring, org).views(rows)}


@router.read(COMPONENT + "/deployments", reads("deployments:list"), PROJECT, session="run",
             response_model=schemas.DeploymentList, response_model_exclude_unset=True)
def component_deployments(c: Call[None], org: NamePath, project: NamePath, component: NamePath) -> dict[str, Any]:
    """The component's deployments, one per environment (and track) the caller may read."""
    s = c.session
    resources.get_component(s, org, project, component)
    rows = _readable(c.who, c.permission, deployments.list_rows(s, org, project, component))
    return {"items": deployments.Viewer(s, c.platform.keyring, org).views(rows)}


TRACK = Query(None, min_length=1, max_length=100, description="the track (needed when several are deployed there)")


@router.read(COMPONENT + "/deployments/{environment}", requires("deployments:get"), environment("path"),
             session="run", response_model=schemas.Deployment, response_model_exclude_unset=True)
def show_deployment(c: Call[None], org: NamePath, project: NamePath, component: NamePath, environment: NamePath,
                    track: str | None = TRACK) -> dict[str, Any]:
    s = c.session
    resources.get_component(s, org, project, component)
    row = deployments.get(s, org, project, component, environment, track)
    return deployments.Viewer(s, c.platform.keyring, org).view(row)


@router.mutation("DELETE", COMPONENT + "/deployments/{environment}", requires("deployments:delete"),
                 environment("path"), action="undeploy", subject=COMPONENT_SUBJECT,
                 message=lambda c: f"from {c['environment']}",
                 response_model=schemas.ResourceDeleted, response_model_exclude_unset=True)
def undeploy(c: Call[None], org: NamePath, project: NamePath, component: NamePath, environment: NamePath,
             track: str | None = TRACK) -> dict[str, Any]:
    """Remove the deployment; its data plane stops the workload."""
    resources.get_component(c.session, org, project, component)
    row = deployments.get(c.session, org, project, component, environment, track)
    return {"deleted": [deployments.undeploy(c.session, row, c.who.user)]}


@router.read(ORG + "/endpoints", reads("endpoints:list"), found(ORGANIZATION), session="run",
             response_model=schemas.EndpointList, response_model_exclude_unset=True)
def list_endpoints(c: Call[None], org: NamePath, environment: str | None = name_query("in this environment"),
                   project: str | None = name_query("of this project")) -> dict[str, Any]:
    """The endpoints of every deployed component the caller may see, with their URLs."""
    s = c.session
    rows = _readable(c.who, c.permission, deployments.list_rows(s, org, project, None, environment))
    return {"items": [item for view in deployments.Viewer(s, c.platform.keyring, org).views(rows)
                      for item in deployments.endpoint_items(view)]}


# -- task runs ------------------------------------------------------------------------------------------------------


@router.mutation("POST", COMPONENT + "/runs", requires("runs:create"), environment("body"), action="run.create",
                 subject=COMPONENT_SUBJECT, body=documented(schemas.RunRequest, "run request", "where to run the task"),
                 status_code=201, response_model=schemas.TaskRun, response_model_exclude_unset=True)
def start_run(c: Call[schemas.RunRequest], org: NamePath, project: NamePath, component: NamePath) -> dict[str, Any]:
    """Run a deployed task (a manual-task, or a scheduled-task off its schedule) once, now."""
    s, req = c.session, c.body
    row = resources.get_component(s, org, project, component)
    deployments.environment(s, org, req.environment)
    kind = (row.spec or {}).get("type") or "service"
    if kind not in TASK_TYPES:
        raise InvalidError(f"component '{project}/{component}' is a {kind}; only manual-task and scheduled-task "
                           "components run on request", [FieldProblem("component", f"a {kind}, not a task")])
    dep = deployments.find(s, org, project, component, req.environment, req.track)
    if dep is None:
        raise ConflictError(f"component '{project}/{component}' is not deployed in '{req.environment}'; deploy it "
                            "first", code="not-deployed")
    run = taskruns.create_run(s, dep, c.who.user)
    c.work.message = f"in {req.environment}: run {run.id}"
    return taskruns.run_view(run)


@router.read(COMPONENT + "/runs", reads("runs:list"), PROJECT, response_model=schemas.TaskRunList,
             response_model_exclude_unset=True)
def list_runs(c: Call[None], org: NamePath, project: NamePath, component: NamePath,
              environment: str | None = name_query("in this environment"),
              limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
    """The component's task runs, newest first: those of the environments where the caller may read runs."""
    s = c.session
    resources.get_component(s, org, project, component)
    rows = taskruns.list_runs(s, org, project, component, environment, limit,
                               c.who.environments(c.permission, Target(org, project)))
    return {"items": [taskruns.run_view(r) for r in rows]}


def _run_of(c: Call[Any], permission: str) -> Target:
    """The task run (after ``permission`` on the organization for a non-member: no run is found by guessing ids)."""
    if not c.who.member_of(c["org"]):
        require(c.who, permission, Target(c["org"]))
    row = c.row = taskruns.get_run(c.session, c["org"], c["run"])
    return Target(c["org"], row.project, row.environment)


@router.read(ORG + "/task-runs/{run}", requires("runs:get"), looked_up("the run's environment", _run_of),
             response_model=schemas.TaskRun, response_model_exclude_unset=True)
def show_run(c: Call[None], org: NamePath, run: RunPath) -> dict[str, Any]:
    return taskruns.run_view(c.row)
