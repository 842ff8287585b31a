"""The API's published contract: pydantic models of what the routes take and what they return.

Two kinds of models live here:

* **Documentation of resource documents** (``Component``, ``ComponentList``, ``ComponentBody``,
  ``ComponentDocument``, ...; one set per kind, built from the kind's spec model in ``cellplane.model``).
  Routes only *declare* them: request bodies are still parsed by ``cellplane.model.parse_document`` (its
  error messages and field paths are part of the API), and resource documents are returned as stored
  (``resources.to_document``) rather than re-serialised through a model. ``tests/test_api.py`` and the
  schemathesis run check real responses against these schemas.
* **Response models** of the smaller views (users, tokens, audit events, ...), used as ``response_model``
  with ``response_model_exclude_unset=True``: what the route builds is sent key for key, in the same order.

The data-plane agent's calls are described with the contract's models (``cellplane.contract``): the desired state
(``DesiredState``, re-exported here) and the agent's report bodies, the same models the routes parse and build.

Keys a response omits (rather than sending as ``null``) are declared with ``absent()``: optional, not nullable.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, create_model

from cellplane import API_VERSION
from cellplane.contract.desired import DesiredState as DesiredState
from cellplane.contract.wire import JSON_SAFE_MAX as JSON_SAFE_MAX
from cellplane.contract.wire import ConnectionVia, LogStream, RunState, TimeText, absent
from cellplane.contract.wire import JsonBody as JsonBody
from cellplane.model import KINDS, KindInfo, Metadata
from cellplane.model.component import TRACK_NAME, TRACK_SCHEMA
from cellplane.model.meta import DNS_LABEL, NAME_SCHEMA

# -- helpers --------------------------------------------------------------------------------------------------------

# Shared with the agent's contract (``cellplane.contract``, re-exported here for the routes): the desired state,
# JSON request bodies (``JsonBody``), keys left out rather than null (``absent``), the states a report may hold.
Timestamp = TimeText  # an ISO 8601 text with its offset
# A name the route checks itself (``dns_label_problem``, with the API's messages), documented with that rule.
NameText = Annotated[str, WithJsonSchema(NAME_SCHEMA)]
# A track name the route checks itself (``builds.check_track``), documented with that rule.
TrackText = Annotated[str, WithJsonSchema(TRACK_SCHEMA)]
# A duration as ``telemetry.durations`` reads it (30s, 10m, 1h30m); its range is the route's (and only checked there).
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"
# An ISO timestamp with its offset, as ``telemetry.durations.since`` reads one (days up to 28: every month has them).
TIMESTAMP_PATTERN = (r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                     r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
# The request-side spelling of an optional name: '' is accepted as "not given" by /apply.
OptionalName = Annotated[str | None, Field(max_length=63, pattern=f"^$|{DNS_LABEL.pattern}")]


def documented(model: Any) -> Any:
    """A request body parsed as a plain JSON object but documented (OpenAPI) as ``model``.

    The route keeps validating with ``cellplane.model`` so that problems are reported at document paths
    (``metadata.name``, ``spec.endpoints[0].port``), all at once, exactly as for ``cellplane apply``.
    """
    return Annotated[dict[str, Any], BeforeValidator(lambda value: value, json_schema_input_type=model)]


class Out(BaseModel):
    """Base of the response models. Keys a route adds later pass through (and are allowed by the schema)."""

    model_config = ConfigDict(extra="allow")


# -- resource documents, one set per kind ---------------------------------------------------------------------------


class ResourceMetadata(Out):
    """Metadata of a stored resource: the writer's fields and the server's."""

    name: str
    organization: str = absent("owning organization (every kind but Organization)")
    project: str = absent("owning project (project-scoped kinds)")
    labels: dict[str, str] = absent("left out when there are none")
    annotations: dict[str, str] = absent("left out when there are none")
    uid: str = Field(description="unique for the life of the resource; a re-created resource gets a new one")
    generation: int = Field(description="incremented when the spec changes")
    creationTimestamp: Timestamp
    updateTimestamp: Timestamp


class ResourceStatus(Out):
    """Server-owned state of a resource."""

    warnings: list[str] = absent("what was adjusted or ignored while validating the document (write responses)")


class ListMetadata(Out):
    continue_: str | None = Field(alias="continue", description="pass as ?continue= for the next page; null on the "
                                                                "last page")


class OrganizationScopedMetadata(Metadata):
    """Metadata of a kind that belongs to an organization but to no project."""

    project: None = Field(default=None, description="organization-level kinds belong to no project")


class ClusterMetadata(OrganizationScopedMetadata):
    """Metadata of an Organization: it has no owner."""

    organization: None = Field(default=None, description="an Organization has no owning organization")


REQUEST_METADATA: dict[str, type[BaseModel]] = {"cluster": ClusterMetadata,
                                                 "organization": OrganizationScopedMetadata,
                                                 "project": Metadata}


class KindSchemas:
    """The documentation models of one kind."""

    def __init__(self, info: KindInfo) -> None:
        kind: Any = Literal[info.kind]
        version: Any = Literal[API_VERSION]
        list_kind: Any = Literal[f"{info.kind}List"]
        spec: Any = info.spec
        strict = ConfigDict(extra="forbid")
        status = (Any, Field(default=None, description="ignored on input: the server owns status"))
        self.resource: type[BaseModel] = create_model(
            info.kind, __base__=Out, __doc__=f"A {info.kind} as the server returns it.",
            apiVersion=(version, ...), kind=(kind, ...), metadata=(ResourceMetadata, ...), spec=(spec, ...),
            status=(ResourceStatus, ...))
        self.list: type[BaseModel] = create_model(
            f"{info.kind}List", __base__=Out, __doc__=f"One page of {info.plural}.",
            apiVersion=(version, ...), kind=(list_kind, ...),
            items=(list[self.resource], ...), metadata=(ListMetadata, ...))  # type: ignore[name-defined]
        metadata = REQUEST_METADATA[info.scope]
        self.body: type[BaseModel] = create_model(
            f"{info.kind}Body", __config__=strict,
            __doc__=f"A {info.kind} document sent to the {info.plural} routes: apiVersion and kind may be left "
                    "out, the owners default to the path's.",
            apiVersion=(version, API_VERSION), kind=(kind, info.kind), metadata=(metadata, ...),
            spec=(spec | None, None), status=status)
        self.document: type[BaseModel] = create_model(
            f"{info.kind}Document", __config__=strict,
            __doc__=f"A complete {info.kind} document, as in a file given to apply.",
            apiVersion=(version, ...), kind=(kind, ...), metadata=(metadata, ...), spec=(spec | None, None),
            status=status)


SCHEMAS: dict[str, KindSchemas] = {kind: KindSchemas(info) for kind, info in KINDS.items()}
if TYPE_CHECKING:  # models built at import, one per kind: to the checker, a model
    AnyDocument = BaseModel
    StoredComponent = BaseModel
else:
    # Any kind's complete document, told apart by its kind (``oneOf`` with a discriminator in the OpenAPI document).
    AnyDocument = Annotated[reduce(operator.or_, [SCHEMAS[i.kind].document for i in sorted(KINDS.values(),
                                                                                          key=lambda i: i.order)]),
                            Field(discriminator="kind")]
    StoredComponent = SCHEMAS["Component"].resource


class ResourceDeleted(Out):
    deleted: list[str] = Field(description="what was deleted ('<kind>/<name>'), owned resources first")


# -- apply ----------------------------------------------------------------------------------------------------------


class ApplyRequest(BaseModel):
    """Documents to create or update in one transaction: all of them are stored, or none.

    OpenChoreo's documents (``apiVersion: openchoreo.dev/v1alpha1``: Organization, DataPlane, Environment,
    DeploymentPipeline, Project, Component, Workload) are accepted too, mapped onto these kinds first; a Workload
    becomes part of its Component's spec, a ReleaseBinding a deploy (or promotion) once the documents are stored.
    What has no equivalent is listed in the result's warnings (see docs/openchoreo.md)."""

    model_config = ConfigDict(extra="forbid")
    organization: OptionalName = Field(default=None, description="owner of documents that name none")
    project: OptionalName = Field(default=None, description="owning project of components that name none")
    documents: list[AnyDocument] = Field(min_length=1, max_length=5000)


class AppliedResource(Out):
    document: int | None = Field(description="index of the document in the request; null for what the server "
                                             "created alongside it (an organization's defaults)")
    kind: str
    name: str
    organization: str | None
    project: str | None
    action: Literal["created", "configured", "unchanged", "deployed", "promoted", "pending", "undeployed"] = Field(
        description="a resource: created, configured or unchanged; an OpenChoreo ReleaseBinding: deployed, promoted, "
                    "pending (an approval request), undeployed or unchanged")
    detail: str | None = Field(None, description="a ReleaseBinding: where, which release, or which approval")
    warnings: list[str]


class ApplyResponse(Out):
    dryRun: bool = Field(description="true when nothing was stored")
    results: list[AppliedResource]
    warnings: list[str] = Field(default_factory=list, description="documents that applied nothing (an OpenChoreo "
                                "SecretReference, a kind with no equivalent), one line each: 'documents[i]: ...'")


class ComponentImportResult(Out):
    component: StoredComponent
    descriptor: str | None = Field(description="the descriptor the spec was read from, if any")
    warnings: list[str]
    dryRun: bool


# -- configuration --------------------------------------------------------------------------------------------------


class ConfigItem(Out):
    """A configuration value as a component sees it; secret values are always masked."""

    key: str = Field(description="an environment variable name, or 'file:<name>' for a configuration file")
    value: str | None = Field(description="the value, '********' for a secret; null when the spec declares the "
                                          "entry without a value")
    secret: bool
    environment: str | None = Field(description="the environment this value is for; null for every environment")
    version: int = Field(description="0 for a value from the spec")
    updatedAt: Timestamp = absent("values set with the config routes only")
    updatedBy: str = absent("values set with the config routes only")
    source: Literal["spec", "config"]


class ConfigList(Out):
    items: list[ConfigItem]


class ConfigChange(ConfigItem):
    changed: bool = Field(description="false when the same value was set again (no new version)")


class Deleted(Out):
    deleted: str = Field(description="what was deleted")


# -- identity, audit, administration --------------------------------------------------------------------------------


class Role(Out):
    role: str
    organization: str
    project: str | None
    environment: str | None


class WhoAmI(Out):
    user: str
    superuser: bool
    roles: list[Role]


class User(Out):
    name: str
    email: str | None
    superuser: bool
    disabled: bool
    createdAt: Timestamp


class UserList(Out):
    items: list[User]


class Token(Out):
    id: str
    user: str
    name: str
    createdAt: Timestamp
    expiresAt: Timestamp | None
    lastUsedAt: Timestamp | None


class NewTokenIssued(Token):
    token: str = Field(description="the secret: shown once, in this response only")


class TokenList(Out):
    items: list[Token]


class RoleBinding(Out):
    id: str
    user: str
    role: str
    organization: str
    project: str | None
    environment: str | None
    dataplane: str | None = Field(default=None, description="the data plane of a dataplane-agent binding")
    createdAt: Timestamp


class RoleBindingList(Out):
    items: list[RoleBinding]


class AuditEvent(Out):
    id: int
    at: Timestamp
    actor: str
    action: str
    kind: str | None
    organization: str | None
    project: str | None
    name: str | None
    outcome: Literal["succeeded", "failed", "denied"]
    message: str


class AuditMetadata(Out):
    before: int | None = Field(description="pass as ?before= for older events; null when there are no more")


class AuditList(Out):
    items: list[AuditEvent]
    metadata: AuditMetadata


class KeyRotation(Out):
    keyId: str = Field(description="the new primary key")
    reencrypted: int = Field(description="secrets re-encrypted under it")
    retiredKeys: list[str] = Field(description="keys dropped from the key ring")


class VersionInfo(Out):
    version: str
    apiVersion: str
    database: str


class Health(Out):
    status: Literal["ok"]


# -- builds and artifacts -------------------------------------------------------------------------------------------

BuildState = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed-out"]


class BuildStep(Out):
    name: str
    state: Literal["running", "succeeded", "failed", "skipped"]
    seconds: float = absent("how long the step took")
    detail: str = absent("why a step was skipped")


class BuildFinding(Out):
    kind: str = Field(description="secret | static-analysis | vulnerability | test")
    rule: str
    severity: str = Field(description="critical | high | medium | low | unknown")
    file: str
    line: int
    message: str


class BuildImage(Out):
    reference: str = Field(description="host/repository@sha256:...: what a data plane pulls (never the tag)")
    digest: str = Field(description="the image manifest's digest")
    repository: str
    tag: str = Field(description="the build's id, for people; deploys use the digest")
    signature: str | None = Field(default=None, description="the cosign signature's tag (sha256-<hex>.sig)")
    pushedTo: list[str] = Field(default_factory=list, description="the image's reference in every registry")
    python: dict[str, str] | None = Field(default=None, description="the Python its packages were installed for: "
                                          "version, platform, and from (where the version was read)")


class SigningKey(Out):
    organization: str
    algorithm: str = Field(description="ecdsa-p256-sha256: cosign's default")
    publicKey: str = Field(description="PEM (SubjectPublicKeyInfo): cosign verify --key")
    keyId: str | None = Field(default=None, description="the current key's id: 16 hex digits of its SHA-256")
    keys: list[dict[str, Any]] = Field(default_factory=list, description="the current key, then the retired ones "
                                       "kept for verifying, newest first: keyId, publicKey, current, since")


class BuildInfo(Out):
    id: str
    number: int = Field(description="per component, from 1")
    organization: str
    project: str
    component: str
    track: str
    state: BuildState
    trigger: str = Field(description="api | upload | webhook")
    requestedBy: str
    source: dict[str, Any] = Field(description="kind git|archive, repository, branch, ref, path")
    commit: str | None
    createdAt: str
    startedAt: str | None
    finishedAt: str | None
    durationSeconds: float | None
    timeoutSeconds: int
    cancelRequested: bool
    detection: dict[str, Any] = Field(description="strategy, reason, language, run, port, processes, notes")
    steps: list[BuildStep]
    findings: list[BuildFinding]
    findingCounts: dict[str, int]
    artifact: str | None = Field(description="sha256 digest of the artifact, once the build succeeded")
    image: BuildImage | None = Field(default=None, description="the image pushed, when a registry is configured")
    error: str | None


class BuildList(Out):
    items: list[BuildInfo]
    before: int = absent("pass as ?before= for the next (older) page")


class BuildLogLine(Out):
    seq: int
    at: str
    step: str
    line: str


class BuildLogs(Out):
    items: list[BuildLogLine]
    state: BuildState
    next: int = Field(description="pass as ?after= to read on")


class ArtifactManifest(Out):
    digest: str
    size: int
    createdAt: str
    manifest: dict[str, Any]


class WebhookInfo(Out):
    url: str = Field(description="where the git host POSTs push events (path under the control plane's URL)")
    configured: bool
    autoBuild: bool
    createdAt: str | None = absent()
    secret: str = absent("shown once, when created or rotated")


class WebhookDelivery(Out):
    queued: bool
    reason: str
    build: BuildInfo = absent()


# -- deployments, endpoints, logs and task runs ---------------------------------------------------------------------

DeploymentState = Literal["pending", "progressing", "ready", "degraded", "crash-loop", "failed", "blocked",
                          "scheduled", "idle", "scaled-to-zero", "unreachable", "superseded"]
EnvironmentName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL.pattern,
                                       description="an environment's name")]
TrackName = Annotated[str, Field(min_length=1, max_length=100, pattern=TRACK_NAME.pattern,
                                 description="a deployment track (a git branch name)"), WithJsonSchema(TRACK_SCHEMA)]


class DeployRequest(BaseModel):
    """What to deploy where."""

    model_config = ConfigDict(extra="forbid")
    environment: EnvironmentName
    build: str | None = Field(default=None, min_length=1, max_length=20,
                              description="a build id (b-...); default: the component's latest succeeded build (of "
                              "the track, when one is given)")
    track: TrackName | None = Field(default=None, description="the deployment track (default: the build's)")


class PromoteRequest(BaseModel):
    """Promote what runs in one environment to the next one along the project's pipeline."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: EnvironmentName = Field(alias="from", description="the environment to promote from")
    to: EnvironmentName = Field(description="the environment to promote to (a promotion path's target)")
    track: TrackName | None = Field(default=None, description="which track (needed when several run in 'from')")


class RollbackRequest(BaseModel):
    """Run an earlier release again."""

    model_config = ConfigDict(extra="forbid")
    to: str | None = Field(default=None, min_length=1, max_length=20,
                           description="a release that ran there; default: the one before the current release")
    track: TrackName | None = None


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="why (shown to the requester)")


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    branch: TrackName = Field(description="the git branch to build and deploy")


class RunRequest(BaseModel):
    """Where to run a task."""

    model_config = ConfigDict(extra="forbid")
    environment: EnvironmentName
    track: TrackName | None = Field(default=None, description="which track (needed when several are deployed there)")


class EndpointUrls(Out):
    """Where an endpoint is reached; null until the data plane has reported its listeners."""

    external: str | None = Field(description="the external listener (Public endpoints)")
    internal: str | None = Field(description="the internal listener (Organization and Public endpoints)")
    project: str | None = Field(description="the project's cell listener")


class DeploymentEndpoint(Out):
    name: str
    type: str
    visibility: list[str]
    basePath: str
    urls: EndpointUrls


class DeploymentConnection(Out):
    name: str
    state: Literal["resolved", "unresolved"]
    via: ConnectionVia | None = Field(description="null when unresolved")
    reason: str | None = Field(description="why it does not resolve; null when resolved")


class ReplicaStatus(Out):
    index: int
    state: str
    pid: int | None
    port: int | None
    restarts: int
    message: str


class ScalingSettings(Out):
    """A deployment's scaling, resolved for its environment (docs/scaling.md)."""

    minReplicas: int
    maxReplicas: int
    targetConcurrency: float
    targetRps: float = absent("when a requests-per-second target is set")
    idleSeconds: float
    scaleDownDelaySeconds: float


class ScalingStatus(Out):
    """What the data plane's scaler last reported for an autoscaled deployment."""

    current: int = Field(description="replicas running (ready or starting)")
    desired: int = Field(description="replicas the scaler wants")
    reason: str = Field(description="why: the load, idle, a wake-up, minReplicas or maxReplicas")


class EnvironmentScaling(Out):
    environment: str
    production: bool
    replicas: int = Field(description="the spec's fixed replicas (what runs where scaling is null)")
    scaling: ScalingSettings | None = Field(description="null: the fixed replicas run there")
    override: dict[str, Any] | None = Field(description="spec.scaling.environments.<environment>, as written")


class ComponentScaling(Out):
    """A component's scaling in each environment of its organization."""

    project: str
    component: str
    wakeable: bool = Field(description="whether the gateway can wake it from zero (HTTP endpoints only)")
    items: list[EnvironmentScaling]


class ScalingChange(ComponentScaling):
    action: Literal["configured", "unchanged"]


class DeploymentBuild(Out):
    id: str
    number: int | None


class Deployment(Out):
    """A component deployed in an environment: what should run (release) and what its data plane reports."""

    id: str
    organization: str
    project: str
    component: str
    environment: str
    dataPlane: str | None = Field(description="the environment's data plane")
    type: str
    build: DeploymentBuild
    artifact: str
    track: str = Field(description="the deployment track")
    version: str = Field(description="the track's API version (MAJOR.MINOR); routes carry v<MAJOR>")
    release: str = Field(description="the release it runs: 'r' + 10 hex of its digest")
    rollout: str = Field(description="what the data plane rolls out: the release, and its resolved connections")
    requestedBy: str
    createdAt: Timestamp
    updatedAt: Timestamp
    state: DeploymentState
    message: str
    observedRelease: str | None = Field(description="the rollout the data plane last reported")
    observedAt: Timestamp | None
    replicas: list[ReplicaStatus]
    scaling: ScalingSettings | None = Field(description="its scaling (from the component's current spec); null: a "
                                            "fixed number of replicas")
    scalingStatus: ScalingStatus | None = Field(description="the scaler's last report (an autoscaled deployment)")
    endpoints: list[DeploymentEndpoint]
    connections: list[DeploymentConnection]


class DeploymentList(Out):
    items: list[Deployment]


class EndpointInfo(Out):
    environment: str
    project: str
    component: str
    track: str
    version: str
    endpoint: str
    type: str
    visibility: list[str]
    basePath: str
    state: DeploymentState = Field(description="the state of the component's deployment")
    urls: EndpointUrls


class EndpointList(Out):
    items: list[EndpointInfo]


class LogLine(Out):
    id: int
    at: Timestamp
    replica: int | None
    stream: LogStream
    line: str
    run: str | None


class LogPage(Out):
    items: list[LogLine]
    next: int = Field(description="pass as ?after= to read on")
    more: bool = Field(False, description="older matching lines exist: pass the first item's id as ?before=")


class AccessLine(Out):
    id: int
    at: Timestamp
    endpoint: str
    method: str
    path: str
    status: int
    durationMs: float
    bytesSent: int
    decision: str
    reason: str | None
    consumer: str | None
    requestId: str | None
    traceId: str | None
    listener: str


class AccessPage(Out):
    items: list[AccessLine]
    next: int = Field(description="pass as ?after= to read on")
    more: bool = Field(False, description="older matching lines exist: pass the first item's id as ?before=")


class Red(Out):
    """Requests in a range: how many, how many failed (5xx), how fast (milliseconds)."""

    requests: int
    errors: int
    errorRate: float | None
    rps: float
    p50Ms: float | None
    p95Ms: float | None
    p99Ms: float | None


class ComponentMetrics(Out):
    project: str
    component: str
    environment: str
    since: Timestamp
    until: Timestamp
    step: int
    deployment: dict[str, Any] | None
    summary: dict[str, Any]
    endpoints: list[dict[str, Any]]
    replicas: list[dict[str, Any]]
    series: list[dict[str, Any]]
    scaling: dict[str, Any] | None = Field(description="an autoscaled deployment: its replicas (running, wanted) at "
                                           "the last point, and the range's cold starts (count, mean and max "
                                           "seconds); null without scaling points")


class Span(Out):
    spanId: str
    parentId: str | None
    project: str
    component: str
    endpoint: str
    listener: str
    name: str
    start: Timestamp
    offsetMs: float
    durationMs: float
    status: int
    consumer: str | None
    depth: int


class Trace(Out):
    traceId: str
    start: Timestamp
    durationMs: float
    status: int
    error: bool
    root: str
    name: str
    spans: list[Span]


class TraceList(Out):
    items: list[Trace]


class CellGraph(Out):
    project: str
    environment: str
    window: int
    components: list[dict[str, Any]]
    connections: list[dict[str, Any]]


class TaskRun(Out):
    id: str
    organization: str
    project: str
    component: str
    environment: str
    deployment: str
    trigger: Literal["manual", "schedule"]
    state: RunState
    requestedBy: str | None = Field(description="null for a scheduled run")
    requestedAt: Timestamp
    startedAt: Timestamp | None
    endedAt: Timestamp | None
    exitCode: int | None
    message: str


class TaskRunList(Out):
    items: list[TaskRun]


# -- the data-plane agent's API (docs/dataplane.md) -----------------------------------------------------------------


class AgentRegistered(Out):
    dataPlane: str
    environments: list[str] = Field(description="the environments bound to the data plane")


class StatusRecorded(Out):
    deployments: int = Field(description="deployments whose state was recorded (unknown ids are ignored)")


class LinesAccepted(Out):
    accepted: int = Field(description="lines stored (lines of unknown components or environments are dropped)")


class RunsRecorded(Out):
    recorded: int = Field(description="runs recorded (runs of unknown deployments are ignored)")


class Approval(Out):
    """A release waiting for (or having had) an approver's decision before it runs in an environment."""

    id: str
    organization: str
    project: str
    component: str
    environment: str
    track: str
    release: str
    action: str = Field(description="what asked: deploy, promote or auto-deploy")
    from_: str | None = Field(alias="from", description="the environment promoted from")
    state: Literal["pending", "approved", "rejected", "superseded"]
    requestedBy: str
    requestedAt: Timestamp
    decidedBy: str | None
    decidedAt: Timestamp | None
    reason: str


class ApprovalList(Out):
    items: list[Approval]


class ReleaseBuild(Out):
    id: str | None
    number: int | None


class ConfigSnapshotItem(Out):
    key: str
    secret: bool
    value: str | None = Field(description="'********' for a secret")


class Release(Out):
    """An immutable snapshot: artifact, component spec and configuration, for one environment and track."""

    id: str
    organization: str
    project: str
    component: str
    environment: str
    track: str
    build: ReleaseBuild
    artifact: str
    image: str = absent("the build's image by digest, when a registry is configured")
    origin: str
    createdBy: str
    createdAt: Timestamp
    spec: dict[str, Any] | None = Field(default=None, description="with detail only")
    configuration: list[ConfigSnapshotItem] | None = Field(default=None, description="with detail only")


class ReleaseEvent(Out):
    """A release becoming the one a deployment runs."""

    release: str
    environment: str
    track: str
    action: str = Field(description="deploy, promote, rollback, update (spec or configuration changed)")
    actor: str
    at: Timestamp
    note: str
    artifact: str | None
    image: str = absent("the build's image by digest, when a registry is configured")
    build: ReleaseBuild
    origin: str
    current: bool = Field(description="whether the deployment runs this release now")


class ReleaseHistory(Out):
    items: list[ReleaseEvent]


class ChangeOutcome(Out):
    """What a deploy, promotion, rollback or approval did."""

    action: Literal["created", "updated", "unchanged", "pending"]
    release: str
    deployment: Deployment | None = Field(description="null while an approval is pending")
    approval: Approval | None = Field(description="the approval request, when one was made")


class Preview(Out):
    organization: str
    project: str
    branch: str
    environment: str
    createdBy: str
    createdAt: Timestamp
    builds: list[dict[str, Any]]
    deployments: list[Deployment]


class PreviewList(Out):
    items: list[Preview]


class ReleaseDiff(Out):
    from_: str = Field(alias="from")
    to: str
    artifact: dict[str, str] | None
    environment: dict[str, str] | None
    spec: list[dict[str, Any]]
    configuration: list[dict[str, Any]]
