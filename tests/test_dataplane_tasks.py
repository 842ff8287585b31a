"""Tasks on the data plane: a scheduled task runs on its cron schedule with a run history, a manual task
runs on request and `cellplane run` follows its output to its exit code."""

from __future__ import annotations

import time
from typing import Any

from dataplanekit import ORG, AgentProcess, build_app, deploy, logs, wait_state
from liveserver import run_cli


def _runs(c: Any, project: str, name: str) -> list[dict[str, Any]]:
    r = c.get(f"{ORG}/projects/{project}/components/{name}/runs", params={"environment": "development"})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_scheduled_task_runs_on_its_schedule(build_server: Any, dataplane: AgentProcess) -> None:
    c = build_server.client
    build_app(c, "jobs", "tick", {"type": "scheduled-task", "schedule": {"cron": "* * * * * */2"}}, app="task")
    deploy(c, "jobs", "tick")
    wait_state(c, "jobs", "tick", states=("scheduled",))
    deadline = time.monotonic() + 60
    while True:
        done = [r for r in _runs(c, "jobs", "tick") if r["state"] == "succeeded"]
        if len(done) >= 2:
            break
        assert time.monotonic() < deadline, _runs(c, "jobs", "tick")
        time.sleep(0.5)
    run = done[0]
    assert run["trigger"] == "schedule" and run["exitCode"] == 0
    assert run["startedAt"] <= run["endedAt"]
    lines = [x["line"] for x in logs(c, "jobs", "tick", run=run["id"])]
    assert any("task done, exit 0" in line for line in lines), lines


def test_manual_task_follows_output_to_the_exit_code(build_server: Any, dataplane: AgentProcess) -> None:
    c = build_server.client
    build_app(c, "jobs", "once", {"type": "manual-task", "configuration": {"env": [
        {"name": "EXIT_CODE", "value": "3"}]}}, app="task")
    deploy(c, "jobs", "once")
    wait_state(c, "jobs", "once", states=("idle",))
    out = run_cli(build_server.server, "run", "once", "--env", "development", "-p", "jobs")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "task done, exit 3" in out.stdout
    assert "exit code 3" in out.stderr
    runs = _runs(c, "jobs", "once")
    assert runs[0]["trigger"] == "manual" and runs[0]["state"] == "failed" and runs[0]["exitCode"] == 3
    run_dirs = dataplane.data_dir / "run" / "development" / "jobs" / "once"
    deadline = time.monotonic() + 10
    while run_dirs.exists() and any(run_dirs.iterdir()):  # a finished run leaves no directory behind
        assert time.monotonic() < deadline, list(run_dirs.iterdir())
        time.sleep(0.1)
