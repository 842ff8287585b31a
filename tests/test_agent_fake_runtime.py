"""The agent's loop with a fake runtime: a real control plane over HTTP on 127.0.0.1, the real loop in this process
(register, long-poll, the cache on disk, status reports, the outboxes), and a ``Runtime`` that runs nothing. It
records the desired states the loop hands it and reports a status of its own making; the control plane must show
that status. What the local runtime does with a desired state is tested elsewhere (test_agent_reconcile.py,
test_rollout.py, ...); here only the seam between the loop and any runtime is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

from buildkit import BuildServer
from cellplane.contract import (
    DeploymentReport,
    DesiredDeployment,
    DesiredState,
    GatewayReport,
    LogLineSent,
    ReplicaReport,
)
from cellplane.dataplane.agent import Agent, AgentSettings
from cellplane.dataplane.runtimes.base import RuntimeHost, RuntimeStatus
from dataplanekit import ORG, build_app, deploy, deployment, service

COMPONENT = f"{ORG}/projects/fake/components/api"


class FakeRuntime:
    """Runs nothing: says every deployment it is given is ready on one replica, under listeners it makes up."""

    def __init__(self) -> None:
        self.cached: DesiredState | None = None
        self.applied: list[DesiredState] = []  # every desired state the loop handed over, in order
        self.calls: list[str] = []
        self.host: RuntimeHost | None = None

    async def start(self, host: RuntimeHost, cached: DesiredState | None) -> None:
        self.host, self.cached = host, cached
        self.calls.append("start")

    async def apply(self, desired: DesiredState) -> None:
        assert self.host is not None
        assert isinstance(desired, DesiredState)  # parsed once by the loop, never the JSON
        if not self.applied or self.applied[-1].revision != desired.revision:
            for d in desired.deployments:
                self.host.log(LogLineSent(deployment=d.id, run=None, environment=d.environment,
                                          project=d.project, component=d.component, replica=None,
                                          stream="system", at="2026-12-07T10:00:00+00:00",
                                          line=f"fake runtime: release {d.release} applied"))
        self.applied.append(desired)
        self.host.changed()

    async def status(self) -> RuntimeStatus:
        deployments = self.applied[-1].deployments if self.applied else []
        return RuntimeStatus(
            gateways={"development": GatewayReport(external="http://127.0.0.1:9", internal="http://127.0.0.1:10")},
            deployments=[DeploymentReport(id=d.id, release=d.release, state="ready", message="faked", replicas=[
                ReplicaReport(index=0, state="ready", pid=4242, port=9, restarts=0, message="fake")])
                for d in deployments])

    async def stop(self) -> None:
        self.calls.append("stop")

    async def close(self) -> None:
        self.calls.append("close")

    def describe(self) -> str:
        return "fake: nothing runs"


async def _until(what: Callable[[], bool], message: Callable[[], str], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not what():
        assert asyncio.get_running_loop().time() < deadline, message()
        await asyncio.sleep(0.05)


def test_the_loop_hands_each_desired_state_to_its_runtime_and_the_control_plane_shows_the_runtime_status(
        build_server: BuildServer, tmp_path: Path) -> None:
    c = build_server.client
    build_app(c, "fake", "api", service(), app="static-site")
    settings = AgentSettings(controlplane=build_server.server.url, token=build_server.server.admin_token,
                             data_dir=tmp_path / "dp", metrics_port=None)

    def view() -> dict[str, Any]:
        return deployment(c, "fake", "api")

    async def body() -> None:
        runtime = FakeRuntime()
        agent = Agent(settings, runtime)
        await agent.start()
        try:
            assert runtime.calls == ["start"] and runtime.cached is None  # nothing on disk yet
            first = await asyncio.to_thread(deploy, c, "fake", "api")

            def mine() -> list[DesiredDeployment]:
                return [d for s in runtime.applied for d in s.deployments
                        if d.id == first["id"] and d.release == first["rollout"]]

            await _until(lambda: bool(mine()), lambda: f"the runtime was given {runtime.applied}")
            (d,) = mine()[:1]
            assert (d.environment, d.project, d.component) == ("development", "fake", "api")
            assert d.artifact.digest.startswith("sha256:")

            shown = await _poll(view, lambda v: v["observedRelease"] == first["rollout"] and v["state"] == "ready")
            assert shown["message"] == "faked" and shown["replicas"][0]["pid"] == 4242
            dp = (await asyncio.to_thread(c.get, f"{ORG}/dataplanes/local")).json()
            assert dp["status"]["gateways"]["development"]["external"] == "http://127.0.0.1:9"
            lines = await _poll(lambda: c.get(f"{COMPONENT}/logs", params={"environment": "development"}).json(),
                                lambda page: bool(page["items"]))
            assert [x["line"] for x in lines["items"]] == [f"fake runtime: release {first['rollout']} applied"]
            # the desired state is kept on disk for a start without the control plane
            assert agent.state.desired() == runtime.applied[-1]

            # an undeploy is a new desired state without the deployment; the runtime's report follows
            revision = runtime.applied[-1].revision
            assert (await asyncio.to_thread(c.delete, f"{COMPONENT}/deployments/development")).status_code == 200
            await _until(lambda: runtime.applied[-1].revision != revision,
                         lambda: "no new desired state after the undeploy")
            assert all(d.id != first["id"] for d in runtime.applied[-1].deployments)
        finally:
            await agent.stop()
        assert runtime.calls == ["start", "stop", "close"]

    uvloop.run(body())

    async def again() -> None:  # a second start hands the runtime the cached desired state first
        runtime = FakeRuntime()
        agent = Agent(settings, runtime)
        await agent.start()
        try:
            assert runtime.cached is not None and runtime.cached.deployments == []
            assert runtime.applied and runtime.applied[0].deployments == []
        finally:
            await agent.stop()

    uvloop.run(again())


async def _poll(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await asyncio.to_thread(fetch)
        if done(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"still {value}"
        await asyncio.sleep(0.1)
