"""What an agent tells the control plane about itself and what it runs: its registration (``PUT …/agent``), its
status report (``PUT …/status``: listeners, deployments, replicas) and its task runs (``POST …/task-runs``), as
docs/dataplane.md describes them.

The agent builds these; the control plane parses a body with them at the route, so a malformed one is refused with
a 422 that names every problem at its field path. Unknown keys are ignored; messages are cut to ``MAX_MESSAGE``
characters. A task run's times are its type parameter (``wire.When``): ``TaskRunReport`` reads them as datetimes,
the agent's ``TaskRunSent`` keeps the ISO 8601 text it wrote. Cost: pydantic's validation.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal

from pydantic import Field, WithJsonSchema

from cellplane.contract.wire import (
    InstantText,
    Label,
    Message,
    Report,
    ReportedState,
    RunState,
    Timestamp,
    Url,
    When,
    name_keys,
)


class AgentRegistration(Report):
    """An agent introducing itself."""

    agentId: str = Field(min_length=1, max_length=100)
    version: str = Field(default="", max_length=100)
    hostname: str = Field(default="", max_length=255)
    publicKey: Annotated[str, WithJsonSchema({"type": "string", "pattern": "^[A-Za-z0-9_-]{43}=?$"})] = Field(
        min_length=1, max_length=100, description="base64url of the agent's X25519 public key (32 bytes)")
    bindUnbound: bool = Field(default=False, description="bind every environment without a data plane to this one")
    runtime: Literal["local", "kubernetes"] = Field(
        default="local", description="what runs the workloads: the DataPlane's type is set to it")


class GatewayReport(Report):
    external: Url | None = None
    internal: Url | None = None
    cells: dict[Label, Url] = Field(default_factory=dict, description="project -> its cell listener",
                                    json_schema_extra=name_keys)


class ReplicaReport(Report):
    index: int = Field(ge=0, le=10000)
    state: str = Field(max_length=40)
    pid: int | None = Field(default=None, ge=0, le=2**31)
    port: int | None = Field(default=None, ge=0, le=65535)
    restarts: int = Field(default=0, ge=0, le=2**31)
    message: Message = ""


class ScalingReport(Report):
    """The scaler's view of an autoscaled deployment: the replicas it runs, the count it wants, and why."""

    current: int = Field(ge=0, le=10000, description="replicas running (ready or starting)")
    desired: int = Field(ge=0, le=10000, description="replicas the scaler wants")
    reason: Message = Field(default="", description="why: the load, idle, a wake-up, minReplicas or maxReplicas")


class DeploymentReport(Report):
    id: str = Field(min_length=1, max_length=20)
    release: str | None = Field(default=None, max_length=20)
    state: ReportedState
    message: Message = ""
    replicas: list[ReplicaReport] = Field(default_factory=list, max_length=1000)
    scaling: ScalingReport | None = Field(default=None, description="set for an autoscaled deployment")


class StatusReport(Report):
    """What runs on the data plane."""

    agentId: str = Field(min_length=1, max_length=100)
    revision: str | None = Field(default=None, max_length=100, description="the desired state it runs")
    gateways: dict[Label, GatewayReport] = Field(default_factory=dict, description="environment -> its listeners",
                                                json_schema_extra=name_keys)
    deployments: list[DeploymentReport] = Field(default_factory=list, max_length=10000)
    metricsUrl: Url | None = Field(default=None, description="the agent's Prometheus endpoint")


class TaskRunOf(Report, Generic[When]):
    # a task run's state, its times of type ``When`` (no docstring: it would be the schema's description)
    id: str = Field(pattern=r"^run_[0-9a-f]{16}$")
    deployment: str = Field(min_length=1, max_length=20)
    environment: Label
    project: Label
    component: Label
    trigger: Literal["manual", "schedule"]
    state: RunState
    startedAt: When | None = None
    endedAt: When | None = None
    exitCode: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    message: Message = ""


class TaskRunReport(TaskRunOf[Timestamp]):
    pass  # a task run as the control plane reads it: its times in UTC


class TaskRunSent(TaskRunOf[InstantText]):
    pass  # a task run as the agent sends it: its times the ISO 8601 text it wrote


class TaskRunBatch(Report):
    runs: list[TaskRunReport] = Field(max_length=1000)
