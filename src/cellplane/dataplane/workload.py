"""One deployment on this data plane: the release that serves, and the rollout to the next one.

A rollout starts the new release's replicas beside the old ones. Only when every new replica is ready
does the route table switch to them; the old replicas then leave the routes, their in-flight requests
finish (the gateway drains them) and they are stopped. A release that never gets ready leaves the old
one serving and shows why (crash loop, failing health check, missing artifact). An application that binds
its declared port itself cannot run beside its old release: it is stopped first (a short gap).

A workload reaches what it runs on only through its ``WorkloadHost`` (the local runtime in the agent; a fake in
tests): fetch an artifact, start and stop a replica, drain a release's requests, rebuild the routes, write an
event line, ask for a later retry. It reads its own desired deployment (a ``DesiredDeployment`` of the contract) and
nothing else, so the rollout's states can be driven without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cellplane.contract import DeploymentReport, DesiredDeployment, ReplicaReport
from cellplane.contract.wire import ReportedState
from cellplane.dataplane.supervisor import Replica
from cellplane.model.component import TASK_TYPES

log = logging.getLogger("cellplane.dataplane")
RETRY_SECONDS = 5.0
PROGRESS_DEADLINE = 60.0


@dataclass
class ReleaseSet:
    release: str
    desired: DesiredDeployment
    tree: Path
    replicas: list[Replica] = field(default_factory=list)

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas if r.state == "ready"]


class WorkloadHost(Protocol):
    """What a workload needs from what runs it: the local runtime implements it (processes and the gateway)."""

    async def artifact(self, d: DesiredDeployment) -> Path:
        """The unpacked artifact of deployment ``d``'s release (fetched when missing); raises when it cannot be."""
        ...

    async def binds_literally(self, d: DesiredDeployment, tree: Path) -> bool:
        """Whether the release's start command binds its declared port itself (one replica; no overlap)."""
        ...

    async def start_replica(self, d: DesiredDeployment, tree: Path, index: int) -> Replica:
        """Start supervising replica ``index`` of the release; returns at once (the replica gets ready later)."""
        ...

    async def stop_replica(self, replica: Replica) -> None:
        """Stop a replica and wait until it is gone."""
        ...

    async def drain(self, rs: ReleaseSet) -> None:
        """Wait until the requests in flight to a release that left the routes have finished (or its grace ends)."""
        ...

    def routes_changed(self) -> None:
        """The replicas a workload serves with changed: route by the workloads' current state."""
        ...

    def changed(self) -> None:
        """A workload's state changed: report it."""
        ...

    def system_line(self, d: DesiredDeployment, line: str) -> None:
        """An event in the deployment's log."""
        ...

    def retry_later(self, seconds: float) -> None:
        """Apply the desired state again after ``seconds``."""
        ...


class Workload:
    def __init__(self, host: WorkloadHost, desired: DesiredDeployment,
                 after: Iterable[asyncio.Task[None]] = ()) -> None:
        self.host = host
        self._after = list(after)  # stops of the same component's earlier workloads: their replica keys may be ours
        self.id: str = desired.id
        self.desired = desired
        self.active: ReleaseSet | None = None
        self.rolling: ReleaseSet | None = None
        self.state: ReportedState = "pending"
        self.message = ""
        self._task: asyncio.Task[None] | None = None
        self._task_release: str | None = None  # the release the running rollout task moves to
        self._retiring: set[asyncio.Task[None]] = set()  # old releases draining and stopping; never cancelled
        self._failed_release: str | None = None
        self._retry_at = 0.0

    @property
    def is_task(self) -> bool:
        return self.desired.type in TASK_TYPES

    def apply(self, desired: DesiredDeployment) -> None:
        """Level-triggered: make this workload converge on ``desired``; a no-op when it already does."""
        self.desired = desired
        if self.is_task:
            self.state = "scheduled" if desired.schedule is not None else "idle"
            self.message = desired.blocked or ""
            if desired.blocked:
                self.state = "blocked"
            return
        release = desired.release
        if desired.blocked:
            if not (self.active and self.active.release == release):
                self._set("blocked", desired.blocked + (
                    f"; release {self.active.release} keeps serving" if self.active else ""))
            return
        if self.active and self.active.release == release and self.rolling is None:
            return
        if self._task and not self._task.done() and self._task_release == release:
            return  # already on its way there
        if self._failed_release == release and time.monotonic() < self._retry_at:
            return  # it failed a moment ago: retried after RETRY_SECONDS
        if self._task and not self._task.done():
            self._task.cancel()
        self._task = asyncio.create_task(self._rollout(desired), name=f"rollout-{self.id}")
        self._task_release = release

    def _set(self, state: ReportedState, message: str = "") -> None:
        if (state, message) != (self.state, self.message):
            self.state, self.message = state, message
            self.host.changed()

    async def _rollout(self, d: DesiredDeployment) -> None:
        release = d.release
        new: ReleaseSet | None = None
        old: ReleaseSet | None
        try:
            self._set("progressing", f"preparing release {release}")
            tree = await self.host.artifact(d)
            literal = await self.host.binds_literally(d, tree)
            new = ReleaseSet(release, d, tree)
            if literal and self.active:
                old, self.active = self.active, None
                self.host.routes_changed()
                self._retire_later(old, f"release {old.release} stopped first: the app binds its declared port "
                                        "itself, so two releases cannot run side by side")
            if literal and self._retiring:  # the port is free once every older release has stopped
                await asyncio.shield(asyncio.gather(*self._retiring, return_exceptions=True))
            if self._after:
                await asyncio.shield(asyncio.gather(*self._after, return_exceptions=True))
                self._after = []
            count = 1 if literal else d.replicas
            self.rolling = new
            for index in range(count):
                new.replicas.append(await self.host.start_replica(d, tree, index))
            self._set("progressing", f"starting {count} replica(s) of release {release}")
            self.host.system_line(d, f"release {release}: started {count} replica(s)"
                                      + (f" beside release {self.active.release}" if self.active else ""))
            await self._wait_ready(new)
            old, self.active, self.rolling = self.active, new, None
            self._failed_release = None
            self.host.routes_changed()
            self._refresh(rolled_out=True)
            self.host.system_line(d, f"release {release} is ready and serving"
                                      + (f"; release {old.release} drains and stops" if old else ""))
            if old is not None:
                await asyncio.shield(self._retire_later(old, f"release {old.release} stopped"))
        except asyncio.CancelledError:
            if new is not None and new is not self.active:
                await self._stop(new)
                if self.rolling is new:
                    self.rolling = None
            raise
        except Exception as e:  # the release cannot start at all: say why, retry later
            reason = str(e) or type(e).__name__
            log.warning("deployment %s release %s: %s", self.id, release, reason)
            if new is not None and new is not self.active:
                await self._stop(new)
                self.rolling = None
            self._failed_release, self._retry_at = release, time.monotonic() + RETRY_SECONDS
            self.host.system_line(d, f"release {release} failed: {reason}")
            self._set("failed", reason + (f"; release {self.active.release} keeps serving" if self.active else ""))
            self.host.retry_later(RETRY_SECONDS)

    async def _wait_ready(self, new: ReleaseSet) -> None:
        """Until every new replica is ready; meanwhile the state says what is in the way. A release that is
        not ready after PROGRESS_DEADLINE seconds is marked failed, and still switched to if it gets ready."""
        started = time.monotonic()
        while True:
            if all(r.state == "ready" for r in new.replicas):
                return
            keeps = f"; release {self.active.release} keeps serving" if self.active else ""
            waiting = [(i, r) for i, r in enumerate(new.replicas) if r.state != "ready"]
            i, r = next(((i, r) for i, r in waiting if r.state in ("crash-loop", "failed")), waiting[0])
            if r.state in ("crash-loop", "failed"):
                self._set("crash-loop" if r.state == "crash-loop" else "failed", f"replica {i}: {r.message}{keeps}")
            elif time.monotonic() - started > PROGRESS_DEADLINE:
                self._set("failed", f"not ready after {PROGRESS_DEADLINE:.0f}s: replica {i}: {r.message}{keeps}")
            else:
                self._set("progressing", f"waiting for replica {i} of release {new.release}: {r.message}")
            await asyncio.sleep(0.1)

    def _retire_later(self, old: ReleaseSet, said: str) -> asyncio.Task[None]:
        """Drain and stop an old release in a task of its own: a newer rollout that cancels this one must
        not leave the old release half stopped (or running)."""
        async def retire() -> None:
            await self._retire(old)
            self.host.system_line(old.desired, said)

        task = asyncio.create_task(retire(), name=f"retire-{self.id}-{old.release}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return task

    async def _retire(self, old: ReleaseSet) -> None:
        await self.host.drain(old)
        await self._stop(old)

    async def _stop(self, rs: ReleaseSet) -> None:
        await asyncio.gather(*(self.host.stop_replica(r) for r in rs.replicas), return_exceptions=True)

    def _refresh(self, rolled_out: bool = False) -> None:
        """The state of a workload that is not rolling out, from its replicas."""
        rolling = self.rolling is not None or (self._task is not None and not self._task.done())
        if self.is_task or (rolling and not rolled_out):
            return
        if self.active is None:
            return
        replicas = self.active.replicas
        ready = len(self.active.ready())
        if not replicas:
            self._set("idle", "no replicas")
        elif ready == len(replicas):
            self._set("ready", "")
        elif ready:
            self._set("degraded", f"{ready}/{len(replicas)} replicas ready")
        else:
            worst = next((r for r in replicas if r.state == "crash-loop"), replicas[0])
            self._set("crash-loop" if worst.state == "crash-loop" else "degraded", worst.message)

    def replica_changed(self) -> None:
        self._refresh()

    def report(self) -> DeploymentReport:
        """What the status report says of this deployment (the contract's model)."""
        rs = self.rolling or self.active
        return DeploymentReport(
            id=self.id, release=self.desired.release, state=self.state, message=self.message,
            replicas=[ReplicaReport(index=i, state=r.state, pid=r.pid, port=r.port, restarts=r.restarts,
                                    message=r.message) for i, r in enumerate(rs.replicas if rs else [])])

    def cancel(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()

    async def stop(self) -> None:
        """Undeploy: leave the routes (the caller has rebuilt them without this workload), drain, stop."""
        if self._task and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for rs in (self.rolling, self.active):
            if rs is not None:
                await self._retire(rs)
        self.rolling = self.active = None
        await asyncio.gather(*self._retiring, return_exceptions=True)

