"""The contract between the control plane and a data plane's agent, in one place: what the agent receives (the
desired state), what it sends back (registration, status, task runs, log lines and events, access lines, metric
points, spans), and the URL scheme and metric buckets both planes and the gateway use.

Typed models (pydantic 2): the control plane builds them and serves them as JSON once, at the edge; it parses an
agent's bodies with them at the route; the agent parses the desired state once, at its boundary
(``DesiredState.from_wire``). A field renamed on one side is a type error on the other, and the API's OpenAPI
document describes the agent's calls with these same models. This package imports nothing from any plane (only
pydantic and the resource model's name rule), so every plane may import it.
"""

from cellplane.contract.desired import (
    DesiredArtifact,
    DesiredConnection,
    DesiredConnectionEnv,
    DesiredCredentials,
    DesiredDeployment,
    DesiredEndpoint,
    DesiredEnv,
    DesiredEnvironment,
    DesiredFile,
    DesiredGrant,
    DesiredHealth,
    DesiredProbe,
    DesiredResources,
    DesiredRun,
    DesiredScaling,
    DesiredSchedule,
    DesiredState,
    DesiredTarget,
    GrantTarget,
    SealedValue,
)
from cellplane.contract.requestmetrics import BUCKETS, CELL_CONSUMER
from cellplane.contract.status import (
    AgentRegistration,
    DeploymentReport,
    GatewayReport,
    ReplicaReport,
    ScalingReport,
    StatusReport,
    TaskRunBatch,
    TaskRunReport,
    TaskRunSent,
)
from cellplane.contract.telemetry import (
    AccessBatch,
    AccessLine,
    AccessLineSent,
    LogBatch,
    LogLineReport,
    LogLineSent,
    MetricBatch,
    MetricPoint,
    MetricPointSent,
    Span,
    SpanBatch,
    SpanSent,
)
from cellplane.contract.urlscheme import route_prefix

__all__ = [
    "BUCKETS", "CELL_CONSUMER", "AccessBatch", "AccessLine", "AccessLineSent", "AgentRegistration",
    "DeploymentReport", "DesiredArtifact", "DesiredConnection", "DesiredConnectionEnv", "DesiredCredentials",
    "DesiredDeployment", "DesiredEndpoint", "DesiredEnv", "DesiredEnvironment", "DesiredFile", "DesiredGrant",
    "DesiredHealth", "DesiredProbe", "DesiredResources", "DesiredRun", "DesiredScaling", "DesiredSchedule",
    "DesiredState", "DesiredTarget", "GatewayReport", "GrantTarget", "LogBatch", "LogLineReport", "LogLineSent",
    "MetricBatch", "MetricPoint", "MetricPointSent", "ReplicaReport", "ScalingReport", "SealedValue", "Span",
    "SpanBatch", "SpanSent", "StatusReport", "TaskRunBatch", "TaskRunReport", "TaskRunSent", "route_prefix",
]
