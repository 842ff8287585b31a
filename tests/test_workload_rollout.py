"""A workload's rollout state machine, in this process, driven through a fake ``WorkloadHost``: no processes, no
gateway. The host records what the workload asks of it (replicas started and stopped, routes rebuilt, releases
drained, events, retries); the test decides when a replica gets ready or crashes. The same rollouts with real
processes and real requests are in test_rollout.py and test_agent_reconcile.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

from cellplane.contract import DesiredDeployment
from cellplane.dataplane.cpclient import wire
from cellplane.dataplane.supervisor import Replica
from cellplane.dataplane.workload import RETRY_SECONDS, Workload
from desiredkit import desired_deployment
from workloadkit import FakeWorkloadHost


class FakeHost(FakeWorkloadHost):
    """The kit's fake host; its log says which release routes ("routes", release) and which drains."""

    def routes_changed(self) -> None:
        w = self.workload
        self.log.append(("routes", w.active.release if w is not None and w.active is not None else "-"))

    # -- what the test does ------------------------------------------------------------------------------------

    def of(self, release: str) -> list[Replica]:
        return [r for r in self.replicas if r.spec.identity is not None and r.spec.identity.release == release]

    def set_state(self, release: str, state: Any, message: str = "") -> None:
        for r in self.of(release):
            r.state, r.message = state, message
        if self.workload is not None:
            self.workload.replica_changed()

    def running(self, release: str) -> list[Replica]:
        return [r for r in self.of(release) if r.state != "stopped"]

    def when(self, what: str, detail: str) -> int:
        """The position of the first ``(what, detail)`` in the log."""
        return self.log.index((what, detail))


def deployment(release: str, replicas: int = 2) -> DesiredDeployment:
    return desired_deployment(id="dep_1", release=release, replicas=replicas, endpoints=[
        {"name": "api", "port": 8080, "type": "REST", "basePath": "/", "visibility": ["Project"]}])


async def until(what: Callable[[], bool], message: Callable[[], str]) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not what():
        assert asyncio.get_running_loop().time() < deadline, message()
        await asyncio.sleep(0.01)


def run(tmp_path: Path, body: Callable[[FakeHost, Workload], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        host = FakeHost(tmp_path)
        w = Workload(host, deployment("r1"))
        host.workload = w
        try:
            w.apply(deployment("r1"))
            await until(lambda: len(host.of("r1")) == 2, lambda: f"r1 not started: {host.log}")
            host.set_state("r1", "ready", "running")
            await until(lambda: w.state == "ready" and w.active is not None and w.active.release == "r1",
                        lambda: f"r1 is {w.state}: {w.message}")
            await body(host, w)
        finally:
            await w.stop()

    uvloop.run(main())


def test_a_rollout_starts_the_new_release_beside_the_old_switches_once_all_are_ready_then_drains_the_old(
        tmp_path: Path) -> None:
    async def body(host: FakeHost, w: Workload) -> None:
        w.apply(deployment("r2"))
        await until(lambda: len(host.of("r2")) == 2, lambda: f"r2 not started: {host.log}")
        host.set_state("r2", "ready", "running")
        host.of("r2")[1].state = "starting"  # one new replica is not ready yet: no switch
        await asyncio.sleep(0.3)
        assert w.active is not None and w.active.release == "r1" and w.state == "progressing"
        assert len(host.running("r1")) == 2 and ("drain", "r1") not in host.log
        assert wire(w.report())["replicas"] == [{"index": i, "state": s, "pid": None, "port": None, "restarts": 0,
                                           "message": "running"} for i, s in enumerate(("ready", "starting"))]

        host.set_state("r2", "ready", "running")
        await until(lambda: not host.running("r1"), lambda: f"r1 still runs: {host.log}")
        assert w.active is not None and w.active.release == "r2" and w.rolling is None and w.state == "ready"
        switched = host.when("routes", "r2")
        assert switched < host.when("drain", "r1") < min(host.when("stop", r.spec.key) for r in host.of("r1"))
        assert "release r2 is ready and serving; release r1 drains and stops" in host.lines
        await until(lambda: "release r1 stopped" in host.lines, lambda: f"no stop line: {host.lines}")

    run(tmp_path, body)


def test_a_new_release_that_crash_loops_or_cannot_be_fetched_leaves_the_old_one_serving(tmp_path: Path) -> None:
    async def body(host: FakeHost, w: Workload) -> None:
        w.apply(deployment("r2"))
        await until(lambda: len(host.of("r2")) == 2, lambda: f"r2 not started: {host.log}")
        host.set_state("r2", "crash-loop", "exited with 1; restarting in 2s")
        await until(lambda: w.state == "crash-loop", lambda: f"the workload is {w.state}: {w.message}")
        assert w.message == "replica 0: exited with 1; restarting in 2s; release r1 keeps serving"
        assert w.active is not None and w.active.release == "r1" and len(host.running("r1")) == 2
        assert ("routes", "r2") not in host.log and ("drain", "r1") not in host.log

        host.missing.add("r3")
        w.apply(deployment("r3"))
        await until(lambda: w.state == "failed", lambda: f"the workload is {w.state}: {w.message}")
        assert w.message == "artifact of r3 is not on this machine; release r1 keeps serving"
        assert host.retries == [RETRY_SECONDS] and "release r3 failed: artifact of r3 is not on this machine" \
            in host.lines
        assert not host.running("r2"), "the crash-looping release is stopped once a newer one supersedes it"
        assert w.active is not None and w.active.release == "r1" and len(host.running("r1")) == 2
        w.apply(deployment("r3"))  # at once again: not retried before RETRY_SECONDS
        assert w.state == "failed" and host.retries == [RETRY_SECONDS]

    run(tmp_path, body)


def test_an_apply_that_supersedes_a_rollout_midway_stops_the_half_started_release_and_rolls_out_the_newest(
        tmp_path: Path) -> None:
    async def body(host: FakeHost, w: Workload) -> None:
        w.apply(deployment("r2"))
        await until(lambda: len(host.of("r2")) == 2, lambda: f"r2 not started: {host.log}")
        w.apply(deployment("r2"))  # the same desired state again (a resync): the rollout goes on untouched
        assert w.rolling is not None and w.rolling.release == "r2"

        w.apply(deployment("r3"))
        await until(lambda: len(host.of("r3")) == 2, lambda: f"r3 not started: {host.log}")
        await until(lambda: not host.running("r2"), lambda: f"r2 still runs: {host.log}")
        assert w.active is not None and w.active.release == "r1" and len(host.running("r1")) == 2
        host.set_state("r3", "ready", "running")
        await until(lambda: not host.running("r1"), lambda: f"r1 still runs: {host.log}")
        assert w.active is not None and w.active.release == "r3" and w.state == "ready"
        assert ("routes", "r2") not in host.log and ("drain", "r2") not in host.log
        assert w.report().release == "r3"

    run(tmp_path, body)
