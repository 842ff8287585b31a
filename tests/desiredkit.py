"""Desired states for data-plane tests that hand a runtime or a workload one directly: the contract's models, with
every key the control plane always sends filled in, so a test names only what it is about.

The documents are the JSON the control plane serves (``to_wire`` of its models), parsed with
``DesiredState.from_wire`` as the agent parses them; keys the control plane leaves out when they do not apply are
left out here too unless given. ``RecordingRuntime`` is a runtime for the agent's loop that runs nothing.
"""

from __future__ import annotations

from typing import Any

from cellplane.contract import DesiredDeployment, DesiredState
from cellplane.dataplane.runtimes.base import RuntimeHost, RuntimeStatus

DIGEST = "sha256:" + "0" * 64


def deployment_wire(**fields: Any) -> dict[str, Any]:
    """A desired deployment's JSON: a service ``api`` of project ``shop`` in ``development``, release ``r1``,
    one replica, no endpoint; ``fields`` replace keys."""
    return {"id": "dep_000000000001", "environment": "development", "project": "shop", "component": "api",
            "track": "main", "type": "service", "release": "r1", "version": "v1", "artifact": {"digest": DIGEST},
            "replicas": 1, "resources": {}, "health": None, "endpoints": [], "env": [], "files": [],
            "connections": [], "blocked": None, "schedule": None, **fields}


def desired_deployment(**fields: Any) -> DesiredDeployment:
    """``deployment_wire(**fields)``, parsed."""
    return DesiredDeployment.model_validate(deployment_wire(**fields))


def state_wire(deployments: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A desired state's JSON with these deployments (their environments listed, not production)."""
    environments = sorted({d["environment"] for d in deployments} or {"development"})
    return {"revision": "rev1", "organization": "acme", "dataPlane": "local",
            "environments": [{"name": e, "production": False} for e in environments],
            "deployments": deployments, "grants": [], "runs": [], **fields}


def desired_state(deployments: list[dict[str, Any]], **fields: Any) -> DesiredState:
    """``state_wire(deployments, **fields)``, parsed as the agent parses it."""
    return DesiredState.from_wire(state_wire(deployments, **fields))


class RecordingRuntime:
    """A ``Runtime`` that runs nothing and keeps what the agent's loop hands it: the cached desired state at start,
    and every desired state applied, in order (as the contract's models)."""

    def __init__(self) -> None:
        self.cached: object = None
        self.applied: list[object] = []

    async def start(self, host: RuntimeHost, cached: DesiredState | None) -> None:
        self.cached = cached

    async def apply(self, desired: DesiredState) -> None:
        self.applied.append(desired)

    async def status(self) -> RuntimeStatus:
        return RuntimeStatus({}, [])

    async def stop(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def describe(self) -> str:
        return "nothing runs"
