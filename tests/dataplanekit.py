"""Helpers for data-plane tests: a real agent process next to a real control plane, deploys over HTTP.

The agent shares the build tests' dependency cache, so a Python app's runtime is installed once per run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, BuildServer, component, failed_why, upload, wait
from cellplane.contract import DesiredDeployment, DesiredState
from cellplane.dataplane.agent import Agent, AgentSettings
from cellplane.dataplane.runtimes.local import LocalRuntime
from cellplane.dataplane.supervisor import Replica
from liveserver import CELLPLANE, LiveServer

ORG = "/organizations/default"


@dataclass
class AgentProcess:
    process: subprocess.Popen[str]
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.data_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def gateway(self, env: str = "development") -> dict[str, Any]:
        return (self.status().get("gateways") or {}).get(env) or {}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def start_agent(server: LiveServer, data_dir: Path, cache: Path, *extra: str) -> AgentProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env.update({"CELLPLANE_TOKEN": server.admin_token, "CELLPLANE_CONFIG": os.devnull + ".none"})
    process = subprocess.Popen(
        [str(CELLPLANE), "dataplane", "run", "--controlplane", server.url, "--data-dir", str(data_dir),
         "--cache-dir", str(cache), *extra],
        stdout=log_path.open("a"), stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True)
    agent = AgentProcess(process, data_dir, log_path)
    deadline = time.monotonic() + 60
    while not agent.gateway():
        if process.poll() is not None:
            raise RuntimeError(f"the agent exited with {process.returncode}:\n{agent.log()}")
        if time.monotonic() > deadline:
            agent.stop()
            raise RuntimeError(f"the agent did not report within 60 s:\n{agent.log()}")
        time.sleep(0.1)
    return agent


@pytest.fixture(scope="module")
def dataplane(build_server: BuildServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent per test module, bound to every environment of the default organization."""
    agent = start_agent(build_server.server, tmp_path_factory.mktemp("dp") / "data", build_server.cache)
    try:
        yield agent
    finally:
        agent.stop()


def build_app(c: httpx.Client, project: str, name: str, spec: dict[str, Any], app: str = "echo") -> dict[str, Any]:
    """Apply a component and build it from a fixture app; returns the succeeded build."""
    component(c, project, name, spec)
    info = wait(c, upload(c, project, name, APPS / app))
    assert info["state"] == "succeeded", failed_why(c, info)
    return info


def deploy(c: httpx.Client, project: str, name: str, env: str = "development", **body: Any) -> dict[str, Any]:
    r = c.post(f"{ORG}/projects/{project}/components/{name}/deployments", json={"environment": env, **body})
    assert r.status_code in (200, 201), r.text
    return r.json()


def deployment(c: httpx.Client, project: str, name: str, env: str = "development",
               track: str | None = None) -> dict[str, Any]:
    r = c.get(f"{ORG}/projects/{project}/components/{name}/deployments/{env}",
              params={"track": track} if track else None)
    assert r.status_code == 200, r.text
    return r.json()


def wait_state(c: httpx.Client, project: str, name: str, states: tuple[str, ...] = ("ready",),
               env: str = "development", timeout: float = 120, release: str | None = None,
               track: str | None = None) -> dict[str, Any]:
    """Wait until the data plane reports the deployment's current release in one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        d = deployment(c, project, name, env, track)
        current = d["observedRelease"] == (release or d["rollout"])
        if current and d["state"] in states:
            return d
        if d["state"] == "blocked" and "blocked" in states:
            return d
        assert time.monotonic() < deadline, f"{project}/{name} in {env}: {d['state']} ({d['message']}) " \
                                            f"after {timeout}s"
        time.sleep(0.2)


def logs(c: httpx.Client, project: str, name: str, env: str = "development", **params: Any) -> list[dict[str, Any]]:
    r = c.get(f"{ORG}/projects/{project}/components/{name}/logs", params={"environment": env, **params})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def service(port: int = 8080, visibility: list[str] | None = None, name: str = "api",
            **spec: Any) -> dict[str, Any]:
    return {"type": "service", "endpoints": [{"name": name, "port": port, "visibility": visibility or ["Public"]}],
            **spec}


def poll(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30.0, every: float = 0.2) -> Any:
    """``fetch()`` again every ``every`` seconds until ``done`` says yes of its value (returned); fails after
    ``timeout`` with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still not there after {timeout}s: {value}"
        time.sleep(every)


# -- an agent in the test's process, with scaling ------------------------------------------------------------------


class ScalingAgent(Agent):
    """A real agent that adds ``scaling`` to the deployments the control plane sends, by component name (what the
    control plane sends for a component whose spec has ``scaling``): scaling tests need no model change, and the
    sync loop keeps delivering new releases as usual."""

    def __init__(self, settings: AgentSettings, runtime: LocalRuntime, scaling: dict[str, dict[str, Any]]) -> None:
        super().__init__(settings, runtime)
        self.scaling = scaling

    def _parse(self, wire: dict[str, Any]) -> DesiredState:  # type: ignore[override]
        for d in wire.get("deployments", []):
            if d.get("component") in self.scaling:
                d["scaling"] = self.scaling[d["component"]]
        return Agent._parse(wire)


class CountingRuntime(LocalRuntime):
    """The local runtime, counting the service replicas it starts."""

    started = 0

    async def start_replica(self, d: DesiredDeployment, tree: Path, index: int) -> Replica:
        self.started += 1
        return await super().start_replica(d, tree, index)


@contextlib.asynccontextmanager
async def scaling_agent(server: LiveServer, cache: Path, data: Path, scaling: dict[str, dict[str, Any]],
                        **settings: Any) -> AsyncIterator[tuple[ScalingAgent, CountingRuntime]]:
    """A ``ScalingAgent`` on ``data`` in this process (the caller's event loop), bound to every environment; the
    scaler's stable window is 2 s unless ``settings`` say otherwise (its panic window a tenth)."""
    options = AgentSettings(controlplane=server.url, token=server.admin_token, data_dir=data, cache_dir=cache,
                            metrics_port=None, **{"scaling_window": 2.0, **settings})
    runtime = CountingRuntime(options)
    agent = ScalingAgent(options, runtime, scaling)
    await agent.start()
    try:
        yield agent, runtime
    finally:
        await agent.stop()
