"""Scale to zero and autoscaling end to end on the local data plane: a real agent in this process (its scaler ticking
on the gateway's demand, its gateway's activator holding and waking), real processes of the echo app, real HTTP
through the gateway. The agent adds ``scaling`` to the deployments the control plane sends (``ScalingAgent``);
periods are short (idle 1 s, scale-down delay 1 s, a 2 s stable window)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from buildkit import BuildServer
from cellplane.dataplane.workload import Workload
from dataplanekit import CountingRuntime, build_app, deploy, deployment, logs, poll, scaling_agent, service

TO_ZERO = {"minReplicas": 0, "maxReplicas": 1, "targetConcurrency": 10, "idleSeconds": 1, "scaleDownDelaySeconds": 1}


async def until(what: Callable[[], bool], message: Callable[[], str], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not what():
        assert asyncio.get_running_loop().time() < deadline, message()
        await asyncio.sleep(0.02)


async def deployed(build_server: BuildServer, runtime: CountingRuntime, project: str) -> tuple[Workload, str]:
    """Deploy ``project/api`` and wait until its workload is ready; returns it and its external URL."""
    await asyncio.to_thread(deploy, build_server.client, project, "api")
    await until(lambda: any(w.desired.project == project and w.state == "ready" for w in runtime.workloads.values()),
                lambda: f"{project}/api is not ready: {[(w.state, w.message) for w in runtime.workloads.values()]}",
                timeout=120)
    w = next(w for w in runtime.workloads.values() if w.desired.project == project)
    external = runtime.network.report()["development"].external
    assert external is not None
    return w, f"{external}/{project}/api/v1"


async def rolled_out(w: Workload, release: str) -> None:
    await until(lambda: w.state == "ready" and w.active is not None and w.active.release == release,
                lambda: f"release {release} not rolled out: {w.state} {w.message}", timeout=120)


async def at_zero(w: Workload) -> None:
    await until(lambda: w.state == "scaled-to-zero" and not (w.active and w.active.replicas),
                lambda: f"not at zero: {w.state} {w.message}", timeout=30)


@pytest.mark.parametrize("workers", [0, 2])
def test_fifty_concurrent_first_requests_at_zero_all_succeed_and_start_exactly_one_process(
        build_server: BuildServer, tmp_path: Path, workers: int) -> None:
    project = f"cold{workers}"
    build_app(build_server.client, project, "api", service())

    async def body() -> None:
        async with scaling_agent(build_server.server, build_server.cache, tmp_path / "dp", {"api": TO_ZERO},
                                 gateway_workers=workers) as (_, runtime):
            w, url = await deployed(build_server, runtime, project)
            await at_zero(w)
            started = runtime.started
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(timeout=30, limits=limits) as http:
                answers = await asyncio.gather(*(http.get(url + "/") for _ in range(50)))
            assert [r.status_code for r in answers] == [200] * 50, [r.text for r in answers if r.status_code != 200]
            assert runtime.started - started == 1, "one wake-up for fifty held requests"
            assert len({r.json()["pid"] for r in answers}) == 1
            cold = [r for r in answers if "x-cellplane-cold-start" in r.headers]
            assert cold, "the held requests say they were served from a cold start"

    uvloop.run(body())


def test_an_idle_component_goes_to_zero_and_the_next_request_wakes_it(build_server: BuildServer,
                                                                     tmp_path: Path) -> None:
    c = build_server.client
    build_app(c, "idle", "api", service())

    async def body() -> None:
        async with scaling_agent(build_server.server, build_server.cache, tmp_path / "dp", {"api": TO_ZERO},
                                 metrics_interval=0.5) as (_, runtime):
            w, url = await deployed(build_server, runtime, "idle")
            async with httpx.AsyncClient(timeout=30) as http:
                assert (await http.get(url + "/")).status_code == 200
                await at_zero(w)
                report = (await runtime.status()).deployments[0]
                assert report.state == "scaled-to-zero" and report.scaling is not None
                assert (report.scaling.current, report.scaling.reason) == (0, "idle for 1 s")
                started = runtime.started
                external = runtime.network.report()["development"].external
                health = await http.get(f"{external}/_cellplane/health")
                assert health.status_code == 200 and runtime.started == started, "the gateway's health wakes nothing"

                r = await http.get(url + "/")
                assert r.status_code == 200 and "x-cellplane-cold-start" in r.headers
                assert runtime.started == started + 1 and w.state == "ready"
                r = await http.get(url + "/")
                assert r.status_code == 200 and "x-cellplane-cold-start" not in r.headers

            def system() -> list[str]:
                return [x["line"] for x in logs(c, "idle", "api") if x["stream"] == "system"]

            lines = await asyncio.to_thread(poll, system, lambda s: any(
                x.startswith("woken by a request: replica ready in ") for x in s))
            assert "scaled to zero: idle for 1 s" in lines

            def scaling() -> dict[str, Any] | None:
                r = c.get("/organizations/default/projects/idle/components/api/metrics",
                          params={"environment": "development", "since": "1h"})
                assert r.status_code == 200, r.text
                return r.json().get("scaling")

            seen = await asyncio.to_thread(poll, scaling, lambda s: bool(s and s["coldStarts"] >= 1))
            assert 0 < seen["coldStartMeanSeconds"] < 30, seen  # the wake-up's time, from the gateway's demand

    uvloop.run(body())


@pytest.mark.parametrize("workers", [0, 2])
def test_under_load_it_grows_to_max_replicas_and_shrinks_back_after_without_a_failed_request(
        build_server: BuildServer, tmp_path: Path, workers: int) -> None:
    project = f"load{workers}"
    build_app(build_server.client, project, "api", service())
    scaling = {"minReplicas": 1, "maxReplicas": 3, "targetConcurrency": 2, "idleSeconds": 300,
               "scaleDownDelaySeconds": 1}

    async def body() -> None:
        async with scaling_agent(build_server.server, build_server.cache, tmp_path / "dp",
                                 {"api": scaling}, gateway_workers=workers) as (_, runtime):
            w, url = await deployed(build_server, runtime, project)
            failures: list[str] = []
            counts: list[int] = []
            stop_load, stop_all = asyncio.Event(), asyncio.Event()

            async def client(until_set: asyncio.Event) -> None:
                async with httpx.AsyncClient(timeout=30) as http:
                    while not until_set.is_set():
                        try:
                            r = await http.get(url + "/slow?s=0.2")
                            counts.append(1)
                            if r.status_code != 200:
                                failures.append(f"{r.status_code} {r.text[:200]}")
                        except httpx.HTTPError as e:
                            failures.append(f"{type(e).__name__}: {e}")

            load = [asyncio.create_task(client(stop_load)) for _ in range(8)]  # 8 in flight: 4 wanted, 3 allowed
            steady = asyncio.create_task(client(stop_all))  # one caller all along, through the shrink
            try:
                await until(lambda: w.current() == 3 and len(w.active.ready() if w.active else []) == 3,
                            lambda: f"not at 3: {w.current()} ({w.scaling_reason})", timeout=30)
                assert w.scaling_reason.endswith("maxReplicas 3"), w.scaling_reason
                stop_load.set()
                await asyncio.gather(*load)
                shrinking = time.monotonic()
                await until(lambda: w.current() == 1, lambda: f"not back to 1: {w.current()} ({w.scaling_reason})",
                            timeout=30)
                assert time.monotonic() - shrinking >= 1.0, "replicas stay for the scale-down delay"
                await asyncio.sleep(1.0)
            finally:
                stop_load.set()
                stop_all.set()
                await asyncio.gather(*load, steady)
            assert len(counts) > 20 and not failures, f"{len(failures)} of {len(counts)} failed: {failures[:5]}"

    uvloop.run(body())


def test_a_replica_that_crashes_while_waking_fails_the_held_requests_at_once_with_the_reason(
        build_server: BuildServer, tmp_path: Path) -> None:
    build_app(build_server.client, "crashy", "api", service())

    async def body() -> None:
        async with scaling_agent(build_server.server, build_server.cache, tmp_path / "dp",
                                 {"api": TO_ZERO}) as (_, runtime):
            w, url = await deployed(build_server, runtime, "crashy")
            await at_zero(w)
            assert w.active is not None
            (app,) = w.active.tree.rglob("app.py")  # from now on the app fails as it starts (a missing setting, say)
            app.chmod(0o644)
            app.write_text("import sys\nprint('DATABASE_URL is not set', file=sys.stderr)\nsys.exit(3)\n")
            async with httpx.AsyncClient(timeout=30) as http:
                started = time.monotonic()
                answers = await asyncio.gather(*(http.get(url + "/") for _ in range(5)))
                assert time.monotonic() - started < 10, "failed at once, not at the hold timeout"
            for r in answers:
                assert r.status_code == 503, r.text
                error = r.json()["error"]
                assert error["code"] == "wake-failed" and "exited with 3" in error["message"], error
                assert "DATABASE_URL is not set" in error["message"], error

    uvloop.run(body())


def test_no_request_fails_during_repeated_rollouts_of_an_autoscaled_component(build_server: BuildServer,
                                                                             tmp_path: Path) -> None:
    c = build_server.client
    build_app(c, "rollscale", "api", service())
    scaling = {"minReplicas": 0, "maxReplicas": 3, "targetConcurrency": 1, "idleSeconds": 2,
               "scaleDownDelaySeconds": 1}

    async def body() -> None:
        async with scaling_agent(build_server.server, build_server.cache, tmp_path / "dp",
                                 {"api": scaling}) as (_, runtime):
            w, url = await deployed(build_server, runtime, "rollscale")
            failures: list[str] = []
            seen: set[str] = set()
            count = 0
            stop = asyncio.Event()

            async def client() -> None:
                nonlocal count
                async with httpx.AsyncClient(timeout=30) as http:  # keep-alive, like a real client
                    while not stop.is_set():
                        try:
                            r = await http.get(url + "/")
                            if r.status_code != 200:
                                failures.append(f"{r.status_code} {r.text[:200]}")
                            else:
                                seen.add(r.json()["greeting"] or "")
                        except httpx.HTTPError as e:
                            failures.append(f"{type(e).__name__}: {e}")
                        count += 1

            clients = [asyncio.create_task(client()) for _ in range(4)]
            try:
                for n in range(1, 4):
                    r = await asyncio.to_thread(
                        c.put, "/organizations/default/projects/rollscale/components/api/config/GREETING",
                        json={"value": f"v{n}"}, params={"env": "development"})
                    assert r.status_code in (200, 201), r.text
                    await rolled_out(w, (await asyncio.to_thread(deployment, c, "rollscale", "api"))["release"])
                    await asyncio.sleep(0.3)
            finally:
                stop.set()
                await asyncio.gather(*clients)
            assert count > 100
            assert not failures, f"{len(failures)} of {count} requests failed: {failures[:5]}"
            assert "v3" in seen

    uvloop.run(body())
