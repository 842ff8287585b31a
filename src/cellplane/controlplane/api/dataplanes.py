"""The data-plane agent's API (docs/dataplane.md): register, long-poll the desired state, fetch its artifacts, report
status, ship log lines and task runs. Every call needs the data plane's own agent token (role dataplane-agent on
that data plane) or ``dataplanes:update`` on the organization (an admin). An admin makes the agent's tokens
(``POST .../tokens``).

Reports are the contract's models (``cellplane.contract``), validated into 422s with field paths. Unknown fields are
ignored (a newer agent may send more); long texts (log lines, messages) are cut rather than refused, so that one
long line never costs a batch.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from fastapi import Query, Response
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field
from sqlalchemy.orm import Session

from cellplane import digests
from cellplane.contract.status import AgentRegistration, StatusReport, TaskRunBatch
from cellplane.contract.telemetry import LogBatch
from cellplane.contract.wire import Report
from cellplane.controlplane import blobs, builds, dataplanes, desired, identity, resources, taskruns
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.declare import ORGANIZATION, Call, Rule, Scope, Subject, raw, requires
from cellplane.controlplane.api.deps import DigestPath, NamePath, NewNamePath, parse, require
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.rbac import AGENT_PERMISSION, Principal, Target
from cellplane.errors import FieldProblem, InvalidError, NotFoundError
from cellplane.model import KINDS, dns_label_problem
from cellplane.sealing import SealError, parse_public_key
from cellplane.store.tables import ResourceRow, now

router = api_router(tags=["data plane agent"])
DATAPLANE = "/organizations/{org}/dataplanes/{name}"
WAKE_CHECK = 0.05  # seconds between two looks of a waiting long-poll at the platform's change counter


def require_agent(who: Principal, org: str, name: str) -> None:
    """A call of data plane ``name``'s agent: with that data plane's agent token, or an admin's token."""
    if not who.can(AGENT_PERMISSION, Target(org, dataplane=name)):
        require(who, "dataplanes:update", Target(org))


# The agent's calls: checked before the report is read (and again by ``_plane`` in the report's transaction).
AGENT = Rule(f"{AGENT_PERMISSION} on the data plane, or dataplanes:update",
             lambda c, _: require_agent(c.who, c["org"], c["name"]))
THE_DATAPLANE = Scope("data plane", lambda c, _: Target(c["org"], dataplane=c["name"]))


def _plane(s: Any, who: Principal, org: str, name: str) -> ResourceRow:
    require_agent(who, org, name)
    resources.require_owner(s, resources.Scope(KINDS["DataPlane"], org), field_path="path")
    return dataplanes.get(s, org, name)


def _registration(c: Call[Any]) -> None:
    """The registration is read, and its public key checked, before the permission."""
    c.body = req = parse(AgentRegistration, c.body, "agent registration")
    try:
        parse_public_key(req.publicKey)
    except SealError as e:
        raise InvalidError("invalid agent registration", [FieldProblem("publicKey", e.message)]) from None


@router.mutation("PUT", DATAPLANE + "/agent", AGENT, THE_DATAPLANE, action="dataplane.register",
                 subject=Subject("DataPlane", "name", project=""), body=raw(AgentRegistration, "the agent"),
                 before=_registration, response_model=schemas.AgentRegistered, response_model_exclude_unset=True)
def register(c: Call[AgentRegistration], org: NamePath, name: NamePath) -> dict[str, Any]:
    """Register the agent of a data plane (creating the DataPlane when absent; its type is the agent's runtime)."""
    s, who, req = c.session, c.who, c.body
    resources.require_owner(s, resources.Scope(KINDS["DataPlane"], org), field_path="path")
    if dataplanes.find(s, org, name) is None:
        _may_create(who, org, name)
    # Binding environments to a data plane is an admin's decision: an agent token's bindUnbound is ignored.
    bind = req.bindUnbound and who.can("dataplanes:update", Target(org))
    result = dataplanes.register(s, org, name, {"agentId": req.agentId, "version": req.version,
                                                "hostname": req.hostname, "publicKey": req.publicKey}, bind,
                                 req.runtime)
    c.work.message = (f"agent {req.agentId} on {req.hostname or '?'} (version {req.version or '?'}); environments: "
                      + (", ".join(result["environments"]) or "none")
                      + ("" if bind or not req.bindUnbound else "; bindUnbound ignored (an agent token)"))
    return result


def _may_create(who: Principal, org: str, name: str) -> None:
    require(who, "dataplanes:create", Target(org))
    if problem := dns_label_problem(name):
        raise InvalidError(f"cannot create a data plane named '{name}'", [FieldProblem("path.name", problem)])


class NewAgentToken(Report):
    """A token for a data plane's agent."""

    model_config = ConfigDict(extra="forbid")
    name: schemas.NameText = Field(default="agent", max_length=63, description="the token's name")
    expiresInDays: int | None = Field(default=None, ge=1, le=3650)
    bindUnbound: bool = Field(default=False, description="also bind every environment without a data plane to this "
                              "one (created when absent)")


@router.mutation("POST", DATAPLANE + "/tokens", requires("dataplanes:update"), ORGANIZATION, action="dataplane.token",
                 subject=Subject("DataPlane", "name", project=""), body=NewAgentToken,
                 message=lambda c: f"agent token '{c.body.name}'", status_code=201,
                 response_model=schemas.NewTokenIssued, response_model_exclude_unset=True)
def create_agent_token(c: Call[NewAgentToken], org: NamePath, name: NewNamePath) -> dict[str, Any]:
    """A token for the data plane's agent (created when absent, with ``dataplanes:create``): it may register that
    data plane, pull its desired state and artifacts and report for it, and nothing else. Shown once; revoke it with
    ``DELETE /tokens/{id}``. Needs ``dataplanes:update`` on the organization."""
    s, body = c.session, c.body
    resources.require_owner(s, resources.Scope(KINDS["DataPlane"], org), field_path="path")
    if dataplanes.find(s, org, name) is None:
        _may_create(c.who, org, name)
        dataplanes.ensure(s, org, name)
    if body.bindUnbound:
        dataplanes.bind_unbound(s, org, name)
    expires = now() + timedelta(days=body.expiresInDays) if body.expiresInDays else None
    row, token, user = identity.issue_agent_token(s, c.platform.token_key, org, name, body.name, expires)
    c.work.message += f" ({row.id}) for user {user.name}"
    return {**identity.token_view(row, user.name), "token": token}


@router.read(DATAPLANE + "/desired-state", AGENT, THE_DATAPLANE, session=None, response_model=schemas.DesiredState,
             response_model_exclude_unset=True)
async def desired_state(c: Call[None], org: NamePath, name: NamePath,
                        since: str | None = Query(None, max_length=100, description="the revision the agent has"),
                        wait: int = Query(30, ge=0, le=60, description="seconds to wait for a revision other "
                                          "than `since`"),
                        ) -> Any:
    """What the data plane must run. Long-poll: answers once the revision differs from ``since``, or after
    ``wait`` seconds with the same revision."""
    p, who, request = c.platform, c.who, c.request

    def check(s: Session) -> None:  # when the state is computed: the data plane exists (and the caller, again)
        _plane(s, who, org, name)

    def current() -> desired.Unsealed:
        return p.desired.get(org, name, check)

    # Read before computing: a write committed meanwhile wakes the wait below at once. Every write committed
    # through this process counts (deploys, and also a build worker's auto-deploy or a task run reported); the
    # cache tells cheaply whether the desired state depends on it.
    seen = p.store.changes.seq
    state = p.desired.fresh(org, name)
    if state is None:  # (not `fresh() or await ...`: mypy 2.4 types that as Optional)
        state = await asyncio.to_thread(current)
    deadline = time.monotonic() + wait
    while since is not None and state.revision == since:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if await request.is_disconnected():
            return Response(status_code=204)
        # look again after a write committed here (looked at every WAKE_CHECK), else once a second: changes made
        # by another control-plane replica are seen when the kept desired state expires (Platform.desired)
        until = time.monotonic() + min(1.0, left)
        while p.store.changes.seq == seen and time.monotonic() < until:
            await asyncio.sleep(WAKE_CHECK)
        if await request.is_disconnected():
            return Response(status_code=204)
        seen = p.store.changes.seq
        state = p.desired.fresh(org, name)
        if state is None:
            state = await asyncio.to_thread(current)
    return await asyncio.to_thread(state.sealed)


@router.read(DATAPLANE + "/artifacts/{project}/{digest}", AGENT, THE_DATAPLANE, session=None, tags=["artifacts"],
             responses={200: {"content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "the artifact (.tar.gz)"}},
             response_class=Response)
async def download_artifact(c: Call[None], org: NamePath, name: NamePath, project: NamePath,
                            digest: DigestPath) -> Response:
    """An artifact the data plane's desired state runs (any other: 404), for its agent."""
    p, who = c.platform, c.who
    if not digests.valid(digest):
        raise InvalidError(f"'{digest}' is not a sha256 digest", [FieldProblem("digest", "sha256:<64 hex digits>")])

    def check(s: Session) -> None:
        _plane(s, who, org, name)

    state = p.desired.fresh(org, name)
    if state is None:
        state = await asyncio.to_thread(p.desired.get, org, name, check)
    if not any(d.project == project and d.artifact.digest == digest for d in state.document.deployments):
        raise NotFoundError(f"artifact '{digest}' of project '{project}' is not in the desired state of data plane "
                            f"'{org}/{name}'")

    def size() -> int:
        with p.store.transaction() as s:
            builds.artifact(s, org, project, digest)
            return blobs.size_of(s, digest)

    length = await asyncio.to_thread(size)
    return StreamingResponse(blobs.stream(p.store, digest), media_type="application/gzip",
                             headers={"Content-Length": str(length), "X-Cellplane-Digest": digest})


@router.mutation("PUT", DATAPLANE + "/status", AGENT, THE_DATAPLANE, body=raw(StatusReport, "what runs"),
                 response_model=schemas.StatusRecorded, response_model_exclude_unset=True)
def report_status(c: Call[Any], org: NamePath, name: NamePath) -> dict[str, Any]:
    """The agent's heartbeat: its listeners and the state of every deployment it runs."""
    p, who, body = c.platform, c.who, c.body
    with p.store.transaction() as s:
        row = _plane(s, who, org, name)
        report = parse(StatusReport, body, "status report")
        return {"deployments": dataplanes.record_status(s, row, report)}


class _Placed(Protocol):
    environment: str
    project: str
    component: str


Placed = TypeVar("Placed", bound=_Placed)


def kept(s: Any, org: str, plane: ResourceRow, items: list[Placed]) -> list[Placed]:
    """The reported items (with environment, project, component) of environments the data plane serves and of
    components that exist; the others are dropped (deleted meanwhile, or moved to another data plane)."""
    served = {e.name for e in dataplanes.environments(s, org, plane.name)}
    known: dict[tuple[str, str], bool] = {}
    out = []
    for item in items:
        key = (item.project, item.component)
        if key not in known:
            known[key] = resources.find(s, resources.Scope(KINDS["Component"], org, item.project), item.component) \
                is not None
        if item.environment in served and known[key]:
            out.append(item)
    return out


@router.mutation("POST", DATAPLANE + "/logs", AGENT, THE_DATAPLANE, body=raw(LogBatch, "at most 5000 lines, in order"),
                 response_model=schemas.LinesAccepted, response_model_exclude_unset=True)
def ingest_logs(c: Call[Any], org: NamePath, name: NamePath) -> dict[str, Any]:
    """Workload output. Lines of environments this data plane does not serve, or of components that do not
    exist, are dropped."""
    p, who, body = c.platform, c.who, c.body
    with p.store.transaction() as s:
        row = _plane(s, who, org, name)
        lines = kept(s, org, row, parse(LogBatch, body, "log batch").lines)
    return {"accepted": p.logs.append(org, lines)}


@router.mutation("POST", DATAPLANE + "/task-runs", AGENT, THE_DATAPLANE,
                 body=raw(TaskRunBatch, "task runs, upserted by id"),
                 response_model=schemas.RunsRecorded, response_model_exclude_unset=True)
def report_runs(c: Call[Any], org: NamePath, name: NamePath) -> dict[str, Any]:
    """Task runs as they start and end (scheduled runs get their id from the agent)."""
    p, who, body = c.platform, c.who, c.body
    with p.store.transaction() as s:
        row = _plane(s, who, org, name)
        req = parse(TaskRunBatch, body, "task-run batch")
        served = {e.name for e in dataplanes.environments(s, org, row.name)}
        return {"recorded": taskruns.record_runs(s, org, req.runs, served)}
