"""Scaling on the local data plane with real processes: a real agent in this process against a real control plane,
the echo app built once, requests through the real gateway. The test hands the agent the control plane's desired
state with ``scaling`` set on the deployment (what the control plane sends for a component with spec.scaling), then
moves the workload with ``scale_to`` and ``wake`` as the scaler and the activator do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop

from buildkit import BuildServer
from cellplane.contract import DesiredState
from cellplane.dataplane.agent import Agent, AgentSettings
from cellplane.dataplane.runtimes.local import LocalRuntime
from cellplane.dataplane.workload import Workload
from dataplanekit import build_app, deploy, logs, poll, service


async def until(what: Callable[[], bool], message: Callable[[], str], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not what():
        assert asyncio.get_running_loop().time() < deadline, message()
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def agent_with_scaling(build_server: BuildServer, data: Path, project: str, scaling: dict[str, Any],
                             **settings: Any) -> AsyncIterator[tuple[LocalRuntime, Workload]]:
    """An agent in this process whose sync loop is stopped: it runs the deployment of ``project/api`` with
    ``scaling`` added to what the control plane sends; yields the runtime and the workload once it is ready."""
    c = build_server.client
    options = AgentSettings(controlplane=build_server.server.url, token=build_server.server.admin_token,
                            data_dir=data, cache_dir=build_server.cache, metrics_port=None, **settings)
    runtime = LocalRuntime(options)
    agent = Agent(options, runtime)
    await agent.start()
    try:
        (sync,) = [t for t in agent._tasks if t.get_name() == "sync"]
        sync.cancel()  # from here on this test hands the agent its desired state
        await asyncio.to_thread(deploy, c, project, "api")
        wire = await agent.cp.desired(None, 0)
        for d in wire["deployments"]:
            d["scaling"] = scaling
        await agent.apply(DesiredState.from_wire(wire))
        (w,) = runtime.workloads.values()
        await until(lambda: w.state == "ready", lambda: f"not ready: {w.state} {w.message}", timeout=120)
        yield runtime, w
    finally:
        await agent.stop()


def url_of(runtime: LocalRuntime, project: str) -> str:
    external = runtime.network.report()["development"].external
    assert external is not None
    return external + f"/{project}/api/v1"


def pids(w: Workload) -> set[int]:
    return {r.pid for r in (w.active.replicas if w.active else []) if r.pid is not None}


def test_an_autoscaled_service_runs_min_replicas_grows_drains_as_it_shrinks_and_wakes_from_zero(
        build_server: BuildServer, tmp_path: Path) -> None:
    c = build_server.client
    build_app(c, "scaled", "api", service())
    scaling = {"minReplicas": 2, "maxReplicas": 3, "targetConcurrency": 10, "idleSeconds": 300,
               "scaleDownDelaySeconds": 30}

    async def body() -> None:
        async with agent_with_scaling(build_server, tmp_path / "dp", "scaled", scaling,
                                      metrics_interval=0.5) as (runtime, w):
            url = url_of(runtime, "scaled")
            assert w.current() == 2, "a rollout starts minReplicas"
            async with httpx.AsyncClient(timeout=30) as http:
                async def answered_by(n: int) -> set[int]:
                    return {(await http.get(url + "/")).json()["pid"] for _ in range(n)}

                await until(lambda: len(runtime._route_table.backends[0].upstreams) == 2 if runtime._route_table
                            else False, lambda: "not routed")
                assert len(await answered_by(6)) == 2

                await w.scale_to(3, "load: 27 in flight, target 10 per replica")
                await until(lambda: len(w.active.ready()) == 3 if w.active else False, lambda: w.message)
                await until(lambda: len(runtime._route_table.backends[0].upstreams) == 3 if runtime._route_table
                            else False, lambda: "not routed")
                three = pids(w)
                assert len(three) == 3 and len(await answered_by(9)) == 3

                slow = [asyncio.create_task(http.get(url + "/slow?s=2")) for _ in range(3)]  # one per replica
                await asyncio.sleep(0.5)
                await w.scale_to(1, "load: 3 in flight, target 10 per replica")
                assert [r.status_code for r in await asyncio.gather(*slow)] == [200] * 3, "drained, not cut"
                (left,) = pids(w)
                await until(lambda: not any(psutil.pid_exists(p) for p in three - {left}),
                            lambda: "the removed replicas still run")
                assert len(await answered_by(3)) == 1 and len(runtime.supervisor.replicas) == 1

                await w.scale_to(0, "idle for 300 s")
                await until(lambda: not psutil.pid_exists(left), lambda: "the last replica still runs")
                assert (w.state, w.message) == ("scaled-to-zero", "idle for 300 s")
                report = (await runtime.status()).deployments[0]
                assert report.state == "scaled-to-zero" and report.replicas == []
                assert report.scaling is not None and (report.scaling.current, report.scaling.desired) == (0, 0)

                for _ in range(20):
                    w.wake()
                await until(lambda: w.state == "ready", lambda: f"not woken: {w.state} {w.message}")
                assert len(runtime.supervisor.replicas) == 1, "twenty wakes start one replica"
                assert len(await answered_by(3)) == 1
                (point,) = runtime.scaling_points("2026-12-07T20:00:00+00:00", 0.5)
                assert (point.kind, point.component, point.replicas, point.desiredReplicas) == ("scaling", "api", 1, 1)

            def system() -> list[str]:
                return [x["line"] for x in logs(c, "scaled", "api") if x["stream"] == "system"]

            lines = await asyncio.to_thread(poll, system, lambda s: any(x.startswith(
                "woken by a request: replica ready in ") for x in s))
            assert "scaled to 3 replicas: load: 27 in flight, target 10 per replica" in lines
            assert "scaled to zero: idle for 300 s" in lines

    uvloop.run(body())
