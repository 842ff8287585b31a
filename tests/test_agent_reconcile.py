"""The agent's reconcile pass, driven by hand on a real agent in this process against a real control plane.

The sync loop (a new desired state) and the reconcile loop (a retry, a resync) may both reconcile at once; a
redeploy that follows an undeploy makes a new workload of the same component while the old one still stops in
the background. Together they once made two workloads for one deployment, the second failing for good on
"replica … is already supervised".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import uvloop

from buildkit import BuildServer
from cellplane.contract import DesiredState
from cellplane.dataplane.agent import Agent, AgentSettings
from cellplane.dataplane.runtimes.local import LocalRuntime
from dataplanekit import build_app, deploy, service

COMPONENT = "/organizations/default/projects/race/components/api"


async def _until(what: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not what():
        assert asyncio.get_running_loop().time() < deadline, message
        await asyncio.sleep(0.05)


def test_a_redeploy_after_an_undeploy_starts_once_when_two_reconciles_race(build_server: BuildServer,
                                                                           tmp_path: Path) -> None:
    c = build_server.client
    build_app(c, "race", "api", service(replicas=2))

    async def body() -> None:
        settings = AgentSettings(controlplane=build_server.server.url, token=build_server.server.admin_token,
                                 data_dir=tmp_path / "dp", cache_dir=build_server.cache, metrics_port=None)
        runtime = LocalRuntime(settings)
        agent = Agent(settings, runtime)
        await agent.start()
        try:
            first = await asyncio.to_thread(deploy, c, "race", "api")  # once the agent registered
            await _until(lambda: [w.state for w in runtime.workloads.values()] == ["ready"], 120,
                         "the first deployment did not get ready")
            (old,) = runtime.workloads.values()
            (sync,) = [t for t in agent._tasks if t.get_name() == "sync"]
            sync.cancel()  # the sync loop: from here on this test hands the agent its desired state

            assert (await asyncio.to_thread(c.delete, f"{COMPONENT}/deployments/development")).status_code == 200
            second = await asyncio.to_thread(deploy, c, "race", "api")
            assert second["id"] != first["id"] and second["rollout"] == first["rollout"]  # same release, same keys
            desired = DesiredState.from_wire(await agent.cp.desired(None, 0))
            await asyncio.gather(agent.apply(desired), agent.reconcile())

            assert list(runtime.workloads) == [second["id"]]
            (new,) = runtime.workloads.values()
            await _until(lambda: new.state == "ready", 60, f"the redeploy is {new.state}: {new.message}")
            assert old.active is None
            keys = sorted(runtime.supervisor.replicas)
            assert keys == [f"development/race/api/{second['rollout']}/{i}" for i in (0, 1)]
            assert new.active is not None and [r.spec.key for r in new.active.replicas] == keys
        finally:
            await agent.stop()

    uvloop.run(body())
