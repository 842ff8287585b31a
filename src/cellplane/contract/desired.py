"""The desired state: everything a data plane must run, as the control plane serves it (``GET …/desired-state``,
docs/dataplane.md) and its agent reads it.

The control plane builds these models (``cellplane.controlplane.desired``) and sends them as JSON once, at the
edge; the agent parses the JSON once with ``DesiredState.from_wire``. Keys of a model that do not apply are left
out (``Absent``) rather than sent as null, so the JSON is ``model_dump(mode="json", by_alias=True,
exclude_unset=True)`` (``to_wire``). A secret value travels sealed to the agent's public key (``sealed``; null
while the agent has none). Cost, measured for 500 deployments on a busy 2-core machine: about 30 ms to build
(validation), 5 ms to dump, 20 ms to parse; the control plane builds a data plane's state once per change
(``DesiredStateCache``), not per poll.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from cellplane.contract.wire import Absent, ConnectionVia, Served, TimeText, absent


class DesiredEnvironment(Served):
    name: str
    production: bool


class DesiredArtifact(Served):
    digest: str
    # The artifact's image by digest (host/repository@sha256:...) in the registry this data plane pulls from, when
    # the organization has a registry (docs/images.md); absent otherwise. A runtime that runs images uses it.
    image: str | None = None


class DesiredEndpoint(Served):
    name: str
    port: int
    type: str
    basePath: str
    visibility: list[str]


class DesiredEnv(Served):
    name: str
    value: Absent[str] = absent("a value that is not secret")
    sealed: str | None = absent("a secret value, sealed to the agent's key (null: the agent has no key yet)")


class DesiredFile(Served):
    name: str
    mountPath: str
    content: Absent[str] = absent("a file that is not secret")
    sealed: str | None = absent("a secret file's content, sealed to the agent's key")


class DesiredTarget(Served):
    project: str
    component: str
    endpoint: str
    basePath: str
    version: str


class SealedValue(Served):
    sealed: str | None


class DesiredCredentials(Served):
    consumerKey: str
    consumerSecret: SealedValue


class DesiredConnectionEnv(Served):
    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)
    from_: str = Field(alias="from")
    to: str


class DesiredConnection(Served):
    name: str
    state: Literal["resolved", "unresolved"]
    via: Absent[ConnectionVia] = absent("resolved connections")
    reason: Absent[str] = absent("unresolved connections: why")
    target: Absent[DesiredTarget] = absent("via cell, internal or external")
    url: Absent[str] = absent("via url")
    credentials: Absent[DesiredCredentials] = absent("via internal")
    env: list[DesiredConnectionEnv]


class DesiredResources(Served):
    cpu: Absent[str] = absent("e.g. 500m or 2")
    memory: Absent[str] = absent("e.g. 256Mi or 1Gi")


class DesiredProbe(Served):
    path: Absent[str] = absent("HTTP GET path (a 2xx or 3xx answer passes); without it, a TCP connect")
    port: Absent[int] = absent("default: the replica's port")
    initialDelaySeconds: float = 0.0
    periodSeconds: float = 1.0
    timeoutSeconds: float = 1.0
    failureThreshold: int = 3


class DesiredHealth(Served):
    readiness: Absent[DesiredProbe] = absent("when a replica gets traffic (default: TCP connect)")
    liveness: Absent[DesiredProbe] = absent("when a replica is restarted (default: never)")
    gracePeriodSeconds: float = Field(default=10.0, description="SIGTERM to SIGKILL")


class DesiredSchedule(Served):
    cron: str = Field(description="five fields, or six with seconds last")
    timezone: str = "UTC"
    concurrencyPolicy: str = Field(default="Forbid", description="Forbid (skip a run while one runs) or Allow")


class DesiredScaling(Served):
    """How many replicas a service runs, from its load (docs/scaling.md). A deployment without it runs a fixed
    ``replicas``. The agent starts ``max(minReplicas, 1)`` replicas on a rollout; its scaler then owns the count
    within [minReplicas, maxReplicas], fed by the gateway's requests in flight. ``minReplicas`` 0: the deployment
    goes to zero after ``idleSeconds`` with nothing in flight, and the gateway's activator wakes it."""

    minReplicas: int = Field(ge=0, description="0: scaled to zero when idle")
    maxReplicas: int = Field(ge=1)
    targetConcurrency: float = Field(gt=0, description="requests in flight per replica the scaler aims at")
    targetRps: Absent[float] = absent("requests per second per replica the scaler aims at, when given")
    idleSeconds: float = Field(ge=0, description="with minReplicas 0: idle this long (nothing in flight, no "
                               "request), the deployment goes to zero")
    scaleDownDelaySeconds: float = Field(ge=0, description="load must stay low this long before replicas are removed")


class DesiredDeployment(Served):
    id: str
    environment: str
    project: str
    component: str
    track: str = Field(description="the deployment track (a git branch name)")
    type: str
    release: str
    version: str
    artifact: DesiredArtifact
    replicas: int
    scaling: Absent[DesiredScaling] = absent("the replica count follows the load (a service); absent: a fixed "
                                             "``replicas``")
    resources: DesiredResources
    health: DesiredHealth | None
    endpoints: list[DesiredEndpoint]
    env: list[DesiredEnv]
    files: list[DesiredFile]
    connections: list[DesiredConnection]
    blocked: str | None = Field(description="why the deployment must not start, or null")
    schedule: DesiredSchedule | None


class GrantTarget(Served):
    project: str
    component: str
    endpoint: str


class DesiredGrant(Served):
    consumerKey: str
    secretDigest: str = Field(description="sha256 (hex) of the consumer secret")
    environment: str
    project: str
    component: str
    target: GrantTarget


class DesiredRun(Served):
    id: str
    deployment: str
    environment: str
    project: str
    component: str
    requestedAt: TimeText


class DesiredState(Served):
    """Everything a data plane must run (docs/dataplane.md)."""

    revision: str
    organization: str
    dataPlane: str
    environments: list[DesiredEnvironment]
    deployments: list[DesiredDeployment]
    grants: list[DesiredGrant]
    runs: list[DesiredRun]

    @classmethod
    def from_wire(cls, document: Any) -> DesiredState:
        """The desired state in a JSON document the control plane served (pydantic's ValidationError when it is
        not one)."""
        return cls.model_validate(document)

    def to_wire(self) -> dict[str, Any]:
        """The JSON document: keys that were not given are left out, ``from`` is spelt so."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)
