"""The agent's side of the contract: the desired state is parsed once, at the loop's boundary, and a runtime is
handed ``cellplane.contract.DesiredState`` models, never the JSON.

No control plane answers here (a free port): the loop starts from ``desired.json`` as it does after a restart
without one. The file is the golden of tests/test_contract.py, the JSON a control plane served before the models
existed (with the ``artifact.path`` key they dropped), so a cache written by an older agent must still load. What
the served desired state looks like on a live control plane, and that a runtime gets it as models, is proved by
tests/test_contract.py and tests/test_agent_fake_runtime.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import uvloop

from cellplane.contract import DesiredDeployment, DesiredState
from cellplane.dataplane.agent import Agent, AgentSettings
from cellplane.dataplane.localstate import LocalState, write_json
from cellplane.dataplane.runtimes.local import LocalRuntime
from cellplane.errors import CellplaneError
from desiredkit import RecordingRuntime
from liveserver import free_port

GOLDEN = Path(__file__).parent / "fixtures" / "contract" / "desired-state.json"


def settings(data: Path) -> AgentSettings:
    return AgentSettings(controlplane=f"http://127.0.0.1:{free_port()}", token="nobody", data_dir=data,
                         metrics_port=None)


def test_a_desired_json_an_older_agent_kept_is_handed_to_the_runtime_as_the_contracts_model_at_start(
        tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    write_json(tmp_path / "desired.json", golden)  # as the agent wrote it before the contract existed
    runtime = RecordingRuntime()

    async def body() -> None:
        agent = Agent(settings(tmp_path), runtime)
        await agent.start()
        await agent.stop()

    uvloop.run(body())
    expected = DesiredState.from_wire(golden)
    assert isinstance(runtime.cached, DesiredState) and runtime.cached == expected
    assert runtime.applied and all(isinstance(s, DesiredState) and s == expected for s in runtime.applied)
    assert json.loads((tmp_path / "desired.json").read_text()) == golden  # kept as it was, never rewritten


@pytest.mark.parametrize("content", ["{not json", json.dumps({"revision": "rev1", "deployments": [{}]})],
                         ids=["unreadable", "not-a-desired-state"])
def test_a_cached_desired_json_that_does_not_parse_counts_as_none_and_is_said_in_the_log(
        tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "desired.json").write_text(content)
    caplog.set_level(logging.WARNING, "cellplane.dataplane")
    assert LocalState(tmp_path).desired() is None
    runtime = RecordingRuntime()

    async def body() -> None:
        agent = Agent(settings(tmp_path), runtime)
        try:
            with pytest.raises(CellplaneError, match="there is no cached desired state"):
                await agent.start()
        finally:
            await agent.stop()

    uvloop.run(body())
    assert runtime.cached is None and runtime.applied == []
    if content.startswith("{\"revision\""):
        assert any("is not one this agent can read" in r.getMessage() for r in caplog.records), caplog.text


def test_the_local_runtime_serves_reports_and_schedules_what_a_cached_desired_state_says(tmp_path: Path) -> None:
    """The golden's deployments (their artifacts are not on this machine, and nothing answers to fetch them) become
    workloads holding their ``DesiredDeployment``; the listeners of its environments and cells open; the scheduled
    task is scheduled, the manual one idle, and its pending run is started (and fails: no artifact). The status
    report (``status.json`` holds what is sent) has the keys, in the order, the agent sent before the models."""
    golden = json.loads(GOLDEN.read_text())
    write_json(tmp_path / "desired.json", golden)
    runtime = LocalRuntime(settings(tmp_path))
    seen: dict[str, Any] = {}

    async def body() -> None:
        agent = Agent(settings(tmp_path), runtime)
        await agent.start()
        try:
            seen["status"] = await runtime.status()
            seen["desired"] = {key: w.desired for key, w in runtime.workloads.items()}
            deadline = asyncio.get_running_loop().time() + 30
            while not (tmp_path / "status.json").exists():  # the status loop reports the applied state
                assert asyncio.get_running_loop().time() < deadline, "no status report"
                await asyncio.sleep(0.05)
        finally:
            await agent.stop()

    uvloop.run(body())
    state = DesiredState.from_wire(golden)
    assert seen["desired"] == {d.id: d for d in state.deployments}
    assert all(isinstance(d, DesiredDeployment) for d in seen["desired"].values())
    gateways = seen["status"].gateways
    assert set(gateways) == {e.name for e in state.environments}
    for env, gateway in gateways.items():
        assert set(gateway.cells) == {d.project for d in state.deployments if d.environment == env}
        assert gateway.external.startswith("http://127.0.0.1:")
    states = {r.id: r.state for r in seen["status"].deployments}
    by_type = {d.type: d.id for d in state.deployments}
    assert (states[by_type["scheduled-task"]], states[by_type["manual-task"]]) == ("scheduled", "idle")
    report = json.loads((tmp_path / "status.json").read_text())
    assert list(report) == ["agentId", "revision", "gateways", "deployments", "at", "connected"]
    assert report["revision"] == golden["revision"]
    assert all(list(g) == ["external", "internal", "cells"] for g in report["gateways"].values())
    assert {d["id"] for d in report["deployments"]} == {d.id for d in state.deployments}
    scaled = {d.id for d in state.deployments if d.scaling is not None}  # an autoscaled one reports its scaling too
    assert all(list(d) == ["id", "release", "state", "message", "replicas"] + (["scaling"] if d["id"] in scaled else [])
               for d in report["deployments"])
    started = json.loads((tmp_path / "started-runs.json").read_text())
    assert started == [run.id for run in state.runs]  # the manual run was started (never to run twice)
