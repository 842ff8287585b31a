"""An agent killed with SIGKILL cannot stop its replicas: they keep running, re-parented to init. The next agent on
the same data directory ends them (and a task run they left) before it starts its own, so that exactly one set of
replicas runs, removes the secret files they had in /dev/shm, and serves."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from buildkit import OSV, BuildServer
from cellplane.runtime.launch import free_port
from dataplanekit import ORG, build_app, deploy, logs, service, start_agent, wait_state
from liveserver import CELLPLANE

PROJECT = "crashed"
SECRET_FILE = {"name": "token", "mountPath": "/etc/cellplane-crash-test/token", "content": "s3cret", "secret": True}


def _replica_processes(data_dir: Path, project: str = PROJECT) -> dict[int, dict[str, str]]:
    """The live processes of this test's replicas and task runs (by their CELLPLANE_* environment and their working
    directory in this agent's data directory) -> their environment."""
    found = {}
    for p in psutil.process_iter():
        try:
            env = p.environ()
            if env.get("CELLPLANE_PROJECT") == project and p.cwd().startswith(str(data_dir)) \
                    and p.status() != psutil.STATUS_ZOMBIE:
                found[p.pid] = env
        except psutil.Error:
            continue
    return found


def _leaders(processes: dict[int, dict[str, str]]) -> list[dict[str, str]]:
    """One entry per replica or run: the processes whose parent is none of them."""
    leaders = []
    for pid, env in processes.items():
        try:
            parent = psutil.Process(pid).ppid()
        except psutil.Error:
            continue
        if parent not in processes:
            leaders.append(env)
    return leaders


def _until(condition: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def test_a_restarted_agent_ends_what_its_killed_predecessor_left_and_runs_one_set(
        build_server: BuildServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    server, c = build_server.server, build_server.client
    agent = start_agent(server, tmp_path_factory.mktemp("dp-crash") / "data", build_server.cache)
    try:
        build_app(c, PROJECT, "api", service(replicas=2, configuration={"files": [SECRET_FILE]}))
        literal = free_port()  # a start command that binds its port itself: the new replica needs the old one gone
        build_app(c, PROJECT, "fixed", service(port=literal, build={"run": f"PORT={literal} python app.py"}))
        build_app(c, PROJECT, "job", {"type": "manual-task", "configuration": {
            "env": [{"name": "TASK_SECONDS", "value": "600"}], "files": [SECRET_FILE]}}, app="task")
        deploy(c, PROJECT, "api")
        deploy(c, PROJECT, "fixed")
        deploy(c, PROJECT, "job")
        d = wait_state(c, PROJECT, "api")
        fixed_url = wait_state(c, PROJECT, "fixed")["endpoints"][0]["urls"]["external"] + "/"
        wait_state(c, PROJECT, "job", states=("idle",))
        r = c.post(f"{ORG}/projects/{PROJECT}/components/job/runs", json={"environment": "development"})
        assert r.status_code in (200, 201, 202), r.text
        run = r.json()["id"]
        url = d["endpoints"][0]["urls"]["external"] + "/"

        def both_running() -> dict[int, dict[str, str]] | None:
            found = _replica_processes(agent.data_dir)
            kinds = sorted(env["CELLPLANE_COMPONENT"] for env in _leaders(found))
            return found if kinds == ["api", "api", "fixed", "job"] else None

        _until(both_running, "two replicas of api, one of fixed and a run of job")
        # the run has written its first line (a process that writes to its output after the agent died gets EPIPE)
        _until(lambda: any("starting" in x["line"] for x in logs(c, PROJECT, "job", run=run)), "the run's first line")
        old_processes = both_running() or {}
        old = set(_replica_processes(agent.data_dir)) & set(old_processes)  # not a process that was starting
        assert len(old) >= 4, old
        job_env = next(env for env in _leaders(old_processes) if env["CELLPLANE_COMPONENT"] == "job")
        written = Path(job_env["CELLPLANE_FILE_TOKEN"])  # /dev/shm/cellplane-<digest>/etc/...
        run_secrets = Path("/dev/shm") / written.relative_to("/dev/shm").parts[0]
        assert run_secrets.is_dir(), "the run's secret file is in memory"

        agent.stop(signal.SIGKILL)
        time.sleep(0.5)
        left = _replica_processes(agent.data_dir)
        assert old <= set(left), "the killed agent's replicas and run are still running"

        (agent.data_dir / "status.json").unlink()  # start_agent waits for the new agent's report
        agent = start_agent(server, agent.data_dir, build_server.cache)
        assert not old & set(_replica_processes(agent.data_dir)), \
            "the new agent ended every process its predecessor left"
        assert not run_secrets.exists(), "the left run's secret files are removed from /dev/shm"
        assert "did not stop cleanly" in agent.log()

        def serving() -> bool:
            try:
                return httpx.get(url, timeout=10).status_code == 200
            except httpx.HTTPError:
                return False

        _until(serving, f"{url} to answer 200")

        def serving_json(address: str) -> dict[str, Any] | None:
            try:
                r = httpx.get(address, timeout=10)
            except httpx.HTTPError:
                return None
            return r.json() if r.status_code == 200 else None

        def one_set() -> list[dict[str, str]] | None:
            leaders = _leaders(_replica_processes(agent.data_dir))
            return leaders if len(leaders) == 3 else None

        leaders = _until(one_set, "the new set of replicas")
        assert sorted((e["CELLPLANE_COMPONENT"], e["CELLPLANE_REPLICA"]) for e in leaders) == [
            ("api", "0"), ("api", "1"), ("fixed", "0")]
        time.sleep(1)  # nothing else starts: no second set, no second run of the manual task
        assert len(_leaders(_replica_processes(agent.data_dir))) == 3
        assert len(list((agent.data_dir / "replicas").glob("*.json"))) == 3, "records only of what runs"
        assert httpx.get(url, timeout=10).json()["pid"] not in old
        # the literal port is served by the new replica, not by the old one that held it
        fixed = _until(lambda: serving_json(fixed_url), f"{fixed_url} to answer")
        assert fixed["pid"] not in old and fixed["pid"] in _replica_processes(agent.data_dir)
        ended = _until(lambda: (got := c.get(f"{ORG}/task-runs/{run}").json())["state"] != "running" and got,
                       "the left run to be reported", timeout=30)
        assert ended["state"] == "failed" and "the next agent ended it" in ended["message"], ended
    finally:
        agent.stop()
    assert list((agent.data_dir / "replicas").glob("*.json")) == [], "a stopped agent leaves no record"
    assert _replica_processes(agent.data_dir) == {}


# -- the sweep by records alone (an agent that is not root) and by cgroup --------------------------------------

CRASHING_AGENT = r"""
import asyncio, os, sys
from pathlib import Path
import uvloop
from cellplane.dataplane.leftovers import Ledger
from cellplane.dataplane.limits import CgroupManager
from cellplane.dataplane.supervisor import FileMount, ReplicaSpec, Supervisor

root, mode = Path(sys.argv[1]), sys.argv[2]
# The replica: a child in another process group and one that loses its parent; with cgroups also a daemon that
# leaves the session. Each writes its pid to root/pids, then sleeps.
REPLICA = '''
import os, subprocess, sys
sleeper = "import os, time; open(os.environ['PIDS'], 'a').write(str(os.getpid()) + ' '); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", sleeper], process_group=0)
if os.environ["MODE"] == "cgroups" and os.fork() == 0:  # a daemon: a session of its own, its parent gone
    os.setsid()
    if os.fork() == 0:
        exec(sleeper)
    os._exit(0)
if os.fork() == 0:
    if os.fork() == 0:
        exec(sleeper)
    os._exit(0)
exec(sleeper)
'''

async def main():
    cgroups = CgroupManager(namespace=str(root)) if mode == "cgroups" else CgroupManager(proc=root / "none")
    supervisor = Supervisor(cgroups=cgroups, ledger=Ledger(root / "replicas"))
    spec = ReplicaSpec("dev/shop/api/r1/0", [sys.executable, "-c", REPLICA], root,
                       {**os.environ, "PIDS": str(root / "pids"), "MODE": mode},
                       files=[FileMount("token", "/etc/token", b"s3cret", secret=True)], run_dir=root / "run")
    await supervisor.start(spec)
    await asyncio.sleep(600)

uvloop.run(main())
"""


@pytest.mark.parametrize("mode", ["records", "cgroups"])
def test_a_sweep_ends_each_recorded_replica_with_every_process_it_started_but_never_a_reused_pid(
        tmp_path: Path, mode: str) -> None:
    """By records alone (no cgroups: an agent that is not root) the replica's session is ended, processes that
    left its group or lost their parent included; by cgroup, a daemon that left the session too."""
    import json
    import sys

    from cellplane.dataplane.leftovers import Ledger, sweep
    from cellplane.dataplane.limits import CgroupManager

    cgroups = CgroupManager(namespace=str(tmp_path)) if mode == "cgroups" else CgroupManager(proc=tmp_path / "none")
    if mode == "cgroups" and not cgroups.available:
        assert not os.environ.get("CI"), f"this test needs writable cgroups: {cgroups.describe()}"
        pytest.skip(cgroups.describe())
    agent = subprocess.Popen([sys.executable, "-c", CRASHING_AGENT, str(tmp_path), mode], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "600"])
    expected = 4 if mode == "cgroups" else 3
    processes: list[psutil.Process] = []
    try:
        def started() -> list[psutil.Process] | None:
            pids = (tmp_path / "pids").read_text().split() if (tmp_path / "pids").exists() else []
            return [psutil.Process(int(pid)) for pid in pids] if len(pids) == expected else None

        processes = _until(started, "the replica's processes", timeout=30)
        [entry] = [json.loads(path.read_text()) for path in (tmp_path / "replicas").glob("*.json")]
        assert entry["run"]["pid"] in {p.pid for p in processes}
        assert bool(entry["cgroups"]) == (mode == "cgroups")
        [secret_root] = [Path(f) for f in entry["files"] if f.startswith("/dev/shm/")]
        assert secret_root.is_dir()
        agent.kill()
        agent.wait()
        assert all(_alive(p) for p in processes), "the replica outlives its agent"
        # a record naming a live process whose pid was reused: its create time differs
        (tmp_path / "replicas" / "reused.json").write_text(json.dumps({
            "key": "dev/shop/old/r0/0", "cgroups": [], "files": ["/etc"],
            "run": {"pid": bystander.pid, "created": psutil.Process(bystander.pid).create_time() - 100}}))

        swept = sweep(Ledger(tmp_path / "replicas"), cgroups, tmp_path)

        assert [p for p in processes if _alive(p)] == []
        assert swept.replicas[0] == "dev/shop/api/r1/0" and swept.processes >= expected
        assert bystander.poll() is None, "a reused pid is never killed"
        assert not secret_root.exists() and Path("/etc").is_dir()
        assert list((tmp_path / "replicas").iterdir()) == []
        assert [d for d in entry["cgroups"] if Path(d).exists()] == []
    finally:
        agent.kill()
        bystander.kill()
        bystander.wait()
        for p in processes:
            with contextlib.suppress(psutil.Error):
                p.kill()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# -- `cellplane up` after both planes died ------------------------------------------------------------------------


def _up(data: Path, port: int, cache: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start `cellplane up` and wait until it says so (``log`` is a new file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env.update({"CELLPLANE_CONFIG": os.devnull + ".none", "CELLPLANE_OSV_DATABASE": str(OSV)})
    process = subprocess.Popen([str(CELLPLANE), "up", "--data-dir", str(data), "--port", str(port), "--gateway-port",
                                "0", "--build-workers", "1", "--cache-dir", str(cache)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _until(lambda: process.poll() is not None or "Cellplane is up." in log.read_text(), "up to start")
    assert process.poll() is None, log.read_text()
    return process


def test_a_second_up_after_both_planes_were_killed_runs_one_set_of_replicas(build_cache: Path,
                                                                              tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    up = _up(data, port, build_cache, tmp_path / "up.log")
    try:
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30,
                         headers={"Authorization": f"Bearer {(data / 'admin.token').read_text().strip()}"})
        build_app(c, "upcrash", "api", service(replicas=2))
        deploy(c, "upcrash", "api")
        url = wait_state(c, "upcrash", "api")["endpoints"][0]["urls"]["external"] + "/"
        old = set(_replica_processes(data / "dataplane", "upcrash"))
        assert len(old) >= 2
        planes = psutil.Process(up.pid).children()
        assert len(planes) == 2
        for process in (psutil.Process(up.pid), *planes):  # the machine's power cut, as far as they can tell
            process.kill()
        up.wait()
        assert old <= set(_replica_processes(data / "dataplane", "upcrash")), "the replicas outlive both planes"

        up = _up(data, port, build_cache, tmp_path / "up-again.log")
        _until(lambda: not old & set(_replica_processes(data / "dataplane", "upcrash")), "the old replicas to end")
        _until(lambda: len(_leaders(_replica_processes(data / "dataplane", "upcrash"))) == 2, "the new set")
        _until(lambda: httpx.get(url, timeout=10).status_code == 200, f"{url} to answer 200")
        time.sleep(1)
        assert len(_leaders(_replica_processes(data / "dataplane", "upcrash"))) == 2
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(60)
    assert _replica_processes(data / "dataplane", "upcrash") == {}
