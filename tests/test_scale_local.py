"""Scaling a workload with real processes: a real agent in this process against a real control plane, the echo app,
requests through the real gateway; the test moves the workload with ``scale_to`` as the scaler does (with bounds that
keep the scaler from moving it back). The scaler and the activator on their own: test_scale_activator.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import uvloop

from buildkit import BuildServer
from cellplane.dataplane.runtimes.local import LocalRuntime
from cellplane.dataplane.workload import Workload
from dataplanekit import build_app, deploy, logs, poll, scaling_agent, service


async def until(what: Callable[[], bool], message: Callable[[], str], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not what():
        assert asyncio.get_running_loop().time() < deadline, message()
        await asyncio.sleep(0.05)


def url_of(runtime: LocalRuntime, project: str) -> str:
    external = runtime.network.report()["development"].external
    assert external is not None
    return external + f"/{project}/api/v1"


def pids(w: Workload) -> set[int]:
    return {r.pid for r in (w.active.replicas if w.active else []) if r.pid is not None}


def test_scaling_up_routes_each_new_process_and_scaling_down_drains_the_requests_of_the_replicas_removed(
        build_server: BuildServer, tmp_path: Path) -> None:
    c = build_server.client
    build_app(c, "scaled", "api", service())
    # the scaler keeps what scale_to sets: no scaling down before its (long) stable window, never to zero
    scaling = {"minReplicas": 1, "maxReplicas": 3, "targetConcurrency": 10, "idleSeconds": 600,
               "scaleDownDelaySeconds": 600}

    async def body() -> None:
        async with scaling_agent(build_server.server, build_server.cache, tmp_path / "dp", {"api": scaling},
                                 scaling_window=600, metrics_interval=0.5) as (_, runtime):
            await asyncio.to_thread(deploy, c, "scaled", "api")
            await until(lambda: [w.state for w in runtime.workloads.values()] == ["ready"], lambda: "not ready",
                        timeout=120)
            (w,) = runtime.workloads.values()
            url = url_of(runtime, "scaled")
            assert w.current() == 1
            async with httpx.AsyncClient(timeout=30) as http:
                async def answered_by(n: int) -> set[int]:
                    return {(await http.get(url + "/")).json()["pid"] for _ in range(n)}

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
                report = (await runtime.status()).deployments[0]
                assert report.scaling is not None and (report.scaling.current, report.scaling.desired) == (1, 1)
                (point,) = runtime.scaling_points("2026-12-07T20:00:00+00:00", 0.5)
                assert (point.kind, point.component, point.replicas, point.desiredReplicas) == ("scaling", "api", 1, 1)

            def system() -> list[str]:
                return [x["line"] for x in logs(c, "scaled", "api") if x["stream"] == "system"]

            lines = await asyncio.to_thread(poll, system, lambda s: any(x.startswith("scaled to 1 replica") for x in s))
            assert "scaled to 3 replicas: load: 27 in flight, target 10 per replica" in lines

    uvloop.run(body())
