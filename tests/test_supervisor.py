"""The replica supervisor with real processes and sockets, under uvloop (as the agent runs it)."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvloop

from cellplane.dataplane.limits import CgroupManager, Limits, parse_cpu, parse_memory
from cellplane.dataplane.probes import ProbeSpec, check
from cellplane.dataplane.supervisor import FileMount, Replica, ReplicaSpec, Supervisor, file_variable
from cellplane.runtime.launch import free_port

SERVER = r"""
import http.server, os
port = int(os.environ.get("LISTEN_PORT") or os.environ["PORT"])
sick = os.environ.get("SICK_FILE", "/nonexistent")

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if self.path == "/healthz" and os.path.exists(sick) else 200
        if self.path == "/moved":
            code = 302
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

print("serving on", port, flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

CGROUPS = CgroupManager()


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    uvloop.run(asyncio.wait_for(body(), 60))


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def unavailable_cgroups(tmp_path: Path) -> CgroupManager:
    """A manager that finds no cgroups (its /proc/self is an empty directory): the fallbacks are used."""
    fake = tmp_path / "no-proc"
    fake.mkdir(exist_ok=True)
    manager = CgroupManager(proc=fake)
    assert not manager.available
    return manager


class Recorder:
    """on_change and on_output, remembered."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, str, int, int | None, str]] = []
        self.lines: list[tuple[str, str]] = []

    def change(self, r: Replica) -> None:
        self.changes.append((time.monotonic(), r.state, r.restarts, r.port, r.message))

    def output(self, r: Replica, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    def states(self) -> list[str]:
        return [c[1] for c in self.changes]

    def messages(self) -> list[str]:
        return [c[4] for c in self.changes]

    def supervisor(self, **kwargs: Any) -> Supervisor:
        return Supervisor(on_change=self.change, on_output=self.output, **kwargs)


def spec(tmp_path: Path, argv: list[str], **kwargs: Any) -> ReplicaSpec:
    env = {**os.environ, **kwargs.pop("env", {})}
    port = kwargs.pop("port", None)
    if port is not None:
        env["PORT"] = str(port)
    return ReplicaSpec(key=f"test/shop/api/r{uuid.uuid4().hex[:8]}/0", argv=argv, cwd=tmp_path, env=env,
                       port=port, **kwargs)


def server(tmp_path: Path, port: int, **kwargs: Any) -> ReplicaSpec:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    return spec(tmp_path, [sys.executable, str(script)], port=port, **kwargs)


def gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def tree(pid: int) -> list[int]:
    root = psutil.Process(pid)
    return [pid, *(p.pid for p in root.children(recursive=True))]


# -- readiness -------------------------------------------------------------------------------------------------


def test_ready_via_http_path_then_unready_and_ready_again(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor()
        sick = tmp_path / "sick"
        port = free_port()
        probe = ProbeSpec(path="/healthz", period=0.1, failure_threshold=2)
        r = await sup.start(server(tmp_path, port, readiness=probe, env={"SICK_FILE": str(sick)}))
        assert sup.replicas[r.spec.key] is r
        assert await r.wait_ready(10)
        assert (r.state, r.port) == ("ready", port)
        assert f"listening on {port}" in r.message and "GET /healthz: 200" in r.message
        assert r.pid is not None and r.started_at is not None
        sick.touch()
        await until(lambda: r.state == "unready", what="unready")
        assert "readiness failed: GET /healthz" in r.message and "500" in r.message
        assert not r.ready_event.is_set()
        sick.unlink()
        await until(lambda: r.state == "ready", what="ready again")
        assert r.restarts == 0  # readiness never restarts anything
        pid = r.pid
        await sup.stop(r)
        assert r.state == "stopped" and gone([pid])
        assert r.spec.key not in sup.replicas
        assert rec.states() == ["ready", "unready", "ready", "stopping", "stopped"]
        assert not await r.wait_ready(1)

    run(body)


def test_ready_via_tcp_by_default_and_probe_results(tmp_path: Path) -> None:
    async def body() -> None:
        sup = Supervisor()
        port = free_port()
        r = await sup.start(server(tmp_path, port))
        assert await r.wait_ready(10)
        assert r.message == f"listening on {port}"
        assert await check(ProbeSpec(path="/moved"), "127.0.0.1", port) == (True, f"listening on {port} "
                                                                                  "(GET /moved: 302)")
        passed, reason = await check(ProbeSpec(), "127.0.0.1", free_port())
        assert not passed and "connection refused" in reason
        await sup.stop(r)

    run(body)


def test_a_replica_without_port_is_ready_after_a_second(tmp_path: Path) -> None:
    async def body() -> None:
        sup = Supervisor()
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(60)"]))
        started = time.monotonic()
        assert await r.wait_ready(5)
        assert 0.9 <= time.monotonic() - started < 4
        await sup.stop(r)

    run(body)


def test_declared_port_is_adopted_when_the_process_ignores_port(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor()
        given, declared = free_port(), free_port()
        r = await sup.start(server(tmp_path, given, declared_port=declared, env={"LISTEN_PORT": str(declared)}))
        assert await r.wait_ready(10)
        assert r.port == declared
        assert r.message == f"the process ignores PORT and listens on its declared port {declared}"
        assert (declared in [c[3] for c in rec.changes])
        await sup.stop(r)

    run(body)


# -- restarts --------------------------------------------------------------------------------------------------


def test_a_crashing_process_is_restarted_with_exponential_backoff(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor(backoff_base=0.2, crash_loop_after=10)
        code = "import sys; print('starting'); print('boom', file=sys.stderr); sys.exit(3)"
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", code]))
        await until(lambda: r.restarts >= 3, what="three restarts")
        assert r.exit_code == 3
        messages = list(dict.fromkeys(m for m in rec.messages() if "restarting" in m))  # told at exit and restart
        assert messages[0] == "exited with 3 (last line: boom); restarting in 0.2s"
        assert "restarting in 0.4s" in messages[1] and "restarting in 0.8s" in messages[2]
        times = [c[0] for before, c in itertools.pairwise(rec.changes) if c[2] > before[2]]  # the restarts
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[1] > gaps[0] * 1.5, gaps
        assert set(rec.states()) == {"starting"}  # below crash_loop_after only the message and restarts change
        assert ("stdout", "starting") in rec.lines and ("stderr", "boom") in rec.lines
        await sup.stop(r)
        assert r.state == "stopped"

    run(body)


def test_repeated_fast_exits_are_a_crash_loop_that_keeps_being_retried(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor(backoff_base=0.05, crash_loop_after=3)
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", "raise SystemExit(1)"]))
        await until(lambda: r.state == "crash-loop", what="crash-loop")
        assert r.restarts == 2 and "exited with 1" in r.message
        await until(lambda: r.restarts >= 4, what="retries in crash-loop")
        assert "crash-loop" in rec.states()
        await sup.stop(r)

    run(body)


def test_backoff_resets_once_a_process_ran_stable(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor(backoff_base=0.1, stable_after=0.3)
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(0.5)"]))
        await until(lambda: r.restarts >= 3, what="three restarts")
        delays = {m.rsplit(" ", 1)[-1] for m in rec.messages() if "restarting in" in m}
        assert delays == {"0.1s"}
        assert r.state != "crash-loop"
        await sup.stop(r)

    run(body)


def test_a_failing_liveness_probe_restarts_the_process(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor(backoff_base=0.1)
        sick = tmp_path / "sick"
        port = free_port()
        liveness = ProbeSpec(path="/healthz", period=0.1, failure_threshold=2)
        r = await sup.start(server(tmp_path, port, liveness=liveness, env={"SICK_FILE": str(sick)}))
        assert await r.wait_ready(10)
        first = r.pid
        sick.touch()
        await until(lambda: r.restarts >= 1, what="a restart")
        assert any(m.startswith("liveness failed: GET /healthz on port") and "killed by SIGTERM" in m
                   for m in rec.messages())
        sick.unlink()
        assert await r.wait_ready(10)
        assert r.pid != first and gone([first])
        await sup.stop(r)

    run(body)


def test_a_command_that_cannot_start_fails_and_is_retried(tmp_path: Path) -> None:
    async def body() -> None:
        sup = Supervisor(backoff_base=0.05)
        r = await sup.start(spec(tmp_path, [str(tmp_path / "no-such-program")]))
        await until(lambda: r.restarts >= 2, what="retries")
        assert r.state == "failed"
        assert r.message.startswith(f"cannot start: {tmp_path / 'no-such-program'} not found; restarting in")
        missing = await sup.start(spec(tmp_path / "gone", [sys.executable, "-c", "pass"]))
        await until(lambda: missing.state == "failed", what="failed")
        assert "the working directory" in missing.message and "does not exist" in missing.message
        await sup.stop_all()
        assert sup.replicas == {}

    run(body)


# -- stopping --------------------------------------------------------------------------------------------------


SPAWNER = """#!/bin/sh
setsid sleep 301 &
echo $! > grandchild.pid
sh -c 'setsid sleep 302 & echo $! > escaped.pid'
echo spawned
wait
"""


@pytest.mark.parametrize("cgroups", ["real", "none"])
def test_stop_kills_the_group_and_every_descendant(tmp_path: Path, cgroups: str) -> None:
    if cgroups == "real" and not CGROUPS.available:
        pytest.skip(f"no cgroups here: {CGROUPS.reason}")

    async def body() -> None:
        manager = CGROUPS if cgroups == "real" else unavailable_cgroups(tmp_path)
        sup = Supervisor(cgroups=manager)
        script = tmp_path / "spawner.sh"
        script.write_text(SPAWNER)
        r = await sup.start(spec(tmp_path, ["/bin/sh", str(script)]))
        pidfiles = [tmp_path / "grandchild.pid", tmp_path / "escaped.pid"]
        await until(lambda: all(f.exists() and f.read_text().strip() for f in pidfiles), what="pid files")
        await asyncio.sleep(1.2)  # without a cgroup the tree is captured once a second
        assert r.pid is not None
        grandchild, escaped = (int(f.read_text()) for f in pidfiles)
        pids = tree(r.pid)
        assert grandchild in pids and escaped not in pids  # the escaped daemon left the tree
        assert os.getsid(grandchild) == grandchild != os.getpgid(r.pid)
        await sup.stop(r, grace=2)
        assert gone([*pids, grandchild])
        if cgroups == "real":
            assert gone([escaped])  # found through the cgroup
            assert "cgroup" in r.limits_note
        else:
            psutil.Process(escaped).kill()  # nothing can know about it: clean up after the test
            assert r.limits_note.startswith("no limits; cgroups unavailable: cgroups are not readable")

    run(body)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor()
        code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
                "time.sleep(60)")
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", code]))
        await until(lambda: ("stdout", "up") in rec.lines, what="output")
        pid = r.pid
        assert pid is not None
        started = time.monotonic()
        await sup.stop(r, grace=0.5)
        assert 0.5 <= time.monotonic() - started < 3
        assert r.exit_code == -9 and r.state == "stopped" and gone([pid])
        assert await r.wait_exit() == -9

    run(body)


def test_stop_cancels_a_pending_restart_and_stop_all_is_concurrent(tmp_path: Path) -> None:
    async def body() -> None:
        sup = Supervisor(backoff_base=30)
        crashing = await sup.start(spec(tmp_path, [sys.executable, "-c", "raise SystemExit(2)"]))
        await until(lambda: "restarting in 30s" in crashing.message, what="backoff")
        started = time.monotonic()
        await sup.stop(crashing)
        assert time.monotonic() - started < 1
        assert (crashing.state, crashing.restarts, crashing.exit_code) == ("stopped", 0, 2)

        code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
        stubborn = [await sup.start(spec(tmp_path, [sys.executable, "-c", code])) for _ in range(3)]
        await until(lambda: all(r.pid for r in stubborn), what="pids")
        await asyncio.sleep(0.3)  # let them install their handlers
        pids = [r.pid for r in stubborn]
        started = time.monotonic()
        await sup.stop_all(grace=1)
        assert time.monotonic() - started < 2.5
        assert gone([p for p in pids if p]) and sup.replicas == {}

    run(body)


# -- output, files, tasks --------------------------------------------------------------------------------------


OUTPUT = r"""
import sys
for i in range(300):
    print(f"out {i}")
    print(f"err {i}", file=sys.stderr)
sys.stdout.write("x" * 40000 + "\n")
sys.stdout.flush()
sys.stdout.buffer.write(b"bad \xff byte\n")
sys.stdout.buffer.write(b"no newline at the end")
"""


def test_output_lines_arrive_in_order_per_stream(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor()
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", OUTPUT], restart="never"))
        assert await r.wait_exit() == 0
        out = [line for stream, line in rec.lines if stream == "stdout"]
        err = [line for stream, line in rec.lines if stream == "stderr"]
        assert out[:300] == [f"out {i}" for i in range(300)]
        assert err == [f"err {i}" for i in range(300)]
        assert out[300] == "x" * 16384
        assert out[301:] == ["bad \ufffd byte", "no newline at the end"]
        assert r.state == "exited" and r.message == "exited with 0 (last line: err 299)"

    run(body)


def test_a_chatty_process_never_blocks_on_its_pipes(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor()
        code = ("import sys, time\nfor _ in range(100000): print('y' * 100)\nsys.stdout.flush()\n"
                "print('done', file=sys.stderr, flush=True)\ntime.sleep(30)")
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", code]))
        await until(lambda: ("stderr", "done") in rec.lines, what="the line after 10 MB of output")
        assert sum(1 for stream, _ in rec.lines if stream == "stdout") == 100000
        await sup.stop(r)

    run(body)


READ_FILES = """
import os, sys
for name in ("CONF", "DB_PASSWORD"):
    print(name, os.environ["CELLPLANE_FILE_" + name])
for path in sys.argv[1:]:
    print(path, open(path).read())
"""


def test_files_are_written_mounted_and_removed(tmp_path: Path) -> None:
    async def body() -> None:
        rec = Recorder()
        sup = rec.supervisor()
        conf_path = tmp_path / "app" / "conf" / "settings.json"
        secret_path = tmp_path / "app" / "secret.txt"
        files = [FileMount("conf", str(conf_path), b'{"a": 1}'),
                 FileMount("db-password", str(secret_path), b"hunter2", secret=True)]
        run_dir = tmp_path / "run"
        s = spec(tmp_path, [sys.executable, "-c", READ_FILES, str(conf_path), str(secret_path)],
                 files=files, run_dir=run_dir, restart="never")
        r = await sup.start(s)
        assert await r.wait_exit() == 0, rec.lines
        out = dict(line.split(" ", 1) for _, line in rec.lines)
        written_conf, written_secret = Path(out["CONF"]), Path(out["DB_PASSWORD"])
        assert written_conf == run_dir / "mounts" / str(conf_path).lstrip("/")
        assert str(written_secret).startswith("/dev/shm/cellplane-")
        assert file_variable("db-password") == "CELLPLANE_FILE_DB_PASSWORD"
        if os.geteuid() == 0:
            assert out[str(conf_path)] == '{"a": 1}' and out[str(secret_path)] == "hunter2"
            assert conf_path.read_text() == ""  # outside the replica's namespace only the empty mount point
        assert not written_conf.exists() and not written_secret.exists()  # removed once the run ended
        assert not (run_dir / "mounts").exists()

    run(body)


def test_secret_files_are_private_while_the_replica_runs(tmp_path: Path) -> None:
    async def body() -> None:
        sup = Supervisor()
        files = [FileMount("token", str(tmp_path / "token"), b"t0k3n", secret=True)]
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"], files=files))
        variable = file_variable("token")
        await until(lambda: r.pid is not None, what="pid")
        written = Path(psutil.Process(r.pid).environ()[variable])
        assert written.read_bytes() == b"t0k3n"
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        root = Path("/dev/shm") / written.relative_to("/dev/shm").parts[0]
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        await sup.stop(r)
        assert not root.exists()

    run(body)


def test_wait_exit_returns_the_exit_code_of_a_task(tmp_path: Path) -> None:
    async def body() -> None:
        sup = Supervisor()
        task = await sup.start(spec(tmp_path, [sys.executable, "-c", "import sys; sys.exit(7)"], restart="never"))
        assert await task.wait_exit() == 7
        assert (task.state, task.restarts, task.message) == ("exited", 0, "exited with 7")
        assert task.spec.key not in sup.replicas
        await sup.stop(task)  # a no-op once it ended
        missing = await sup.start(spec(tmp_path, ["/no/such/program"], restart="never"))
        assert await missing.wait_exit() == 127
        assert missing.state == "failed" and "not found" in missing.message

    run(body)


def test_start_rejects_specs_that_can_never_run(tmp_path: Path) -> None:
    async def body() -> None:
        sup = Supervisor()
        with pytest.raises(ValueError, match="absolute path"):
            await sup.start(spec(tmp_path, ["true"], files=[FileMount("x", "relative/path", b"")]))
        with pytest.raises(ValueError, match="absolute path"):
            await sup.start(spec(tmp_path, ["true"], files=[FileMount("x", "/app/../etc/passwd", b"")]))
        with pytest.raises(ValueError, match="no command"):
            await sup.start(spec(tmp_path, []))
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"]))
        with pytest.raises(ValueError, match="already supervised"):
            await sup.start(r.spec)
        await sup.stop(r)

    run(body)


def test_a_broken_callback_does_not_break_supervision(tmp_path: Path) -> None:
    def explode(*_: Any) -> None:
        raise RuntimeError("callback bug")

    async def body() -> None:
        sup = Supervisor(on_change=explode, on_output=explode)
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", "print('hi')"], restart="never"))
        assert await r.wait_exit() == 0 and r.message == "exited with 0 (last line: hi)"

    run(body)


# -- limits ----------------------------------------------------------------------------------------------------


HOG = "x = b'\\1' * (512 << 20); print('allocated')"


def test_a_memory_hog_dies_under_its_cgroup_limit(tmp_path: Path) -> None:
    if not CGROUPS.available:
        pytest.skip(f"no cgroups here: {CGROUPS.reason}")

    async def body() -> None:
        sup = Supervisor(cgroups=CGROUPS)
        limits = Limits(memory_bytes=parse_memory("64Mi"), cpu_millis=parse_cpu("250m"))
        r = await sup.start(spec(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"], limits=limits))
        await until(lambda: r.pid is not None, what="pid")
        assert r.limits_note == f"memory 64 MiB, cpu 250m enforced by cgroup v{CGROUPS.version}"
        memberships = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{r.pid}/cgroup").read_text().split())
        path = memberships.get("memory", memberships.get(""))
        assert path is not None and path.rsplit("/", 1)[-1].startswith("cellplane-")
        await sup.stop(r)
        hog = await sup.start(spec(tmp_path, [sys.executable, "-c", HOG], limits=limits, restart="never"))
        assert await hog.wait_exit() == -9
        assert hog.message.startswith("killed by SIGKILL") and "out of memory (its limit is 64 MiB)" in hog.message

    run(body)


def test_two_agents_running_the_same_replica_key_get_cgroups_of_their_own(tmp_path: Path) -> None:
    """Release ids are content digests: two data planes on one machine run the same keys. Stopping one's replica
    (which kills its whole cgroup) must not kill the other's."""
    if not CGROUPS.available:
        pytest.skip(f"no cgroups here: {CGROUPS.reason}")

    async def body() -> None:
        first = Supervisor(cgroups=CgroupManager(namespace=str(tmp_path / "dp1")))
        second = Supervisor(cgroups=CgroupManager(namespace=str(tmp_path / "dp2")))
        sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
        limits = Limits(memory_bytes=parse_memory("64Mi"))
        one, two = spec(tmp_path, sleeper, limits=limits), spec(tmp_path, sleeper, limits=limits)
        two.key = one.key
        a = await first.start(one)
        b = await second.start(two)
        await until(lambda: a.pid is not None and b.pid is not None, what="pids")
        await first.stop(a)
        await asyncio.sleep(0.3)
        assert b.state != "exited" and psutil.pid_exists(b.pid) and psutil.Process(b.pid).status() != "zombie"
        await second.stop(b)

    run(body)


def test_a_memory_hog_fails_under_rlimit_without_cgroups(tmp_path: Path) -> None:
    async def body() -> None:
        sup = Supervisor(cgroups=unavailable_cgroups(tmp_path))
        limits = Limits(memory_bytes=parse_memory("256Mi"), cpu_millis=500)
        hog = await sup.start(spec(tmp_path, [sys.executable, "-c", HOG], limits=limits, restart="never"))
        assert await hog.wait_exit() == 1
        assert hog.limits_note.startswith("memory 256 MiB enforced by RLIMIT_AS; cpu not limited; cgroups unavailable")
        assert hog.message == "exited with 1 (last line: MemoryError): out of memory (its limit is 256 MiB)"

    run(body)


@pytest.mark.parametrize(("quantity", "expected"), [
    ("256Mi", 256 << 20), ("1Gi", 1 << 30), ("512M", 512_000_000), ("1000", 1000), ("1.5Gi", 3 << 29),
    ("128k", 128_000), ("1e3", 1000), ("64Ki", 65536),
])
def test_parse_memory(quantity: str, expected: int) -> None:
    assert parse_memory(quantity) == expected


@pytest.mark.parametrize(("quantity", "expected"), [("500m", 500), ("2", 2000), ("1.5", 1500), ("0.1", 100),
                                                     ("250m", 250)])
def test_parse_cpu(quantity: str, expected: int) -> None:
    assert parse_cpu(quantity) == expected


@pytest.mark.parametrize("bad", ["", "lots", "12Q", "-1Gi", "1.2.3"])
def test_bad_quantities_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_memory(bad)
    with pytest.raises(ValueError):
        parse_cpu(bad)


def test_cgroup_discovery_and_limits_on_a_fake_v2_hierarchy(tmp_path: Path) -> None:
    """A container's view: cgroup2 mounted with its root at the container's cgroup, which is ours."""
    root = tmp_path / "cgroup"
    ours = root / "app"
    ours.mkdir(parents=True)
    (ours / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (ours / "cgroup.subtree_control").write_text("")
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(f"30 25 0:26 /kubepods/pod1 {root} rw,nosuid - cgroup2 cgroup2 rw\n")
    (proc / "cgroup").write_text("0::/kubepods/pod1/app\n")
    manager = CgroupManager(proc=proc)
    assert (manager.available, manager.version, manager.cpu_limited()) == (True, 2, True)
    assert (ours / "cgroup.subtree_control").read_text() == "+memory +cpu"  # delegated to the replicas
    group = manager.create("development/shop/api/r1/0", Limits(memory_bytes=64 << 20, cpu_millis=500))
    assert group.dirs[0].parent == ours and group.dirs[0].name.startswith("cellplane-")
    assert (group.dirs[0] / "memory.max").read_text() == str(64 << 20)
    (group.dirs[0] / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (group.dirs[0] / "cgroup.procs").write_text("12\n34\n")
    assert group.oom_kills() == 1 and group.pids() == {12, 34}
    assert group.procs_files == [str(group.dirs[0] / "cgroup.procs")]
    (proc / "cgroup").write_text("0::/elsewhere\n")  # not below the mount's root: not usable
    assert not CgroupManager(proc=proc).available


def test_a_killed_process_that_stays_a_zombie_counts_as_dead() -> None:
    """A replica's grandchild whose parent never reaps it stays a zombie after SIGKILL: it is dead, and killing
    the tree must not wait for somebody to reap it (that made every stop of such a replica take seconds)."""
    import subprocess

    from cellplane.processes import alive, freeze_and_kill

    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time\n"
                               "child = subprocess.Popen(['sleep', '60'])\n"
                               "print(child.pid, flush=True)\n"
                               "time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        started = time.monotonic()
        assert freeze_and_kill([child], wait=30) is True
        assert time.monotonic() - started < 15, "it waited for the zombie to be reaped"
        assert not alive(child) and child.status() == psutil.STATUS_ZOMBIE  # nobody reaped it: a zombie, dead
    finally:
        parent.kill()
        parent.wait()
