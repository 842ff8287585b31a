"""Workload isolation: a hostile workload cannot read the platform's keys, the data plane's files, another
workload's secrets or processes.

End to end: a real control plane and a real agent process (as root, as CI runs), a hostile component of
project ``third`` whose HTTP handler reads whatever path it is asked for and lists ``/proc``, and a victim
in project ``vault`` with a secret variable and a secret file. Every read goes through the workload's own
handler, behind the gateway, exactly as an attacker's code would do it. Below them, the supervisor's part
(users, files, the failure of a setup) in-process.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from buildkit import component, failed_why, upload, wait
from cellplane.dataplane.sandbox import BLOCK, FIRST_ID, USERS_FILE, Isolation, Sandbox, WorkloadUsers, plan
from cellplane.dataplane.supervisor import FileMount, ReplicaSpec, Supervisor
from dataplanekit import AgentProcess, deploy, logs, service, wait_state

VICTIM_SECRET = "victim-Secret-value-7f3a"
VICTIM_FILE_SECRET = "victim-file-Secret-19bd"
OWN_SECRET = "own-Secret-value-c0de"
OWN_FILE_SECRET = "own-file-Secret-5eed"
VICTIM_MOUNT = "/tmp/cellplane-isolation-test/victim/secret.txt"
OWN_MOUNT = "/tmp/cellplane-isolation-test/hostile/own.txt"

HOSTILE_APP = '''
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/read":
            try:
                with open(q["path"], "rb") as f:
                    body = {"read": True, "content": f.read(1 << 20).decode(errors="replace")}
            except OSError as e:
                body = {"read": False, "error": str(e)}
        elif url.path == "/list":
            try:
                body = {"listed": True, "names": sorted(os.listdir(q["path"]))}
            except OSError as e:
                body = {"listed": False, "error": str(e)}
        else:
            with open("/proc/self/status") as f:
                status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
            body = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
                    "noNewPrivs": status["NoNewPrivs"].strip(), "pid": os.getpid(),
                    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                    "ownSecret": os.environ.get("OWN_SECRET"), "ownFile": os.environ.get("CELLPLANE_FILE_OWN"),
                    "home": os.environ.get("HOME"), "tmp": os.environ.get("TMPDIR")}
            with open(os.path.join(os.environ["HOME"], "written"), "w") as f:  # its home is its own
                f.write("ok")
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def _needs_root() -> None:
    """Isolation needs root: CI runs as root, so there a missing root is a failure, never a skip."""
    if os.geteuid() != 0:
        in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
        (pytest.fail if in_ci else pytest.skip)("workload isolation needs the agent to run as root")


@pytest.fixture(scope="module")
def attack(build_server: Any, dataplane: AgentProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _needs_root()
    c = build_server.client
    app = tmp_path_factory.mktemp("hostile-app")
    (app / "app.py").write_text(HOSTILE_APP)
    (app / "requirements.txt").write_text("# standard library only\n")
    (app / "Procfile").write_text("web: python app.py\n")
    deployments = {
        ("vault", "keeper", Path(__file__).parent / "fixtures" / "apps" / "echo"): {"configuration": {
            "env": [{"name": "VAULT_SECRET", "value": VICTIM_SECRET, "secret": True}],
            "files": [{"name": "vault", "mountPath": VICTIM_MOUNT, "content": VICTIM_FILE_SECRET, "secret": True}]}},
        ("third", "hostile", app): {"configuration": {
            "env": [{"name": "OWN_SECRET", "value": OWN_SECRET, "secret": True}],
            "files": [{"name": "own", "mountPath": OWN_MOUNT, "content": OWN_FILE_SECRET, "secret": True}]}},
    }
    for (project, name, directory), spec in deployments.items():
        component(c, project, name, service(**spec))
        info = wait(c, upload(c, project, name, directory))
        assert info["state"] == "succeeded", failed_why(c, info)
        deploy(c, project, name)
    for project, name, _ in deployments:
        wait_state(c, project, name)
    external = dataplane.gateway()["external"]
    victim = httpx.get(f"{external}/vault/keeper/v1/", timeout=10).json()
    victim_file = httpx.get(f"{external}/vault/keeper/v1/env", params={"name": "CELLPLANE_FILE_VAULT"},
                            timeout=10).json()["value"]
    assert victim_file and victim_file.startswith("/dev/shm/")
    return {"client": c, "hostile": f"{external}/third/hostile/v1", "victim_pid": victim["pid"],
            "victim_file": victim_file, "cp_data": build_server.server.data_dir, "dp_data": dataplane.data_dir,
            "agent": dataplane}


def _read(attack: dict[str, Any], path: str | Path) -> dict[str, Any]:
    r = httpx.get(attack["hostile"] + "/read", params={"path": str(path)}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _self(attack: dict[str, Any]) -> dict[str, Any]:
    r = httpx.get(attack["hostile"] + "/self", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("what", ["admin.token", "master.key", "token.key", "cellplane.db", "agent.key",
                                  "desired.json", "victim environ", "victim cmdline", "victim secret file",
                                  "victim secret mount"])
def test_a_hostile_workload_cannot_read_the_platforms_or_another_workloads_secrets(attack: dict[str, Any],
                                                                                     what: str) -> None:
    cp, dp, pid = attack["cp_data"], attack["dp_data"], attack["victim_pid"]
    path = {"admin.token": cp / "admin.token", "master.key": cp / "master.key", "token.key": cp / "token.key",
            "cellplane.db": cp / "cellplane.db", "agent.key": dp / "agent.key", "desired.json": dp / "desired.json",
            "victim environ": f"/proc/{pid}/environ", "victim cmdline": f"/proc/{pid}/cmdline",
            "victim secret file": attack["victim_file"], "victim secret mount": VICTIM_MOUNT}[what]
    assert Path(path).exists(), f"{path} should exist for the agent: the attack would prove nothing"
    got = _read(attack, path)
    if what == "victim secret mount":  # outside the victim's namespace its mount path is an empty mount point
        assert not got["read"] or got["content"] == "", got
    else:
        assert not got["read"], f"the workload read {path}: {got['content'][:200]!r}"
    assert VICTIM_SECRET not in json.dumps(got) and VICTIM_FILE_SECRET not in json.dumps(got)


def test_a_workload_runs_as_its_own_user_without_privileges_and_sees_only_its_processes(
        attack: dict[str, Any]) -> None:
    me = _self(attack)
    assert me["uid"] != 0 and me["euid"] != 0 and me["gid"] != 0, me
    assert FIRST_ID <= me["uid"] < 2**31 - 1
    assert me["groups"] == [] or me["groups"] == [me["gid"]], me  # no supplementary groups
    assert me["noNewPrivs"] == "1", me
    assert attack["victim_pid"] not in me["pids"], "another workload's process is listed in /proc"
    assert attack["agent"].process.pid not in me["pids"], "the agent's process is listed in /proc"
    assert me["pid"] in me["pids"]
    assert all(psutil.Process(p).uids().real == me["uid"] for p in me["pids"] if psutil.pid_exists(p))
    listed = httpx.get(attack["hostile"] + "/list", params={"path": str(attack["dp_data"])}, timeout=10).json()
    assert not listed["listed"] or listed["names"] == [], listed  # the data directory is an empty tmpfs


def test_a_workload_reads_its_own_secrets_and_writes_its_own_home(attack: dict[str, Any]) -> None:
    me = _self(attack)
    assert me["ownSecret"] == OWN_SECRET
    assert _read(attack, OWN_MOUNT) == {"read": True, "content": OWN_FILE_SECRET}
    assert _read(attack, me["ownFile"]) == {"read": True, "content": OWN_FILE_SECRET}
    written = Path(me["ownFile"])
    assert written.stat().st_uid == 0 and written.stat().st_gid == me["gid"]
    assert stat.S_IMODE(written.stat().st_mode) == 0o440
    assert stat.S_IMODE(written.parents[len(written.parents) - 4].stat().st_mode) == 0o750  # /dev/shm/cellplane-…
    home = Path(me["home"])
    assert (home / "written").read_text() == "ok" and home.stat().st_uid == me["uid"]
    assert Path(me["tmp"]).stat().st_uid == me["uid"]


def test_each_component_has_a_user_of_its_own_that_the_log_names(attack: dict[str, Any]) -> None:
    ids = json.loads((attack["dp_data"] / USERS_FILE).read_text())["ids"]
    me = _self(attack)
    assert ids["development/third/hostile"] == me["uid"]
    assert ids["development/vault/keeper"] != me["uid"]
    victim = psutil.Process(attack["victim_pid"])
    assert victim.uids().real == ids["development/vault/keeper"]
    lines = [x["line"] for x in logs(attack["client"], "third", "hostile") if x["stream"] == "system"]
    assert f"isolation: runs as uid {me['uid']} (no groups, no new privileges), private /proc, the data plane's " \
           "files hidden" in lines, lines


# -- the supervisor's part, in-process -----------------------------------------------------------------------


def test_workload_users_are_stable_distinct_and_far_from_real_users(tmp_path: Path) -> None:
    users = WorkloadUsers(tmp_path / USERS_FILE)
    a, b = users.uid("development/shop/api"), users.uid("development/shop/web")
    again = WorkloadUsers(tmp_path / USERS_FILE)
    assert again.uid("development/shop/api") == a and again.uid("development/shop/web") == b
    assert a != b and min(a, b) >= FIRST_ID and max(a, b) < 2**31 - 1
    first = json.loads((tmp_path / USERS_FILE).read_text())["first"]
    assert (first - FIRST_ID) % BLOCK == 0 and first <= min(a, b) < first + BLOCK
    assert stat.S_IMODE((tmp_path / USERS_FILE).stat().st_mode) == 0o600
    assert again.uid("production/shop/api") not in (a, b)  # another environment's secrets: another user


def test_the_mount_plan_hides_what_is_closed_and_binds_back_only_what_is_needed() -> None:
    with tempfile.TemporaryDirectory(prefix="cellplane-plan-") as where:  # under /tmp: every ancestor open
        base = Path(where)
        data, closed = base / "data", base / "closed"
        tree, run_dir, interpreter = data / "artifacts" / "abc", data / "run" / "x", closed / "python"
        for d in (tree, run_dir, interpreter, data / "spool"):
            d.mkdir(parents=True)
        base.chmod(0o755)
        closed.chmod(0o700)
        sandbox = Sandbox(FIRST_ID, FIRST_ID, (data,), (tree, interpreter, Path("/usr")))
        steps = plan(sandbox, [("/dev/shm/x/conf", "/etc/app/conf")], [run_dir], cwd=tree / "files").steps
    got = {(s.kind, s.path) for s in steps}
    assert ("tmpfs", str(data)) in got and ("tmpfs", str(closed)) in got  # hidden; closed: not enterable anyway
    assert {("read", str(tree)), ("read", str(interpreter)), ("write", str(run_dir)),
            ("file", "/etc/app/conf")} <= got
    assert not any(s.path in ("/usr", str(data / "spool")) for s in steps if s.kind != "tmpfs")  # open / not needed
    assert [s.depth for s in steps] == sorted(s.depth for s in steps)  # outermost first
    assert plan(None, [("/dev/shm/x/conf", "/etc/app/conf")]).steps == (steps[[s.kind for s in steps].index("file")],)


def test_an_agent_inside_a_control_planes_data_directory_hides_that_one_too(tmp_path: Path) -> None:
    (tmp_path / "master.key").write_text("")  # as `cellplane up` lays them out: DATA and DATA/dataplane
    assert Isolation(tmp_path / "dataplane", tmp_path / "cache").hide == (
        tmp_path / "dataplane", tmp_path / "cache", tmp_path)
    assert tmp_path not in Isolation(tmp_path / "elsewhere" / "dataplane", tmp_path / "cache").hide


@pytest.fixture
def isolation(tmp_path: Path) -> Iterator[tuple[Isolation, Path]]:
    _needs_root()
    tmp_path.chmod(0o700)  # like a real data directory: nothing beneath it reachable by the workload's user
    data = tmp_path / "data"
    data.mkdir()
    iso = Isolation(data, data / "cache")
    assert iso.check() is None, iso.unavailable
    yield iso, data


def _sandboxed(iso: Isolation, data: Path, key: str, argv: list[str], **kw: Any) -> ReplicaSpec:
    tree = data / "artifacts" / key.replace("/", "-")
    tree.mkdir(parents=True)
    tree.chmod(0o755)  # as artifacts.ensure leaves a tree, whatever the umask
    run_dir = data / "run" / key
    sandbox = iso.sandbox("/".join(key.split("/")[:3]), [tree])
    return ReplicaSpec(key=key, argv=argv, cwd=tree, env={"PATH": os.environ["PATH"], "HOME": str(run_dir / "home")},
                       run_dir=run_dir, sandbox=sandbox, **kw)


def test_a_sandboxed_replica_cannot_reach_the_data_directory_or_a_neighbour(
        isolation: tuple[Isolation, Path]) -> None:
    iso, data = isolation
    (data / "agent.key").write_text("the agent's key")
    lines: list[str] = []
    probe = ("import os, sys\n"
             "for p in sys.argv[1:]:\n"
             "    try:\n"
             "        print('read', p, open(p).read())\n"
             "    except OSError as e:\n"
             "        print('denied', p, e.strerror)\n"
             "print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n")

    async def body() -> None:
        sup = Supervisor(on_output=lambda r, s, line: lines.append(line))
        sleeper = await sup.start(_sandboxed(iso, data, "dev/p/sleeper/r1/0", [sys.executable, "-c",
                                                                                "import time; time.sleep(60)"]))
        for _ in range(200):
            if sleeper.pid is not None:
                break
            await asyncio.sleep(0.05)
        neighbour = sleeper.pid
        assert neighbour is not None, sleeper.message
        files = [FileMount("s", "/tmp/cellplane-isolation-test/unit/s.txt", b"mine", secret=True)]
        prober = await sup.start(_sandboxed(iso, data, "dev/p/prober/r1/0", [
            sys.executable, "-c", probe, str(data / "agent.key"), f"/proc/{neighbour}/environ",
            "/tmp/cellplane-isolation-test/unit/s.txt"], files=files, restart="never"))
        assert await prober.wait_exit() == 0, lines
        assert "runs as uid" in prober.limits_note
        await sup.stop_all(grace=1)
        assert f"denied {data / 'agent.key'} No such file or directory" in lines
        assert f"denied /proc/{neighbour}/environ No such file or directory" in lines
        assert "read /tmp/cellplane-isolation-test/unit/s.txt mine" in lines
        pids = json.loads(next(line for line in lines if line.startswith("pids ")).removeprefix("pids "))
        assert neighbour not in pids

    asyncio.run(body())


def test_a_sandbox_that_cannot_be_set_up_says_why(isolation: tuple[Isolation, Path]) -> None:
    iso, data = isolation
    fd, name = tempfile.mkstemp(prefix="cellplane-not-a-directory-")  # outside the hidden directories
    os.close(fd)
    blocker = Path(name)

    async def body() -> None:
        sup = Supervisor()
        files = [FileMount("f", str(blocker / "f.txt"), b"x")]
        r = await sup.start(_sandboxed(iso, data, "dev/p/broken/r1/0", [sys.executable, "-c", "pass"], files=files,
                                       restart="never"))
        assert await r.wait_exit() == 127
        assert r.state == "failed"
        assert "Not a directory" in r.message and "preexec_fn" not in r.message, r.message

    try:
        asyncio.run(body())
    finally:
        blocker.unlink()
