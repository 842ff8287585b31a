"""A real control plane in a subprocess on a free loopback port, and helpers to talk to it.

Tests go through real HTTP, exactly as the CLI does; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

CELLPLANE = Path(sys.executable).parent / "cellplane"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    admin_token: str
    process: subprocess.Popen
    log_path: Path
    _clients: list[httpx.Client] = field(default_factory=list)

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client for /api/v1 holding ``token`` (the admin's by default; '' for none)."""
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        c = httpx.Client(base_url=self.api, headers=headers, timeout=30)
        self._clients.append(c)
        return c

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(data_dir: Path, database_url: str | None = None, env: dict[str, str] | None = None,
                 port: int | None = None) -> LiveServer:
    port = port or free_port()
    args = [str(CELLPLANE), "controlplane", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data_dir)]
    if database_url:
        args += ["--database-url", database_url]
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    log = log_path.open("w")
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    proc_env.update(env or {})
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=proc_env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"control plane exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"control plane did not start within 60s:\n{log_path.read_text()}")
        time.sleep(0.1)
    token_file = data_dir / "admin.token"  # only the replica that bootstrapped the database writes one
    token = token_file.read_text().strip() if token_file.exists() else ""
    return LiveServer(url, data_dir, token, process, log_path)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One control plane (SQLite) per test module."""
    server = start_server(tmp_path_factory.mktemp("cp") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shared_live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One control plane (SQLite) for every test module that opts in by overriding ``live_server`` with it.

    Starting a control plane costs a few seconds of CPU (imports, keys, migrations), which a module of
    API checks repeats for nothing when its names cannot meet another module's. A module may share it
    when it works in an organization of its own, or under names no other sharing module uses, and asserts
    nothing about what the whole server holds (every organization, every user, every audit event).
    Modules that restart, reconfigure or count the whole server keep ``live_server``, their own.
    """
    server = start_server(tmp_path_factory.mktemp("cp-shared") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(live_server: LiveServer) -> httpx.Client:
    return live_server.client()


def run_cli(server: LiveServer | None, *args: str, token: str | None = None, input: str | None = None,
            env: dict[str, str] | None = None, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``cellplane`` command. Its saved contexts go to a private config file under ``home``."""
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    if server is not None:
        proc_env["CELLPLANE_SERVER"] = server.url
        proc_env["CELLPLANE_TOKEN"] = server.admin_token if token is None else token
    if home is not None:
        proc_env["CELLPLANE_CONFIG"] = str(home / "config.yaml")
    else:
        proc_env["CELLPLANE_CONFIG"] = os.devnull + ".cellplane-test-none"
    proc_env.update(env or {})
    return subprocess.run([str(CELLPLANE), *args], capture_output=True, text=True, input=input, env=proc_env,
                          timeout=120, check=False)


def doc(kind: str, name: str, spec: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "cellplane.dev/v1alpha1", "kind": kind, "metadata": {"name": name, **metadata},
            "spec": spec or {}}


Result = subprocess.CompletedProcess[str]


def ok(result: Result) -> Result:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result


def fails(result: Result) -> str:
    """The one error line of a failed command (and nothing on stdout)."""
    assert result.returncode != 0, f"expected a failure\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"stderr is not one line: {result.stderr!r}"
    assert lines[0].startswith("error: ") and lines[0][len("error: "):].strip(), lines[0]
    assert result.stdout == "", result.stdout
    return lines[0]


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)
