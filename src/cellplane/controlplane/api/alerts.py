"""Routes for alert rules and their history: a condition on a component's telemetry in one environment, and the
webhook that hears when it fires and when it resolves (see ``controlplane/telemetry/alerts.py``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from cellplane.controlplane import deployments, resources
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.declare import (
    COMPONENT_SUBJECT,
    ORGANIZATION,
    PROJECT,
    Call,
    Subject,
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
from cellplane.controlplane.telemetry import alerts
from cellplane.model.meta import DNS_LABEL

router = api_router(tags=["alerts"])
ORG = "/organizations/{org}"
COMPONENT = ORG + "/projects/{project}/components/{component}"
RULE = ORG + "/alerts/{alert}"
AlertPath = Annotated[str, PathParam(min_length=1, max_length=20, description="an alert rule id (alr_...)")]

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL.pattern)]
Metric = Literal["error-rate", "latency", "crash-loop", "task-failures"]
RuleState = Literal["ok", "pending", "firing"]
# What ``telemetry.alerts.validate`` checks, as far as a JSON schema says it (the durations' ranges it cannot):
# durations in whole seconds, an http(s) URL with a host and no credentials, and the metric's threshold and percentile.
WHOLE_SECONDS = r"^([0-9]+(s|m|h|d))+$"
WEBHOOK = r"^https?://[A-Za-z0-9.-]+(:[1-9][0-9]{0,3})?(/[!-~]*)?$"
RULE_SCHEMA: dict[str, Any] = {"allOf": [
    {"if": {"properties": {"metric": {"const": "error-rate"}}},
     "then": {"properties": {"threshold": {"maximum": 100}}}},
    {"if": {"properties": {"metric": {"const": "latency"}}},
     "then": {"properties": {"percentile": {"enum": [*alerts.PERCENTILES, None]}}},
     "else": {"properties": {"percentile": {"type": "null"}}}}]}


# -- request and response models ------------------------------------------------------------------------------------


class AlertRuleRequest(BaseModel):
    """A rule on one of the component's metrics in one environment. It fires when the value, computed over the
    trailing ``window``, stays above ``threshold`` for ``for``; its webhook hears when it fires and resolves."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra=RULE_SCHEMA)
    name: Name = Field(description="unique for the component in the environment")
    environment: Name
    metric: Metric = Field(description="error-rate: percent of requests answered with status >= 500; latency: a "
                           "percentile of request durations in ms; crash-loop: replica restarts in the window; "
                           "task-failures: task runs that failed in the window")
    threshold: float = Field(ge=0, strict=True, allow_inf_nan=False,
                             description="fires when the value is above it (error-rate: at most 100)")
    percentile: int | None = Field(default=None, strict=True, description="latency only: 50, 95 or 99 (default 95)")
    window: Annotated[str, WithJsonSchema({"type": "string", "maxLength": 50, "pattern": WHOLE_SECONDS})] = Field(
        default="1m", min_length=1, max_length=50, description="the trailing window (10s..1d)")
    for_: Annotated[str, WithJsonSchema({"type": "string", "maxLength": 50, "pattern": WHOLE_SECONDS})] = Field(
        default="0s", alias="for", min_length=1, max_length=50,
                      description="how long the condition must hold before the rule fires (0s..1d)")
    webhook: Annotated[str, WithJsonSchema({"type": "string", "maxLength": alerts.MAX_WEBHOOK,
                                            "pattern": WEBHOOK})] = Field(
        min_length=1, max_length=alerts.MAX_WEBHOOK,
                         description="an http(s) URL (no credentials in it) that receives the notifications")


class AlertRule(schemas.Out):
    """A rule and its state now. Its webhook secret is never shown again after creation."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str = Field(description="alr_<16 hex>")
    name: str
    project: str
    component: str
    environment: str
    metric: Metric
    threshold: float
    percentile: int | None = Field(description="latency rules only")
    window: str
    for_: str = Field(alias="for")
    webhook: str
    state: RuleState
    since: schemas.Timestamp | None = Field(description="when the rule entered its state (null: ok from the start)")
    value: float | None = Field(description="the value at the last evaluation (null: nothing to measure)")
    createdBy: str
    createdAt: schemas.Timestamp


class AlertRuleCreated(AlertRule):
    webhookSecret: str = Field(description="the HMAC-SHA256 key of the notifications' signatures; shown only now")


class AlertRuleList(schemas.Out):
    items: list[AlertRule]


class AlertDelivery(schemas.Out):
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    lastError: str | None


class AlertEvent(schemas.Out):
    """One time the rule fired; the delivery is that of its latest notification (firing, then resolved)."""

    id: int
    rule: str
    state: Literal["firing", "resolved"]
    firedAt: schemas.Timestamp
    resolvedAt: schemas.Timestamp | None
    value: float | None
    message: str
    delivery: AlertDelivery


class AlertEventList(schemas.Out):
    items: list[AlertEvent]


class AlertTestResult(schemas.Out):
    delivered: bool
    status: int | None = Field(description="the webhook's HTTP status (null: no answer)")
    error: str | None


# -- routes ---------------------------------------------------------------------------------------------------------


def _validated(c: Call[AlertRuleRequest]) -> None:
    """The rule is checked whole (every problem with its field) before the permission."""
    req = c.body
    c.prepared = alerts.validate(req.name, req.environment, req.metric, req.threshold, req.percentile, req.window,
                                 req.for_, req.webhook)


@router.mutation("POST", COMPONENT + "/alerts", requires("alerts:create"), environment("body"), action="alert.create",
                 subject=COMPONENT_SUBJECT, body=documented(AlertRuleRequest, "alert rule", "the rule"),
                 before=_validated, status_code=201, response_model=AlertRuleCreated,
                 response_model_exclude_unset=True)
def create_rule(c: Call[AlertRuleRequest], org: NamePath, project: NamePath, component: NamePath) -> dict[str, Any]:
    """Create an alert rule. The answer holds the webhook secret (``webhookSecret``), shown only this once:
    notifications carry ``X-Cellplane-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``."""
    s = c.session
    resources.get_component(s, org, project, component)
    deployments.environment(s, org, c.body.environment)
    row, secret = alerts.create(s, c.platform.keyring, org, project, component, c.prepared, c.who.user)
    c.work.message = f"{row.id} ({row.name}) in {row.environment}: {alerts.condition(row)}"
    return {**alerts.rule_view(row, reveal=True), "webhookSecret": secret}


@router.read(COMPONENT + "/alerts", reads("alerts:list"), PROJECT, response_model=AlertRuleList,
             response_model_exclude_unset=True)
def component_rules(c: Call[None], org: NamePath, project: NamePath, component: NamePath,
                    environment: str | None = Query(None, min_length=1, max_length=63,
                                                    description="only rules in this environment"),
                    ) -> dict[str, Any]:
    """The component's alert rules and their state, in the environments where the caller may read them."""
    s = c.session
    resources.get_component(s, org, project, component)
    rows = alerts.list_rules(s, org, project, component, environment)
    return {"items": [alerts.rule_view(r, _reveals(c.who, r)) for r in rows if _lists(c, r)]}


@router.read(ORG + "/alerts", reads("alerts:list"), found(ORGANIZATION), response_model=AlertRuleList,
             response_model_exclude_unset=True)
def list_rules(c: Call[None], org: NamePath,
               project: str | None = Query(None, min_length=1, max_length=63, description="only this project"),
               environment: str | None = Query(None, min_length=1, max_length=63,
                                               description="only rules in this environment"),
               state: RuleState | None = Query(None, description="only rules in this state"),
               ) -> dict[str, Any]:
    """The organization's alert rules the caller may read (of its projects and environments)."""
    rows = alerts.list_rules(c.session, org, project, None, environment, state)
    return {"items": [alerts.rule_view(r, _reveals(c.who, r)) for r in rows if _lists(c, r)]}


def _lists(c: Call[Any], row: Any) -> bool:
    """Whether a list shows the caller the rule: its state and value are its environment's runtime output, read
    where the caller may read alerts (an environment-scoped binding: in its own environment only; see
    ``rbac.ENVIRONMENT_BOUND``)."""
    return c.who.can(c.permission, Target(row.organization, row.project, row.environment))


def _reveals(who: Principal, row: Any) -> bool:
    """Whether the caller sees the webhook's whole URL: only who may change the rule."""
    return who.can("alerts:update", Target(row.organization, row.project, row.environment))


def _rule_of(c: Call[Any], permission: str) -> Target:
    """The rule (after ``permission`` on the organization for a non-member: no rule is found by guessing ids), and
    the component it watches (audited)."""
    if not c.who.member_of(c["org"]):
        require(c.who, permission, Target(c["org"]))
    row = c.row = alerts.get(c.session, c["org"], c["alert"])
    c.work.project, c.work.name = row.project, row.component
    return Target(row.organization, row.project, row.environment)


RULE_SCOPE = looked_up("the rule's environment", _rule_of)
RULE_SUBJECT = Subject("Component", "alert", project="")  # then the rule's component


@router.read(RULE, requires("alerts:get"), RULE_SCOPE, response_model=AlertRule, response_model_exclude_unset=True)
def show_rule(c: Call[None], org: NamePath, alert: AlertPath) -> dict[str, Any]:
    return alerts.rule_view(c.row, _reveals(c.who, c.row))


@router.mutation("DELETE", RULE, requires("alerts:delete"), RULE_SCOPE, action="alert.delete", subject=RULE_SUBJECT,
                 response_model=schemas.Deleted, response_model_exclude_unset=True)
def delete_rule(c: Call[None], org: NamePath, alert: AlertPath) -> dict[str, Any]:
    """Delete an alert rule and its history; notifications not delivered yet are dropped."""
    row = c.row
    c.work.message = f"{row.id} ({row.name}) in {row.environment}"
    alerts.remove(c.session, row)
    return {"deleted": row.id}


@router.read(RULE + "/events", requires("alerts:get"), RULE_SCOPE, response_model=AlertEventList,
             response_model_exclude_unset=True)
def rule_events(c: Call[None], org: NamePath, alert: AlertPath, limit: int = Query(50, ge=1, le=1000),
                ) -> dict[str, Any]:
    """When the rule fired and resolved, newest first, with the delivery of the notifications."""
    return {"items": [alerts.event_view(e) for e in alerts.events(c.session, c.row.id, limit)]}


def _sent(note: Any) -> dict[str, Any]:
    result = alerts.send_now(note)  # after the commit, outside the transaction: the webhook may take seconds
    return {"delivered": result.delivered, "status": result.status, "error": result.error}


@router.mutation("POST", RULE + "/test", requires("alerts:update"), RULE_SCOPE, action="alert.test",
                 subject=RULE_SUBJECT, response_model=AlertTestResult, response_model_exclude_unset=True)
def test_rule(c: Call[None], org: NamePath, alert: AlertPath) -> Any:
    """Send a signed test notification (``X-Cellplane-Event: alert.test``) to the rule's webhook now and say how
    it went. Changes nothing."""
    row = c.row
    c.work.message = f"{row.id} ({row.name}) in {row.environment}: test notification"
    c.after_commit(_sent)
    return alerts.notification(c.platform.keyring, row, None, "test")
