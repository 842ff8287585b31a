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

Scaling (a deployment with ``scaling``; docs/scaling.md, "The scaler"): ``autoscale`` feeds the gateway's demand to
the deployment's ``Autoscaler`` every tick and ``scale_to`` moves the serving release to the count it decides: more
replicas are started and each is routed once ready; fewer: the removed ones leave the routes first, are drained,
then stopped; at zero the state is "scaled-to-zero" and the gateway holds requests for it and calls ``wake``, which
starts one replica (a wake while one starts is a no-op; one that exits before it is ready fails the held requests
with the reason, through ``WorkloadHost.wake_failed``). A rollout of an autoscaled deployment starts
max(current, minReplicas, 1) replicas of the new release. Scale operations and a rollout's switch are serialized
by one lock, so a replica is never started into a release that has just been retired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cellplane.contract import DeploymentReport, DesiredDeployment, ReplicaReport, ScalingReport
from cellplane.contract.wire import ReportedState
from cellplane.dataplane.autoscaler import STABLE_WINDOW, Autoscaler
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

    def wake_failed(self, d: DesiredDeployment, reason: str) -> None:
        """The replica started for requests held at zero exited before it was ready: fail them with ``reason``."""
        ...


def _index(r: Replica, fallback: int) -> int:
    """A replica's index in its release (its identity's; ``fallback`` for one without)."""
    return r.spec.identity.index if r.spec.identity is not None else fallback


def _replicas(n: int) -> str:
    return "zero" if n == 0 else f"{n} replica" + ("s" if n != 1 else "")


class Workload:
    def __init__(self, host: WorkloadHost, desired: DesiredDeployment,
                 after: Iterable[asyncio.Task[None]] = (), scaling_window: float = STABLE_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
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
        # scaling
        self._clock = clock
        self._scaling_window = scaling_window
        self.autoscaler: Autoscaler | None = None  # made at the first tick of an autoscaled deployment
        self.scaling_desired: int | None = None  # what the last scale decision asked for, and why
        self.scaling_reason = ""
        self._literal = False  # the serving release binds its declared port: one replica at most
        self._scale_lock = asyncio.Lock()  # scale operations and a rollout's switch, one at a time
        self._scale_tasks: set[asyncio.Task[None]] = set()
        self._draining: list[Replica] = []  # replicas scaled away, until they have stopped
        self._waking: tuple[Replica, float] | None = None  # the replica a wake-up started, and when
        self._wake_failure = ""  # why that replica failed before it was ready (told to the gateway)

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
            self._fixed_count(desired)
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
            self._literal = literal
            count = self._rollout_count(d)
            self.rolling = new
            for index in range(count):
                new.replicas.append(await self.host.start_replica(d, tree, index))
            self._set("progressing", f"starting {count} replica(s) of release {release}")
            self.host.system_line(d, f"release {release}: started {count} replica(s)"
                                      + (f" beside release {self.active.release}" if self.active else ""))
            await self._wait_ready(new)
            async with self._scale_lock:  # no scale operation is half way through the release being retired
                old, self.active, self.rolling = self.active, new, None
                self._waking, self._wake_failure = None, ""
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

    def _retire_later(self, old: ReleaseSet, said: str | None) -> asyncio.Task[None]:
        """Drain and stop an old release (or replicas scaled away) in a task of its own: a newer rollout that
        cancels this one must not leave the old release half stopped (or running)."""
        async def retire() -> None:
            await self._retire(old)
            if said is not None:
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
        if not replicas and self.desired.scaling is not None:
            self._set("scaled-to-zero", self.scaling_reason)
        elif not replicas:
            self._set("idle", "no replicas")
        elif self._waking is not None and not ready and not self._wake_failure:
            self._set("progressing", f"woken by a request: replica {_index(self._waking[0], 0)}: "
                                     f"{self._waking[0].message}")
        elif ready == len(replicas):
            self._set("ready", "")
        elif ready:
            self._set("degraded", f"{ready}/{len(replicas)} replicas ready")
        else:
            worst = next((r for r in replicas if r.state == "crash-loop"), replicas[0])
            self._set("crash-loop" if worst.state == "crash-loop" else "degraded", worst.message)

    def replica_changed(self) -> None:
        self._check_wake()
        self._refresh()

    def report(self) -> DeploymentReport:
        """What the status report says of this deployment (the contract's model)."""
        rs = self.rolling or self.active
        scaling: dict[str, ScalingReport] = {}  # given only when autoscaled: the key is absent otherwise
        if self.desired.scaling is not None and not self.is_task:
            scaling["scaling"] = ScalingReport(current=self.current(), desired=self.desired_count(),
                                               reason=self.scaling_reason)
        return DeploymentReport(
            id=self.id, release=self.desired.release, state=self.state, message=self.message,
            replicas=[ReplicaReport(index=_index(r, i), state=r.state, pid=r.pid, port=r.port, restarts=r.restarts,
                                    message=r.message) for i, r in enumerate(rs.replicas if rs else [])],
            **scaling)

    # -- scaling -----------------------------------------------------------------------------------------------

    def current(self) -> int:
        """Replicas of the serving release that run (ready or starting); none leaving."""
        return len(self.active.replicas) if self.active is not None else 0

    def desired_count(self) -> int:
        """The count the scaler wants (the current one before its first decision)."""
        return self.scaling_desired if self.scaling_desired is not None else self.current()

    def _busy(self) -> bool:
        """A rollout is under way: it sets the count of the release it switches to."""
        return self._task is not None and not self._task.done()

    def _rollout_count(self, d: DesiredDeployment) -> int:
        """Replicas a rollout starts: 1 for an app that binds its port; for an autoscaled deployment
        max(current, minReplicas, 1) within maxReplicas; else ``replicas``."""
        if self._literal:
            return 1
        s = d.scaling
        if s is None:
            return d.replicas
        return min(max(self.current(), s.minReplicas, 1), max(s.maxReplicas, 1))

    async def autoscale(self, now: float, inflight: float, requests: int) -> None:
        """One tick of the scaler: the gateway's demand since the last one (requests in flight now, requests since),
        then scale to what the autoscaler decides. Not autoscaled: nothing."""
        s = self.desired.scaling
        if s is None or self.is_task:
            self.autoscaler = None
            return
        if self.autoscaler is None:
            self.autoscaler = Autoscaler(s, now, stable_window=self._scaling_window)
        self.autoscaler.scaling = s
        self.autoscaler.observe(now, inflight, requests)
        if self.active is None or self._busy():
            return
        decision = self.autoscaler.decide(now, self.current())
        wanted = min(decision.desired, 1) if self._literal else decision.desired
        if wanted != self.current():
            await self.scale_to(wanted, decision.reason)

    def _fixed_count(self, d: DesiredDeployment) -> None:
        """A deployment whose scaling was removed (``cellplane scale --fixed``) runs ``replicas`` again, without a
        rollout (scaling is not part of a release)."""
        if d.scaling is not None or self.is_task or self.active is None or self._literal:
            return
        self.autoscaler, self.scaling_desired = None, None
        if self.current() != d.replicas:
            self._later(self.scale_to(d.replicas, f"replicas {d.replicas}"))

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"scale-{self.id}")
        self._scale_tasks.add(task)
        task.add_done_callback(self._scale_tasks.discard)

    async def scale_to(self, n: int, reason: str) -> None:
        """Run ``n`` replicas of the serving release: start the missing ones (each routed once ready), or take
        the surplus out of the routes, then drain and stop them (in the background). At zero the state is
        "scaled-to-zero". Nothing while a rollout is under way (it sets the count) or before a release serves."""
        started = self._clock()
        async with self._scale_lock:
            rs = self.active
            if rs is None or self._busy() or self.is_task:
                return
            n = max(0, min(n, 1) if self._literal else n)
            current = len(rs.replicas)
            if n == current:
                return
            self.scaling_desired, self.scaling_reason = n, reason
            d = self.desired
            if n > current:
                if self._literal and self._retiring:  # its declared port is free once the replica leaving is gone
                    await asyncio.shield(asyncio.gather(*self._retiring, return_exceptions=True))
                used = {_index(r, i) for i, r in enumerate(rs.replicas)} | self._leaving_indices()
                free = (i for i in range(10000) if i not in used)
                for index in [next(free) for _ in range(n - current)]:
                    rs.replicas.append(await self.host.start_replica(rs.desired, rs.tree, index))
                if current == 0:  # from zero: a wake-up, timed and watched until its first replica is ready
                    self._waking, self._wake_failure = (rs.replicas[0], started), ""
            else:
                # the ones not serving yet first, then the highest indices
                order = sorted(rs.replicas, key=lambda r: (r.state == "ready", -_index(r, 0)))
                leaving = order[:current - n]
                rs.replicas = [r for r in rs.replicas if r not in leaving]
                self._draining = [*self._leaving_replicas(), *leaving]
                if self._waking is not None and self._waking[0] in leaving:
                    self._waking, self._wake_failure = None, ""
                self.host.routes_changed()  # they leave the routes before they are drained
                self._retire_later(ReleaseSet(rs.release, rs.desired, rs.tree, leaving), None)
            self.host.system_line(d, f"scaled to {_replicas(n)}: {reason}")
            self._check_wake()
            self._refresh()
            self.host.changed()

    def _leaving_indices(self) -> set[int]:
        """Indices of replicas of the serving release still draining or stopping (their keys are taken)."""
        return {_index(r, -1) for r in self._leaving_replicas()}

    def _leaving_replicas(self) -> list[Replica]:
        return [r for r in self._draining if r.state != "stopped"]

    def wake(self) -> None:
        """A request is held for this deployment at zero: start one replica. A no-op while one is starting (or
        runs), while a rollout is under way (its replicas serve), and for a deployment that is not autoscaled; a
        wake while the starting replica has already failed fails the held requests again at once."""
        if self.is_task:
            return
        if self.active is None or self._busy():  # its release is on its way (or blocked or failing: say why at once)
            if self.state in ("failed", "crash-loop", "blocked"):
                self.host.wake_failed(self.desired, self.message)
            return
        if self.active.replicas:
            if self._wake_failure:
                self.host.wake_failed(self.desired, self._wake_failure)
            return
        self._later(self._wake())

    async def _wake(self) -> None:
        if self.autoscaler is not None:
            self.autoscaler.woke(self._clock())
        await self.scale_to(1, "woken by a request")

    def _check_wake(self) -> None:
        """The replica a wake-up started: ready (say how long it took), or exited before (fail the held
        requests with the reason, once)."""
        if self._waking is None:
            return
        r, started = self._waking
        if r.state == "ready":
            self._waking, self._wake_failure = None, ""
            self.host.system_line(self.desired, f"woken by a request: replica ready in "
                                                f"{self._clock() - started:.2f} s")
        elif not self._wake_failure and (r.state in ("crash-loop", "failed", "stopped") or r.exit_code is not None):
            self._wake_failure = f"replica {_index(r, 0)}: {r.message.split('; restarting in')[0]}"
            self.host.system_line(self.desired, f"woken by a request: {self._wake_failure}")
            self.host.wake_failed(self.desired, self._wake_failure)

    def cancel(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()
        for task in self._scale_tasks:
            task.cancel()

    async def stop(self) -> None:
        """Undeploy: leave the routes (the caller has rebuilt them without this workload), drain, stop."""
        for task in list(self._scale_tasks):
            task.cancel()
        await asyncio.gather(*self._scale_tasks, return_exceptions=True)
        if self._task and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for rs in (self.rolling, self.active):
            if rs is not None:
                await self._retire(rs)
        self.rolling = self.active = None
        await asyncio.gather(*self._retiring, return_exceptions=True)

