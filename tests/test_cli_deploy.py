"""The real ``cellplane`` binary's deploy, logs, run, dataplane and up commands against a real control plane.

The happy path of a deploy (an agent running the release) is tested end to end with the data plane; here are
the errors a user meets first, the empty listings, and `dataplane run` / `up` as processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from buildkit import APPS, failed_why, upload, wait
from liveserver import CELLPLANE, LiveServer, Result, as_json, doc, fails, free_port, ok, run_cli

ORG = "/organizations/default"
PROJECT = "shipping"
def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()


def run_all(server: LiveServer | None, *calls: Sequence[str]) -> list[Result]:
    """Independent invocations, side by side."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run_cli(server, *args), calls))


@pytest.fixture(scope="module")
def api(live_server: LiveServer) -> httpx.Client:
    return live_server.client()


@pytest.fixture(scope="module")
def shipping(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Project ``shipping``: ``web`` (built), ``nobuild`` and ``svc`` (never built); ``staging`` is bound to a data
    plane that no agent runs, ``development`` to none."""
    docs = [doc("DataPlane", "far-away", {"type": "local"}, organization="default"),
            doc("Environment", "staging", {"dataPlane": "far-away"}, organization="default"),
            doc("Project", PROJECT, organization="default")]
    docs += [doc("Component", name, {"type": "service", "endpoints": [{"name": "site", "port": 8080}]},
                 organization="default", project=PROJECT) for name in ("web", "nobuild", "svc")]
    created(api.post("/apply", json={"documents": docs}))
    source = tmp_path_factory.mktemp("src") / "static-site"
    shutil.copytree(APPS / "static-site", source)
    build = wait(api, upload(api, PROJECT, "web", source), timeout=120)
    assert build["state"] == "succeeded", failed_why(api, build)
    return PROJECT


# -- deploy, undeploy ------------------------------------------------------------------------------------------


def test_deploy_errors_are_one_line(live_server: LiveServer, shipping: str) -> None:
    cases: list[tuple[str, list[str], str]] = [
        ("unknown component", ["deploy", "nope", "--env", "development", "-p", shipping], "not found"),
        ("unknown project", ["deploy", "web", "--env", "development", "-p", "no-such-project"], "not found"),
        ("unknown environment", ["deploy", "web", "--env", "mars", "-p", shipping], "not found"),
        ("no build", ["deploy", "nobuild", "--env", "staging", "-p", shipping], "build it first"),
        ("no data plane", ["deploy", "web", "--env", "development", "-p", shipping], "no data plane"),
        ("unknown build id", ["deploy", "web", "--env", "staging", "-p", shipping, "--build", "bld_nope"],
         "not found"),
        ("unknown build number", ["deploy", "web", "--env", "staging", "-p", shipping, "--build", "#99"],
         "no build #99"),
        ("no wait, still checked", ["deploy", "nobuild", "--env", "staging", "-p", shipping, "--no-wait"],
         "build it first"),
        ("json, still one line", ["deploy", "nope", "--env", "development", "-p", shipping, "-o", "json"],
         "not found"),
        ("missing --env", ["deploy", "web", "-p", shipping], "--env"),
        ("undeploy what never was", ["undeploy", "web", "--env", "development", "-p", shipping], "not deployed"),
    ]
    results = run_all(live_server, *[args for _, args, _ in cases])
    for (what, args, expected), result in zip(cases, results, strict=True):
        try:
            line = fails(result)
        except AssertionError as e:
            raise AssertionError(f"{what}: cellplane {' '.join(args)}: {e}") from None
        assert expected.lower() in line.lower(), f"{what}: {line}"
    assert results[4].stderr.count("cellplane dataplane run") == 1  # the hint how to get a data plane
    assert results[9].returncode == 2  # a usage error


# -- get deployments / endpoints, describe -----------------------------------------------------------------------


def test_nothing_deployed_lists_are_empty(live_server: LiveServer, shipping: str) -> None:
    deps, deps_env, deps_json, eps, eps_alias, eps_json = run_all(
        live_server, ["get", "deployments"], ["get", "deploy", "--env", "staging", "-p", shipping],
        ["get", "deployment", "-p", shipping, "-o", "json"], ["get", "endpoints", "-p", shipping],
        ["get", "ep", "--env", "development"], ["get", "endpoint", "-o", "json"])
    for result in (deps, deps_env):
        assert (ok(result).stdout, result.stderr) == ("", "No deployments found.\n")
    for result in (eps, eps_alias):
        assert (ok(result).stdout, result.stderr) == ("", "No endpoints found.\n")
    assert as_json(deps_json) == {"items": []}
    assert as_json(eps_json) == {"items": []}


def test_get_keeps_its_errors(live_server: LiveServer) -> None:
    unknown, env_elsewhere = run_all(live_server, ["get", "widgets"], ["get", "projects", "--env", "development"])
    line = fails(unknown)
    assert "'widgets' is not a kind" in line and "deployments" in line and "endpoints" in line
    assert "--env" in fails(env_elsewhere)


def test_describe_component_shows_its_deployments(live_server: LiveServer, shipping: str) -> None:
    table, full = run_all(live_server, ["describe", "component", "web", "-p", shipping],
                          ["describe", "component", "web", "-p", shipping, "-o", "json"])
    assert ok(table).stdout.startswith(f"Component web  (default/{shipping})\n")
    described = as_json(full)
    assert described["deployments"] == []
    assert "Deployments" in table.stdout
    assert "Not deployed: cellplane deploy web --env development" in table.stderr


# -- logs, run ---------------------------------------------------------------------------------------------------


def test_logs_and_run_errors(live_server: LiveServer, shipping: str) -> None:
    no_env, bad_tail, not_task, unknown = run_all(
        live_server, ["logs", "web", "-p", shipping], ["logs", "web", "--env", "development", "--tail", "-1"],
        ["run", "svc", "--env", "development", "-p", shipping], ["run", "nope", "--env", "development", "-p", shipping])
    assert "--env" in fails(no_env) and no_env.returncode == 2
    assert "--tail" in fails(bad_tail)
    assert "component" in fails(not_task).lower()
    assert "not found" in fails(unknown)


def test_logs_of_a_component_never_deployed(live_server: LiveServer, shipping: str) -> None:
    """Nothing ran, so nothing is printed (or the API says why in one line)."""
    result = run_cli(live_server, "logs", "web", "--env", "development", "-p", shipping)
    if result.returncode == 0:
        assert result.stdout == ""
    else:
        fails(result)


# -- dataplane run -----------------------------------------------------------------------------------------------


def test_dataplane_run_refuses_bad_settings(tmp_path: Path) -> None:
    """Checked before the agent starts: one line, exit 1."""
    url = f"http://127.0.0.1:{free_port()}"
    cases: list[tuple[list[str], str]] = [
        (["dataplane", "run", "--controlplane", url, "--data-dir", str(tmp_path)], "no API token"),
        (["dataplane", "run", "--controlplane", "localhost:1", "--token", "t"], "--controlplane"),
        (["dataplane", "run", "--controlplane", url, "--token-file", str(tmp_path / "none")], "--token-file"),
        (["dataplane", "run", "--controlplane", url, "--token", "t", "--python-installer", "conda"], "conda"),
        (["dataplane", "run", "--gateway-port", "70000"], "--gateway-port"),
    ]
    for args, expected in cases:
        line = fails(run_cli(None, *args))
        assert expected in line, f"{args}: {line}"


def test_dataplane_run_without_a_control_plane_fails_fast(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    token = tmp_path / "token"
    token.write_text("cpt_000000000000_" + "x" * 40 + "\n")
    started = time.monotonic()
    result = run_cli(None, "dataplane", "run", "--controlplane", url, "--token-file", str(token),
                     "--data-dir", str(tmp_path / "dp"), "--cache-dir", str(tmp_path / "cache"))
    assert time.monotonic() - started < 20
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and url in errors[0], result.stderr


# -- up ----------------------------------------------------------------------------------------------------------


def test_up_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = fails(run_cli(None, "up", "--data-dir", str(tmp_path), "--port", str(port)))
    assert f"port {port}" in line and "in use" in line
    assert not (tmp_path / "admin.token").exists()


class Up:
    def __init__(self, tmp: Path) -> None:
        self.port, self.gateway = free_port(), free_port()
        self.stdout, self.stderr = tmp / "up.out", tmp / "up.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
        env["CELLPLANE_CONFIG"] = os.devnull + ".none"
        # Its own session, as in a terminal: a signal to `up` must not reach its children from us.
        self.process = subprocess.Popen(
            [str(CELLPLANE), "up", "--data-dir", str(tmp / "data"), "--port", str(self.port), "--gateway-port",
             str(self.gateway), "--build-workers", "0", "--cache-dir", str(tmp / "cache")],
            stdout=self.stdout.open("w"), stderr=self.stderr.open("w"), env=env, start_new_session=True)

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"

    def wait_up(self, timeout: float = 120) -> list[psutil.Process]:
        deadline = time.monotonic() + timeout
        while "Cellplane is up." not in self.stdout.read_text():
            assert self.process.poll() is None, f"up exited with {self.process.returncode}\n{self.output()}"
            assert time.monotonic() < deadline, f"up did not come up within {timeout}s\n{self.output()}"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).status_code == 200
        return psutil.Process(self.process.pid).children(recursive=True)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            continue
    return left


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Any]:
    started: list[tuple[Up, list[psutil.Process]]] = []

    def _start() -> tuple[Up, list[psutil.Process]]:
        u = Up(tmp_path)
        started.append((u, []))
        children = u.wait_up()
        started[-1] = (u, children)
        return u, children

    yield _start
    for u, children in started:
        u.kill()
        for p in alive(children):
            p.kill()


def test_up_starts_both_planes_and_ctrl_c_stops_them(up: Any) -> None:
    u, children = up()
    assert len(children) >= 2
    summary = u.stdout.read_text()
    assert f"http://127.0.0.1:{u.port}" in summary and "cellplane login --server" in summary
    assert "admin.token" in summary and "data plane" in summary
    u.process.send_signal(signal.SIGINT)
    assert u.process.wait(timeout=60) == 0, u.output()
    assert alive(children) == [], u.output()
    err = u.stderr.read_text()
    assert "[controlplane] " in err and "[dataplane] " in err
    assert "Traceback" not in err


def test_up_keeps_the_data_plane_when_the_control_plane_dies(up: Any) -> None:
    u, children = up()
    server = next(p for p in children if "controlplane" in " ".join(p.cmdline()))
    agent = next(p for p in children if "dataplane" in " ".join(p.cmdline()))
    os.killpg(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "the data plane keeps serving" not in u.stderr.read_text():
        assert time.monotonic() < deadline, u.output()
        time.sleep(0.2)
    assert u.process.poll() is None and agent.is_running()
    u.process.send_signal(signal.SIGINT)
    assert u.process.wait(timeout=60) == 1, u.output()
    assert alive(children) == [], u.output()
    last = u.stderr.read_text().strip().splitlines()[-1]
    assert last.startswith("error: the control plane exited unexpectedly (killed by SIGKILL)"), u.output()


def test_killing_a_plane_that_would_not_stop_kills_its_workloads_too(tmp_path: Path) -> None:
    """`up` kills a data plane that does not stop in time; its workloads (in sessions of their own, ignoring
    SIGTERM) must not outlive it."""
    import sys

    from cellplane.cli.commands_dataplane import _kill_tree

    pid_file = tmp_path / "workload.pid"
    plane = subprocess.Popen([sys.executable, "-c", (
        "import signal, subprocess, sys, time\n"
        "w = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(w.pid))\n"
        "time.sleep(60)\n")], start_new_session=True)
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workload = psutil.Process(int(pid_file.read_text()))
    assert os.getpgid(workload.pid) != os.getpgid(plane.pid)  # out of reach of a process-group kill
    _kill_tree(plane.pid)
    plane.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive([workload]):
        assert time.monotonic() < deadline, "the workload outlived its data plane"
        time.sleep(0.05)
