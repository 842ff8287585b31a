"""Which replica a process is: a typed identity carried from the desired state to the supervisor and its ledger.

A replica is one process of a deployment's release (``index`` 0, 1, ...) or the one process of a task run
(``run``). Whoever needs to know where a replica belongs (its log lines, its events, the run a crashed agent left)
reads these fields; nothing parses them back out of the supervisor's key string, which is only a unique name for a
cgroup, a ledger file and a log message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReplicaId:
    environment: str
    project: str
    component: str
    deployment: str  # the deployment's id in the desired state
    release: str
    index: int = 0
    run: str | None = None  # a task run's id; None for a service or worker replica

    @property
    def key(self) -> str:
        """The supervisor's key: unique among the replicas and runs of one data plane at any time."""
        return f"{self.environment}/{self.project}/{self.component}/{self.run or self.release}/{self.index}"

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "project": self.project, "component": self.component,
                "deployment": self.deployment, "release": self.release, "index": self.index, "run": self.run}

    @classmethod
    def from_json(cls, data: Any) -> ReplicaId | None:
        """The identity a ledger record holds; None when it holds none (or not a well-formed one)."""
        if not isinstance(data, dict):
            return None
        strings = ("environment", "project", "component", "deployment", "release")
        if not all(isinstance(data.get(name), str) for name in strings) or not isinstance(data.get("index"), int):
            return None
        run = data.get("run")
        if run is not None and not isinstance(run, str):
            return None
        return cls(data["environment"], data["project"], data["component"], data["deployment"], data["release"],
                   data["index"], run)
