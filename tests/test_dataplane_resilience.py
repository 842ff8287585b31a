"""The data plane keeps serving without its control plane: traffic flows, crashed workloads restart, and
the agent itself restarts from its cached state. When the control plane returns, the agent catches up."""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil
import pytest

from buildkit import BuildServer
from dataplanekit import build_app, deploy, logs, service, start_agent, wait_state
from liveserver import start_server


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def _wait_ok(url: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = _get(url)
            if r.status_code == 200:
                return r
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {timeout}s"
        time.sleep(0.2)


def test_serving_without_the_control_plane(build_server: BuildServer, tmp_path_factory: pytest.TempPathFactory,
                                           ) -> None:
    server = build_server.server
    c = build_server.client
    agent = start_agent(server, tmp_path_factory.mktemp("dp-resilience") / "data", build_server.cache)
    try:
        build_app(c, "res", "api", service())
        deploy(c, "res", "api")
        d = wait_state(c, "res", "api")
        url = d["endpoints"][0]["urls"]["external"] + "/"
        first = _get(url).json()
        assert first["component"] == "api"

        # the control plane dies: traffic still flows
        server.process.kill()
        server.process.wait()
        for _ in range(20):
            assert _get(url).status_code == 200

        # a killed workload is restarted by the agent, without the control plane
        os.kill(first["pid"], signal.SIGKILL)
        restarted = _wait_ok(url).json()
        assert restarted["pid"] != first["pid"]
        assert agent.status()["connected"] is False

        # the agent restarts from its cached desired state and artifacts
        assert agent.stop() == 0
        assert not _running(restarted["pid"])
        agent = start_agent(server, agent.data_dir, build_server.cache)
        again = _wait_ok(url).json()
        assert again["pid"] != restarted["pid"]
        assert agent.status()["connected"] is False

        # the control plane returns on the same data directory: the agent reconnects and ships what it held
        back = start_server(server.data_dir, env={"CELLPLANE_CACHE_DIR": str(build_server.cache)},
                            port=int(server.url.rsplit(":", 1)[1]))
        build_server.server = back
        c = back.client()
        deadline = time.monotonic() + 60
        while True:
            # three starts: the first, the restart after the kill, the agent's restart (spooled while away)
            starts = [x["line"] for x in logs(c, "res", "api") if "echo listening" in x["line"]]
            d = c.get("/organizations/default/projects/res/components/api/deployments/development").json()
            serving = psutil.Process(again["pid"]).ppid()  # the replica's process group leader (its start command)
            if len(starts) >= 3 and d["state"] == "ready" and d["replicas"][0]["pid"] in (again["pid"], serving):
                break
            assert time.monotonic() < deadline, (starts, d)
            time.sleep(0.5)
    finally:
        agent.stop()
