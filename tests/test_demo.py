"""`make run`'s demo: `cellplane up --demo examples/demo/demo.yaml` from a clean data directory, then again.

Real processes and real HTTP on 127.0.0.1: the first run creates the project, builds and deploys its four
components and prints their URLs; they answer through the gateway (the greeter reaching quotes through its
Project connection); Ctrl-C stops everything. The second run on the same data directory builds nothing and the
URLs answer again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from liveserver import CELLPLANE, free_port

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "demo.yaml"
PROJECT = "/organizations/default/projects/demo"
COMPONENTS = ("greeter", "quotes", "digest", "web")
FIRST_RUN_TIMEOUT = 300.0  # builds on a small machine
SECOND_RUN_TIMEOUT = 60.0  # nothing to build: the data plane restarts what it ran


class DemoUp:
    """`cellplane up --demo` in its own session (as in a terminal), its output in files."""

    def __init__(self, tmp: Path, port: int, cache: Path, run: int) -> None:
        self.port, self.data = port, tmp / "data"
        self.stdout, self.stderr = tmp / f"up{run}.out", tmp / f"up{run}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
        env["CELLPLANE_CONFIG"] = str(tmp / "config.yaml")  # no saved login yet: `up` saves one
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(CELLPLANE), "up", "--data-dir", str(self.data), "--port", str(port), "--gateway-port", "0",
             "--cache-dir", str(cache), "--demo", str(DEMO)],
            stdout=self.stdout.open("w"), stderr=self.stderr.open("w"), env=env, start_new_session=True,
            cwd=tmp)
        self.children: list[psutil.Process] = []

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}\n{self.platform()}"

    def platform(self) -> str:
        """What the control plane says about the demo's deployments (best effort, for failure messages)."""
        try:
            token = (self.data / "admin.token").read_text().strip()
            items = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/organizations/default/deployments",
                              params={"project": "demo"}, headers={"Authorization": f"Bearer {token}"},
                              timeout=5).json()["items"]
        except (OSError, ValueError, KeyError, httpx.HTTPError) as e:
            return f"deployments: unknown ({e})"
        return "deployments:\n" + "\n".join(
            f"  {d['component']}: {d.get('state')} {d.get('message')} release {d.get('release')} "
            f"rollout {d.get('rollout')} observed {d.get('observedRelease')}" for d in items)

    def wait_demo(self, timeout: float) -> str:
        """Until the demo's URLs are printed; returns stdout."""
        deadline = time.monotonic() + timeout
        while "Next:" not in self.stdout.read_text():
            assert self.process.poll() is None, f"up exited with {self.process.returncode}\n{self.output()}"
            assert time.monotonic() < deadline, f"no demo URLs within {timeout:.0f}s\n{self.output()}"
            time.sleep(0.3)
        self.children = psutil.Process(self.process.pid).children(recursive=True)
        return self.stdout.read_text()

    def interrupt(self) -> None:
        """Ctrl-C: exit 0, nothing left running, no traceback."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=60) == 0, self.output()
        printed = [int(pid) for pid in re.findall(r"\(pid (\d+)", self.stdout.read_text())]
        assert len(printed) == 2, self.output()
        assert alive(self.children + [psutil.Process(p) for p in printed if psutil.pid_exists(p)]) == []
        assert "Traceback" not in self.stdout.read_text() + self.stderr.read_text(), self.output()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for p in alive(self.children):
            p.kill()


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            continue
    return left


def url(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found, f"no {pattern} in:\n{text}"
    return found.group(found.re.groups)


def get(target: str, timeout: float = 30) -> httpx.Response:
    """GET through the gateway, retried while the route is not ready yet (502/503) or the port not open."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(target, timeout=10)
            if response.status_code not in (502, 503) or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def builds(api: httpx.Client) -> int:
    return sum(len(api.get(f"{PROJECT}/components/{c}/builds").json()["items"]) for c in COMPONENTS)


def check_greeter(stdout: str) -> None:
    curl = url(r"curl '(http://127\.0\.0\.1:\d+/demo/greeter/v1/greeting\?name=Ada)'", stdout)
    response = get(curl)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["greeting"] == "Hello, Ada!"
    assert body["quote"]["quote"] and body["quote"]["author"], body  # greeter -> quotes via the connection


@pytest.mark.timeout(FIRST_RUN_TIMEOUT + SECOND_RUN_TIMEOUT + 240)
def test_the_demo_comes_up_from_a_clean_data_directory(tmp_path: Path, build_cache: Path) -> None:
    port = free_port()
    started: list[DemoUp] = []
    try:
        first = DemoUp(tmp_path, port, build_cache, 1)
        started.append(first)
        stdout = first.wait_demo(FIRST_RUN_TIMEOUT)
        took_first = time.monotonic() - first.started
        err = first.stderr.read_text()
        assert "demo: created project demo" in err and "✗" not in err, first.output()

        check_greeter(stdout)
        web = url(r"http://127\.0\.0\.1:\d+/demo/web/v1/", stdout)
        page = get(web)
        assert page.status_code == 200 and "<script src=\"app.js\"></script>" in page.text, page.text
        script = get(web + "app.js")
        assert script.status_code == 200 and '"/demo/greeter/v1"' in script.text, script.text
        quotes = url(r"http://127\.0\.0\.1:\d+/demo/", web) + "quotes/v1/quote"
        assert get(quotes).status_code == 403  # Project visibility: not on the external listener

        token = (tmp_path / "data" / "admin.token").read_text().strip()
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {token}"},
                           timeout=30)
        states = {c: api.get(f"{PROJECT}/components/{c}/deployments/development").json()["state"]
                  for c in COMPONENTS}
        assert states == {"greeter": "ready", "quotes": "ready", "digest": "scheduled", "web": "ready"}, states
        assert builds(api) == len(COMPONENTS)

        config = yaml.safe_load((tmp_path / "config.yaml").read_text())  # the printed commands work as typed
        assert config["contexts"][config["current"]]["server"] == f"http://127.0.0.1:{port}", config
        assert "saved one for" in stdout and "cellplane get deployments -p demo" in stdout, stdout
        first.interrupt()

        second = DemoUp(tmp_path, port, build_cache, 2)
        started.append(second)
        stdout = second.wait_demo(SECOND_RUN_TIMEOUT)
        took_second = time.monotonic() - second.started
        assert "nothing is rebuilt" in second.stderr.read_text(), second.output()
        assert "saved one for" not in stdout  # the login saved by the first run is kept
        check_greeter(stdout)
        assert builds(api) == len(COMPONENTS)
        print(f"first run {took_first:.1f}s, second run {took_second:.1f}s")
        api.close()
        second.interrupt()
    finally:
        for u in started:
            u.kill()


def test_up_refuses_a_demo_file_it_cannot_use(tmp_path: Path) -> None:
    """Checked before anything starts: one line, nothing created."""
    from liveserver import fails, run_cli

    bad = tmp_path / "demo.yaml"
    cases: list[tuple[Any, str]] = [
        (tmp_path / "missing.yaml", "cannot read"),
        ("kind: Project\nmetadata: {name: p}\n---\nkind: Component\nmetadata: {name: c}\n", "annotation"),
        ("kind: Component\nmetadata: {name: c}\n", "exactly one Project"),
        ("a: [", "not valid YAML"),
    ]
    for content, expected in cases:
        path = content if isinstance(content, Path) else bad
        if not isinstance(content, Path):
            bad.write_text(content)
        line = fails(run_cli(None, "up", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()),
                             "--demo", str(path)))
        assert "--demo" in line and expected in line, line
    assert not (tmp_path / "data").exists()
