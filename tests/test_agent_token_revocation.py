"""A real agent running with its own token file, as `up` runs it: revoking the bootstrap admin token changes nothing
for it; revoking its own token makes it keep its reports on disk (and say so once) until a valid token is put into
the file, when everything kept arrives. And `up` itself: it makes the agent's token, comes back up after the admin
token is revoked, and points at `admin recover-token` when neither token works."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from buildkit import BuildServer
from dataplanekit import AgentProcess, build_app, deploy, service, wait_state
from liveserver import CELLPLANE, free_port, run_cli

ORG = "/organizations/default"
COMPONENTS = f"{ORG}/projects/revoke/components"


def poll(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.3)
    return result


def start_agent_with_token_file(url: str, token_file: Path, data_dir: Path, cache: Path) -> AgentProcess:
    """`dataplane run` as `up` starts it: the token comes from a file only (no CELLPLANE_TOKEN). A status report every
    second when nothing changes (``--heartbeat``), so that waiting for one takes a second, not ten."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env["CELLPLANE_CONFIG"] = os.devnull + ".none"
    process = subprocess.Popen(
        [str(CELLPLANE), "dataplane", "run", "--controlplane", url, "--token-file", str(token_file),
         "--data-dir", str(data_dir), "--cache-dir", str(cache), "--heartbeat", "1"],
        stdout=log_path.open("a"), stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True)
    agent = AgentProcess(process, data_dir, log_path)
    poll(lambda: agent.gateway() or process.poll() is not None, "the agent reports its gateways")
    assert process.poll() is None, agent.log()
    return agent


def last_seen(c: httpx.Client) -> str:
    return c.get(f"{ORG}/dataplanes/local").json()["status"]["agent"]["lastSeen"]


def arrived(c: httpx.Client, tag: str) -> tuple[int, int]:
    """(workload log lines, access lines) of requests whose path holds ``tag``."""
    logs = c.get(f"{COMPONENTS}/api/logs", params={"environment": "development", "grep": tag}).json()["items"]
    access = c.get(f"{COMPONENTS}/api/access-logs", params={"environment": "development", "grep": tag}).json()["items"]
    return len(logs), len(access)


def test_the_agent_outlives_the_admin_token_and_keeps_its_reports_while_its_own_token_is_refused(
        build_server: BuildServer, tmp_path: Path) -> None:
    server = build_server.server
    admin = server.client()
    # the operator's own token first: the bootstrap admin token is about to go
    operator = server.client(admin.post("/users/admin/tokens", json={"name": "operator"}).json()["token"])
    token_file = tmp_path / "dataplane.token"
    r = operator.post(f"{ORG}/dataplanes/local/tokens", json={"name": "agent", "bindUnbound": True})
    assert r.status_code == 201, r.text
    first = r.json()
    token_file.write_text(first["token"] + "\n")
    agent = start_agent_with_token_file(server.url, token_file, tmp_path / "dp", build_server.cache)
    try:
        build_app(operator, "revoke", "api", service())
        deploy(operator, "revoke", "api")
        url = wait_state(operator, "revoke", "api")["endpoints"][0]["urls"]["external"]

        # the bootstrap admin token is revoked: the data plane is not touched by it
        bootstrap = next(t for t in operator.get("/users/admin/tokens").json()["items"] if t["name"] == "bootstrap")
        assert operator.delete(f"/tokens/{bootstrap['id']}").status_code == 200
        seen = last_seen(operator)
        tag = uuid.uuid4().hex[:12]
        for i in range(5):
            assert httpx.get(f"{url}/{tag}-{i}", timeout=10).status_code == 200
        poll(lambda: arrived(operator, tag) == (5, 5), "log and access lines after the admin token was revoked")
        poll(lambda: last_seen(operator) > seen, "a status report after the admin token was revoked", timeout=40)
        assert wait_state(operator, "revoke", "api")["state"] == "ready"

        # now its own token is revoked: what happens meanwhile is kept, not dropped
        assert operator.delete(f"/tokens/{first['id']}").status_code == 200
        tag = uuid.uuid4().hex[:12]
        poll(lambda: "refuses this data plane's token" in agent.log(), "the agent says its token is refused")
        for i in range(20):
            assert httpx.get(f"{url}/{tag}-{i}", timeout=10).status_code == 200  # traffic flows meanwhile
        poll(lambda: (tmp_path / "dp" / "spool" / "access-logs.jsonl").exists(), "access lines spooled")
        time.sleep(3)  # several retries, each refused
        assert arrived(operator, tag) == (0, 0)
        assert agent.log().count("refuses this data plane's token") == 1, agent.log()

        # a new token in the file: read on the next refusal, and everything kept arrives
        r = operator.post(f"{ORG}/dataplanes/local/tokens", json={"name": "agent-2"})
        assert r.status_code == 201, r.text
        tmp = token_file.with_suffix(".new")
        tmp.write_text(r.json()["token"] + "\n")
        tmp.replace(token_file)
        poll(lambda: arrived(operator, tag) == (20, 20), "the kept log and access lines", timeout=90)
        seen = last_seen(operator)
        poll(lambda: last_seen(operator) > seen, "a status report with the new token", timeout=40)
        assert agent.process.poll() is None
        log = agent.log()
        assert "read a new token from" in log and "accepts this data plane's token again" in log
        assert "dropped" not in log, log
    finally:
        agent.stop()


# -- up ----------------------------------------------------------------------------------------------------------------


class Up:
    def __init__(self, data: Path, log: Path) -> None:
        self.port, self.log = free_port(), log
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
        env["CELLPLANE_CONFIG"] = os.devnull + ".none"
        self.process = subprocess.Popen(
            [str(CELLPLANE), "up", "--data-dir", str(data), "--port", str(self.port), "--gateway-port", "0",
             "--build-workers", "0"], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, text: str, timeout: float = 120) -> None:
        poll(lambda: text in self.output() or self.process.poll() is not None, f"`up` prints {text!r}", timeout)
        assert text in self.output(), self.output()

    def stop(self) -> None:
        children = psutil.Process(self.process.pid).children(recursive=True) if self.process.poll() is None else []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for p in children:
            if p.is_running():
                p.kill()


def test_up_gives_the_agent_its_own_token_and_survives_the_admin_tokens_revocation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Up(data, tmp_path / "up-1.log")
    try:
        up.wait("Cellplane is up.")
        agent_file = data / "dataplane.token"
        assert stat.S_IMODE(os.stat(agent_file).st_mode) == 0o600
        assert f"--token-file {agent_file}" in " ".join(
            " ".join(p.cmdline()) for p in psutil.Process(up.process.pid).children(recursive=True))
        admin_token = (data / "admin.token").read_text().strip()
        admin = httpx.Client(base_url=up.url + "/api/v1", headers={"Authorization": f"Bearer {admin_token}"},
                             timeout=10)
        agent_user = admin.get("/whoami", headers={"Authorization": f"Bearer {agent_file.read_text().strip()}"})
        assert agent_user.json()["user"] == "dataplane:default:local"
        assert {e["metadata"]["name"]: e["spec"].get("dataPlane") for e in
                admin.get(f"{ORG}/environments").json()["items"]}["development"] == "local"
        bootstrap = next(t for t in admin.get("/users/admin/tokens").json()["items"] if t["name"] == "bootstrap")
        assert admin.delete(f"/tokens/{bootstrap['id']}").status_code == 200
    finally:
        up.stop()
    assert up.process.returncode == 0, up.output()

    # the next `up` needs no admin token: the agent's own still works
    up = Up(data, tmp_path / "up-2.log")
    try:
        up.wait("Cellplane is up.")
        assert "data plane     local started" in up.output()
    finally:
        up.stop()

    # with the agent token gone too, `up` says how to get back in; recover-token does
    (data / "dataplane.token").unlink()
    up = Up(data, tmp_path / "up-3.log")
    up.process.wait(timeout=120)
    assert up.process.returncode != 0
    assert "admin recover-token" in up.output() and "Traceback" not in up.output(), up.output()
    result = run_cli(None, "admin", "recover-token", "--data-dir", str(data), "--output", str(data / "admin.token"))
    assert result.returncode == 0, result.stderr
    up = Up(data, tmp_path / "up-4.log")
    try:
        up.wait("Cellplane is up.")
        assert (data / "dataplane.token").exists()
    finally:
        up.stop()
