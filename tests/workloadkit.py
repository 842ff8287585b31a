"""A fake ``WorkloadHost`` for driving a ``Workload`` in this process: no processes, no gateway.

Its replicas are plain ``Replica`` objects the test moves from state to state; it records what the workload asks of
it: ``log`` ("start", key) and ("stop", key) entries (a test's subclass adds its own for drains and routes),
``lines`` (system lines), ``retries`` (retry_later's seconds) and ``failed`` (wake_failed's reasons).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cellplane.contract import DesiredDeployment
from cellplane.dataplane.replicaid import ReplicaId
from cellplane.dataplane.supervisor import Replica, ReplicaSpec
from cellplane.dataplane.workload import ReleaseSet, Workload


class FakeWorkloadHost:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.workload: Workload | None = None
        self.replicas: list[Replica] = []  # every replica started, in order
        self.log: list[tuple[str, Any]] = []
        self.lines: list[str] = []
        self.retries: list[float] = []
        self.failed: list[str] = []  # wake_failed reasons
        self.missing: set[str] = set()  # releases whose artifact cannot be fetched

    async def artifact(self, d: DesiredDeployment) -> Path:
        if d.release in self.missing:
            raise RuntimeError(f"artifact of {d.release} is not on this machine")
        return self.tmp

    async def binds_literally(self, d: DesiredDeployment, tree: Path) -> bool:
        return False

    async def start_replica(self, d: DesiredDeployment, tree: Path, index: int) -> Replica:
        identity = ReplicaId(d.environment, d.project, d.component, d.id, d.release, index)
        replica = Replica(ReplicaSpec(identity.key, ["app"], tree, {}, identity=identity))
        self.replicas.append(replica)
        self.log.append(("start", identity.key))
        return replica

    async def stop_replica(self, replica: Replica) -> None:
        replica.state = "stopped"
        self.log.append(("stop", replica.spec.key))

    async def drain(self, rs: ReleaseSet) -> None:
        self.log.append(("drain", rs.release))

    def routes_changed(self) -> None:
        pass

    def changed(self) -> None:
        pass

    def system_line(self, d: DesiredDeployment, line: str) -> None:
        self.lines.append(line)

    def retry_later(self, seconds: float) -> None:
        self.retries.append(seconds)

    def wake_failed(self, d: DesiredDeployment, reason: str) -> None:
        self.failed.append(reason)
