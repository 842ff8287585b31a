"""The task runs a crashed agent was running, found again by their typed identity in the crash ledger.

A real agent (the loop and the local runtime) starts in this process on a data directory that a crashed
predecessor left: a ledger record of a task run, and the desired state it ran from. No control plane answers, so
the agent runs from the cached desired state, and the run's "failed" report waits in the task-runs spool, where
this test reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import uvloop

from cellplane.dataplane.agent import Agent, AgentSettings
from cellplane.dataplane.leftovers import Ledger
from cellplane.dataplane.localstate import LocalState
from cellplane.dataplane.replicaid import ReplicaId
from cellplane.dataplane.runtimes.local import LocalRuntime
from desiredkit import deployment_wire, state_wire
from liveserver import free_port

RUN = "run_" + "a" * 16
SCHEDULED = "run_" + "b" * 16


def test_the_runs_a_crashed_agent_left_are_reported_failed_from_their_identity_in_the_ledger(tmp_path: Path) -> None:
    data = tmp_path / "dp"
    job = deployment_wire(component="job", type="manual-task")
    state = LocalState(data)
    state.save_started_runs({RUN})  # the crashed agent had started it: it is never started again
    state.save_desired(state_wire([job], runs=[
        {"id": RUN, "deployment": job["id"], "environment": "development", "project": "shop", "component": "job",
         "requestedAt": "2026-12-07T10:00:00+00:00"}]))
    ledger = Ledger(data / "replicas")
    for run in (RUN, SCHEDULED):
        identity = ReplicaId("development", "shop", "job", job["id"], "r1", 0, run)
        ledger.record(identity.key, [], [], identity)
    other = ReplicaId("development", "shop", "job", job["id"], "r1", 0)  # a service replica: no run to report
    ledger.record(other.key, [], [], other)

    settings = AgentSettings(controlplane=f"http://127.0.0.1:{free_port()}", token="nobody", data_dir=data,
                             metrics_port=None)

    async def body() -> None:
        agent = Agent(settings, LocalRuntime(settings))
        await agent.start()
        await agent.stop()

    uvloop.run(body())
    reports = [json.loads(line) for line in (data / "spool" / "task-runs.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["trigger"], r["state"], r["deployment"], r["component"]) for r in reports) == [
        (RUN, "manual", "failed", job["id"], "job"), (SCHEDULED, "schedule", "failed", job["id"], "job")]
    assert all(r["message"].startswith("the data plane's agent stopped without ending the run") for r in reports)
    assert list((data / "replicas").glob("*.json")) == []  # the sweep cleared the ledger
