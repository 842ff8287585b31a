"""A component's ``spec.scaling``: the bounds of its replica count, per environment, and how they resolve.

The data plane's scaler owns the count within the bounds (docs/scaling.md); this module only says what the bounds
are. ``resolve`` is pure and cheap (a few dictionary reads): the control plane calls it for every deployment each
time it computes a desired state, with the component's CURRENT spec (scaling is operational, like tracks: a change
reaches running deployments without a new release).

Resolution, for one environment:

* tasks (scheduled-task, manual-task) and api-proxy never scale (``problems`` refuses a ``scaling`` on them);
* the fields given for the environment: the component's ``scaling`` fields, then ``environments.<env>``'s;
* none given (no ``scaling``, or only other environments' overrides): outside production, a component the gateway
  can wake (``wake_problem``) whose ``replicas`` is 1 scales between 0 and 1 with the defaults; anything else runs
  its fixed ``replicas``, as before scaling existed. So ``cellplane scale api --env development`` changes nothing
  in production;
* some given: ``fixed: true`` turns scaling off there (the fixed ``replicas`` run; an environment's override that
  gives settings without ``fixed`` scales there, whatever the component's own ``fixed`` says); else the defaults
  fill the rest (``minReplicas``: 0 outside production when the component can be woken, else 1; ``maxReplicas``:
  at least ``minReplicas`` and 1; target 10 in flight per replica; idle 300 s; scale-down delay 30 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from cellplane.errors import FieldProblem
from cellplane.model.meta import DNS_LABEL, NAME_SCHEMA, Name, Strict

NEVER_SCALED = {"scheduled-task", "manual-task", "api-proxy"}
DEFAULT_SCALED = {"service", "web-app", "webhook"}
WAKEABLE_ENDPOINTS = {"REST", "GraphQL", "WebSocket"}
DEFAULT_TARGET_CONCURRENCY = 10.0
DEFAULT_IDLE_SECONDS = 300.0
DEFAULT_SCALE_DOWN_DELAY_SECONDS = 30.0
FIELDS = ("minReplicas", "maxReplicas", "targetConcurrency", "targetRps", "idleSeconds", "scaleDownDelaySeconds",
          "fixed")


class ScalingSettings(Strict):
    """Scaling fields, each optional: what is not given comes from the component's ``scaling``, then the defaults."""

    minReplicas: int | None = Field(default=None, ge=0, le=100, description="0: scaled to zero when idle (default: 0 "
                                    "outside production when the gateway can wake the component, else 1)")
    maxReplicas: int | None = Field(default=None, ge=1, le=100, description="default: minReplicas, at least 1")
    targetConcurrency: float | None = Field(default=None, gt=0, le=10000, description="requests in flight per "
                                            "replica the scaler aims at (default 10)")
    targetRps: float | None = Field(default=None, gt=0, le=1_000_000, description="requests per second per replica "
                                    "the scaler aims at too, when given")
    idleSeconds: float | None = Field(default=None, ge=0, le=604800, description="with minReplicas 0: idle this long, "
                                      "the component goes to zero (default 300)")
    scaleDownDelaySeconds: float | None = Field(default=None, ge=0, le=3600, description="load must stay low this "
                                                "long before replicas are removed (default 30)")
    fixed: bool | None = Field(default=None, description="true: no scaling here, the fixed replicas run")


def _name_keys(schema: dict[str, Any]) -> None:
    """Keys documented as names (``propertyNames``): pydantic writes a key pattern as ``patternProperties``, which
    leaves other keys allowed by the schema."""
    values = schema.pop("patternProperties", {}).get(DNS_LABEL.pattern)
    schema["propertyNames"] = NAME_SCHEMA
    if values is not None:
        schema["additionalProperties"] = values


class Scaling(ScalingSettings):
    environments: dict[Name, ScalingSettings] = Field(
        default_factory=dict, description="per-environment overrides of the fields above, keyed by environment name",
        json_schema_extra=_name_keys)


@dataclass(frozen=True)
class Resolved:
    """The scaling of a component in one environment, every field filled."""

    minReplicas: int
    maxReplicas: int
    targetConcurrency: float
    targetRps: float | None
    idleSeconds: float
    scaleDownDelaySeconds: float

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if out["targetRps"] is None:
            del out["targetRps"]
        return out


def wake_problem(spec: Mapping[str, Any]) -> str | None:
    """Why the gateway could not wake the component from zero, or None when it can: it needs at least one endpoint,
    every one HTTP through the gateway (REST, GraphQL, WebSocket)."""
    kind = spec.get("type") or "service"
    if kind == "worker":
        return "a worker is not called through the gateway"
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        return f"a {kind} without endpoints is not called through the gateway"
    for e in endpoints:
        if (e.get("type") or "REST") not in WAKEABLE_ENDPOINTS:
            return (f"endpoint '{e.get('name')}' is {e.get('type')}; the gateway wakes only HTTP endpoints (REST, "
                    "GraphQL, WebSocket)")
    return None


def merged(spec: Mapping[str, Any], environment: str) -> dict[str, Any]:
    """The scaling fields given for ``environment``: the component's, then the environment's override. An override
    that gives settings but says nothing of ``fixed`` scales there even when the component says ``fixed: true``:
    the environment's own settings win (``cellplane scale api --env staging --max 3`` autoscales in staging)."""
    scaling = spec.get("scaling") or {}
    override = (scaling.get("environments") or {}).get(environment) or {}
    out = {k: scaling[k] for k in FIELDS if scaling.get(k) is not None}
    own = {k: override[k] for k in FIELDS if override.get(k) is not None}
    if own and "fixed" not in own:
        out.pop("fixed", None)
    out.update(own)
    return out


def resolve(spec: Mapping[str, Any], environment: str, production: bool) -> Resolved | None:
    """The scaling of a component (its spec as stored) in an environment; None: its fixed ``replicas`` run."""
    kind = spec.get("type") or "service"
    if kind in NEVER_SCALED:
        return None
    wakeable = wake_problem(spec) is None
    given = merged(spec, environment)
    if not given and (production or not wakeable or kind not in DEFAULT_SCALED or spec.get("replicas", 1) != 1):
        return None
    if given.get("fixed"):
        return None
    low = given.get("minReplicas", 0 if wakeable and not production else 1)
    if low == 0 and not wakeable:  # refused at apply; a spec stored before the rule ran never goes to zero
        low = 1
    return Resolved(minReplicas=low, maxReplicas=given.get("maxReplicas", max(low, 1)),
                    targetConcurrency=float(given.get("targetConcurrency", DEFAULT_TARGET_CONCURRENCY)),
                    targetRps=float(given["targetRps"]) if "targetRps" in given else None,
                    idleSeconds=float(given.get("idleSeconds", DEFAULT_IDLE_SECONDS)),
                    scaleDownDelaySeconds=float(given.get("scaleDownDelaySeconds", DEFAULT_SCALE_DOWN_DELAY_SECONDS)))


def problems(spec: Mapping[str, Any]) -> list[FieldProblem]:
    """The cross-field rules of ``spec.scaling`` (the spec as dumped), each at its path under ``scaling``."""
    scaling = spec.get("scaling")
    if scaling is None:
        return []
    kind = spec.get("type") or "service"
    if kind in NEVER_SCALED:
        why = "runs to completion on demand" if kind != "api-proxy" else "runs no replicas of its own"
        return [FieldProblem("scaling", f"a {kind} {why} and takes no scaling")]
    out: list[FieldProblem] = []
    wake = wake_problem(spec)
    places: list[tuple[str, dict[str, Any], dict[str, Any]]] = [("scaling", scaling, merged(spec, ""))]
    places += [(f"scaling.environments.{env}", override or {}, merged(spec, env))
               for env, override in (scaling.get("environments") or {}).items()]
    for path, own, fields in places:
        if fields.get("fixed"):
            continue
        if own.get("minReplicas") == 0 and wake is not None:
            out.append(FieldProblem(f"{path}.minReplicas", f"0 is not allowed: nothing would wake it: {wake}"))
        low, high = fields.get("minReplicas"), fields.get("maxReplicas")
        mine = {k for k in ("minReplicas", "maxReplicas") if own.get(k) is not None}
        if low is not None and high is not None and low > high and mine:
            which = "minReplicas" if "minReplicas" in mine else "maxReplicas"
            out.append(FieldProblem(f"{path}.{which}", f"minReplicas ({low}) must not exceed maxReplicas ({high})"
                                    + ("" if path == "scaling" else " in this environment")))
    return out
