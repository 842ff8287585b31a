"""A workload's scaling, in this process, through a fake ``WorkloadHost`` (no processes, no gateway): ``scale_to``
starting and draining replicas, scale to zero and ``wake``, a wake-up whose replica crashes, the rollout of an
autoscaled deployment, and ``autoscale`` ticks on a clock the test moves. The same with real processes and real
requests through the gateway: test_scale_local.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

from cellplane.contract import DesiredDeployment
from cellplane.dataplane.cpclient import wire
from cellplane.dataplane.supervisor import Replica
from cellplane.dataplane.workload import ReleaseSet, Workload
from desiredkit import desired_deployment
from workloadkit import FakeWorkloadHost


class Host(FakeWorkloadHost):
    """The kit's fake host; its log says which replicas route ("routes", keys) and which drain ("drain", keys),
    and drains finish when ``drained`` is set."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.drained = asyncio.Event()
        self.drained.set()

    async def drain(self, rs: ReleaseSet) -> None:
        self.log.append(("drain", tuple(r.spec.key for r in rs.replicas)))
        await self.drained.wait()

    def routed(self) -> tuple[str, ...]:
        w = self.workload
        if w is None or w.active is None:
            return ()
        return tuple(r.spec.key for r in w.active.replicas if r.state == "ready")

    def routes_changed(self) -> None:
        self.log.append(("routes", self.routed()))

    # -- what the test does ------------------------------------------------------------------------------------

    def live(self, release: str = "r1") -> list[Replica]:
        return [r for r in self.replicas if r.spec.identity is not None and r.spec.identity.release == release
                and r.state != "stopped"]

    def ready(self, *replicas: Replica) -> None:
        for r in replicas or tuple(self.replicas):
            if r.state == "starting":
                r.state, r.message = "ready", "running"
        if self.workload is not None:
            self.workload.replica_changed()
            self.routes_changed()  # as the local runtime does for a replica of the serving release


def deployment(release: str = "r1", replicas: int = 1, **scaling: Any) -> DesiredDeployment:
    fields: dict[str, Any] = {"minReplicas": 0, "maxReplicas": 3, "targetConcurrency": 10, "idleSeconds": 5,
                              "scaleDownDelaySeconds": 1, **scaling}
    return desired_deployment(id="dep_1", release=release, replicas=replicas, scaling=fields, endpoints=[
        {"name": "api", "port": 8080, "type": "REST", "basePath": "/", "visibility": ["Project"]}])


async def until(what: Callable[[], bool], message: Callable[[], str]) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not what():
        assert asyncio.get_running_loop().time() < deadline, message()
        await asyncio.sleep(0.01)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(tmp_path: Path, body: Callable[[Host, Workload, Clock], Coroutine[Any, Any, None]],
        d: DesiredDeployment | None = None) -> None:
    async def main() -> None:
        host, clock = Host(tmp_path), Clock()
        first = d or deployment()
        w = Workload(host, first, scaling_window=6, clock=clock)
        host.workload = w
        try:
            w.apply(first)
            await until(lambda: len(host.live()) == max(first.scaling.minReplicas if first.scaling else 1, 1),
                        lambda: f"not started: {host.log}")
            host.ready()
            await until(lambda: w.state == "ready", lambda: f"the workload is {w.state}: {w.message}")
            await body(host, w, clock)
        finally:
            await w.stop()

    uvloop.run(main())


def test_scaling_up_starts_replicas_with_new_indices_and_routes_each_once_ready(tmp_path: Path) -> None:
    async def body(host: Host, w: Workload, clock: Clock) -> None:
        await w.scale_to(3, "load: 27 in flight, target 10 per replica")
        assert [k for what, k in host.log if what == "start"] == [f"development/shop/api/r1/{i}" for i in range(3)]
        assert host.routed() == ("development/shop/api/r1/0",)
        host.ready(host.replicas[2])
        assert host.routed() == ("development/shop/api/r1/0", "development/shop/api/r1/2")
        host.ready()
        assert w.state == "ready" and len(host.routed()) == 3
        assert "scaled to 3 replicas: load: 27 in flight, target 10 per replica" in host.lines
        report = wire(w.report())
        assert report["scaling"] == {"current": 3, "desired": 3,
                                     "reason": "load: 27 in flight, target 10 per replica"}
        assert [r["index"] for r in report["replicas"]] == [0, 1, 2]

    run(tmp_path, body)


def test_scaling_down_takes_replicas_out_of_the_routes_then_drains_then_stops_them(tmp_path: Path) -> None:
    async def body(host: Host, w: Workload, clock: Clock) -> None:
        await w.scale_to(3, "load")
        host.ready(host.replicas[1])  # replica 2 is still starting: it goes first
        host.drained.clear()
        await w.scale_to(1, "load: 4 in flight, target 10 per replica")
        keys = [f"development/shop/api/r1/{i}" for i in range(3)]
        await until(lambda: ("drain", (keys[2], keys[1])) in host.log, lambda: f"no drain: {host.log}")
        assert host.routed() == (keys[0],) and ("stop", keys[1]) not in host.log, "stopped before its drain ended"
        out = host.log.index(("routes", (keys[0],)))
        assert out < host.log.index(("drain", (keys[2], keys[1])))
        host.drained.set()
        await until(lambda: len(host.live()) == 1, lambda: f"not stopped: {host.log}")
        assert w.state == "ready" and wire(w.report())["scaling"]["current"] == 1
        assert "scaled to 1 replica: load: 4 in flight, target 10 per replica" in host.lines

    run(tmp_path, body)


def test_at_zero_the_state_says_so_and_one_wake_starts_exactly_one_replica(tmp_path: Path) -> None:
    async def body(host: Host, w: Workload, clock: Clock) -> None:
        await w.scale_to(0, "idle for 5 s")
        await until(lambda: not host.live(), lambda: f"not stopped: {host.log}")
        assert (w.state, w.message) == ("scaled-to-zero", "idle for 5 s") and host.routed() == ()
        assert "scaled to zero: idle for 5 s" in host.lines
        assert wire(w.report())["scaling"] == {"current": 0, "desired": 0, "reason": "idle for 5 s"}

        for _ in range(50):
            w.wake()
        await until(lambda: len(host.live()) == 1, lambda: f"not woken: {host.log}")
        await asyncio.sleep(0.05)
        w.wake()
        assert len(host.live()) == 1 and len([x for x in host.log if x[0] == "start"]) == 2
        assert w.state == "progressing" and w.message.startswith("woken by a request: replica 0")
        clock.now += 0.41
        host.ready()
        assert w.state == "ready" and host.routed() == ("development/shop/api/r1/0",)
        assert "woken by a request: replica ready in 0.41 s" in host.lines
        assert wire(w.report())["scaling"] == {"current": 1, "desired": 1, "reason": "woken by a request"}

    run(tmp_path, body)


def test_a_replica_that_exits_before_it_is_ready_fails_the_wake_up_with_its_reason(tmp_path: Path) -> None:
    async def body(host: Host, w: Workload, clock: Clock) -> None:
        await w.scale_to(0, "idle for 5 s")
        await until(lambda: not host.live(), lambda: f"not stopped: {host.log}")
        w.wake()
        await until(lambda: len(host.live()) == 1, lambda: f"not woken: {host.log}")
        r = host.live()[0]
        r.exit_code, r.message = 3, "exited with 3 (last line: no DATABASE_URL); restarting in 0.5s"
        w.replica_changed()
        assert len(host.failed) == 1 and host.failed[0].startswith("replica 0: exited with 3 (last line: no "
                                                                   "DATABASE_URL)")
        w.replica_changed()  # told once
        w.wake()  # a request held later fails at once too, without a second replica
        assert host.failed == ["replica 0: exited with 3 (last line: no DATABASE_URL)"] * 2
        assert len(host.live()) == 1
        assert "woken by a request: replica 0: exited with 3 (last line: no DATABASE_URL)" in host.lines
        r.message = "running"
        host.ready()  # its restart got ready: it serves
        assert w.state == "ready" and host.routed() == (r.spec.key,)

    run(tmp_path, body)


def test_a_request_racing_the_last_replicas_drain_wakes_a_fresh_replica(tmp_path: Path) -> None:
    async def body(host: Host, w: Workload, clock: Clock) -> None:
        host.drained.clear()
        await w.scale_to(0, "idle for 5 s")
        assert host.routed() == ()
        w.wake()  # held by the gateway after the replica left the routes
        await until(lambda: len(host.live()) == 2, lambda: f"not woken: {host.log}")
        assert host.live()[1].spec.key == "development/shop/api/r1/1", "the draining replica keeps its key"
        host.drained.set()
        host.ready()
        await until(lambda: len(host.live()) == 1, lambda: f"not stopped: {host.log}")
        assert w.state == "ready" and host.routed() == ("development/shop/api/r1/1",)

    run(tmp_path, body)


def test_a_rollout_of_an_autoscaled_deployment_starts_as_many_as_run_and_at_least_min_and_one(
        tmp_path: Path) -> None:
    async def body(host: Host, w: Workload, clock: Clock) -> None:
        await w.scale_to(3, "load")
        host.ready()
        w.apply(deployment("r2"))
        await until(lambda: len(host.live("r2")) == 3, lambda: f"r2: {host.log}")
        host.ready()
        await until(lambda: not host.live("r1"), lambda: f"r1 still runs: {host.log}")
        assert w.state == "ready" and w.current() == 3

        await w.scale_to(0, "idle for 5 s")
        await until(lambda: w.state == "scaled-to-zero", lambda: f"the workload is {w.state}")
        w.apply(deployment("r3"))
        await until(lambda: len(host.live("r3")) == 1, lambda: f"r3: {host.log}")
        host.ready()
        await until(lambda: w.state == "ready" and w.active is not None and w.active.release == "r3",
                    lambda: f"the workload is {w.state}")

        w.apply(deployment("r4", minReplicas=2))
        await until(lambda: len(host.live("r4")) == 2, lambda: f"r4: {host.log}")
        host.ready()
        await until(lambda: w.state == "ready" and w.current() == 2 and not host.live("r3"),
                    lambda: f"the workload is {w.state}")

    run(tmp_path, body)


def test_autoscale_ticks_grow_to_max_under_load_and_go_to_zero_after_the_idle_period(tmp_path: Path) -> None:
    async def body(host: Host, w: Workload, clock: Clock) -> None:
        async def tick(seconds: float, inflight: int, requests: int = 0) -> None:
            for _ in range(int(seconds / 0.5)):
                clock.now += 0.5
                await w.autoscale(clock.now, inflight, requests)
                host.ready()

        await tick(2, 45, 20)
        assert w.current() == 3 and "panic mode" in w.scaling_reason and w.scaling_reason.endswith("maxReplicas 3")
        await tick(4.5, 0)
        assert w.current() == 3, "panic holds the count for a stable window"
        await tick(4, 0)
        assert w.current() == 1 and w.scaling_reason.startswith("load: ") and "panic" not in w.scaling_reason
        await tick(1.5, 0)
        assert w.current() == 1, "not idle for 12 s yet"
        await tick(2, 0)  # the last request 12 s ago
        assert w.current() == 0 and w.state == "scaled-to-zero" and w.message == "idle for 12 s"
        await tick(10, 0)
        assert w.current() == 0
        await tick(0.5, 1, 1)  # a held request also wakes it through the tick
        assert w.current() == 1

    run(tmp_path, body, deployment(idleSeconds=12))


def test_a_deployment_whose_scaling_is_removed_runs_its_fixed_replicas_without_a_rollout(tmp_path: Path) -> None:
    async def body(host: Host, w: Workload, clock: Clock) -> None:
        fixed = desired_deployment(id="dep_1", release="r1", replicas=2, endpoints=[
            {"name": "api", "port": 8080, "type": "REST", "basePath": "/", "visibility": ["Project"]}])
        w.apply(fixed)
        await until(lambda: len(host.live()) == 2, lambda: f"not scaled: {host.log}")
        host.ready()
        assert w.state == "ready" and w.report().scaling is None and not host.live("r2")
        assert "scaled to 2 replicas: replicas 2" in host.lines

    run(tmp_path, body)


def test_a_wake_for_a_blocked_or_failing_deployment_fails_the_held_requests_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        host = Host(tmp_path)
        blocked = desired_deployment(id="dep_1", release="r1", blocked="dependency ledger: sales/ledger is not "
                                     "deployed in development", scaling={
                                         "minReplicas": 0, "maxReplicas": 1, "targetConcurrency": 10,
                                         "idleSeconds": 5, "scaleDownDelaySeconds": 1})
        w = Workload(host, blocked)
        host.workload = w
        w.apply(blocked)  # requests held before it was blocked are failed as it becomes so
        assert host.failed == ["dependency ledger: sales/ledger is not deployed in development"]
        w.wake()  # and each later wake-up at once
        assert host.failed == ["dependency ledger: sales/ledger is not deployed in development"] * 2
        assert not host.replicas
        await w.stop()

    uvloop.run(main())


def test_a_new_release_that_fails_while_the_deployment_is_at_zero_fails_the_held_requests_at_once(
        tmp_path: Path) -> None:
    async def body(host: Host, w: Workload, clock: Clock) -> None:
        await w.scale_to(0, "idle for 5 s")
        await until(lambda: not host.live(), lambda: f"not stopped: {host.log}")
        w.apply(deployment(release="r2"))  # its one replica starts; the gateway holds requests meanwhile
        await until(lambda: len(host.live("r2")) == 1, lambda: f"r2 not started: {host.log}")
        w.wake()  # a rollout is under way: its replica serves the held requests once ready
        assert host.failed == []
        crashed = host.live("r2")[0]
        crashed.state, crashed.message = "crash-loop", "exited with 3 (last line: no DATABASE_URL)"
        await until(lambda: w.state == "crash-loop", lambda: f"the workload is {w.state}: {w.message}")
        assert len(host.failed) == 1 and host.failed[0].startswith("replica 0: exited with 3 (last line: no "
                                                                   "DATABASE_URL)")

    run(tmp_path, body)
