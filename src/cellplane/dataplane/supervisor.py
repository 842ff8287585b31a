"""Replica processes: start, probe, restart with backoff, stop without leaving anything behind.

Each replica runs in a process group (and session) of its own, in its own cgroup when cgroups can be
used (see ``limits``). Its output is read continuously, line by line, so a chatty process never blocks on
a full pipe. One asyncio task supervises each replica: it starts the process, probes it, restarts it after
an exponential backoff when it exits or fails its liveness probe, and cleans up when it is stopped.

Stopping — and every restart — ends the *whole* replica: its process group, every descendant seen in its
process tree (captured before anything is killed, since orphans are re-parented away from it), and every
process in its cgroup (which catches daemons that left both group and tree). They are frozen before they
are killed, so nothing can fork a replacement in between. The supervisor never lets psutil wait for the
replica's main process: asyncio's child watcher owns it and would otherwise wait for its status forever.

Per-child setup (joining the cgroup, ``RLIMIT_AS``, the private mount namespace with the configuration
files bind-mounted at their paths and, for a replica with a sandbox, its own user and view of the disk and
of ``/proc``: see ``sandbox``) runs in ``preexec_fn``, which uvloop supports; it runs after fork and before
exec, so the program itself starts already confined.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import psutil

from cellplane.build.isolation import CLONE_NEWNS, MS_BIND, MS_PRIVATE, MS_REC
from cellplane.dataplane.leftovers import Ledger
from cellplane.dataplane.limits import Cgroup, CgroupManager, Limits, describe, mib
from cellplane.dataplane.probes import ProbeSpec, check
from cellplane.dataplane.replicaid import ReplicaId
from cellplane.dataplane.sandbox import ChildSetup, Plan, Sandbox, make_workspace, plan
from cellplane.processes import alive, freeze_and_kill

log = logging.getLogger("cellplane.dataplane")

HOST = "127.0.0.1"
SHM = Path("/dev/shm")  # noqa: S108  (memory, not disk, for secret files; see _private_dir)
LINE_MAX = 16 * 1024  # longer output lines are cut
READY_WITHOUT_PORT = 1.0  # a replica without a port is ready once it has run this long
STARTUP_PROBE = 0.02  # seconds between readiness probes of a new replica until its first success (then its period)
DRAIN_SECONDS = 1.0  # output still read after the replica is gone (an escaped orphan may hold the pipes)
SCAN_SECONDS = 1.0  # how often the process tree is captured when no cgroup lists the replica's processes
OUT_OF_MEMORY = re.compile(r"MemoryError|out of memory|Cannot allocate memory|bad_alloc", re.IGNORECASE)

ReplicaState = Literal["starting", "ready", "unready", "crash-loop", "stopping", "stopped", "exited", "failed"]


@dataclass
class FileMount:
    name: str
    mount_path: str  # absolute path the app expects
    content: bytes
    secret: bool = False


@dataclass
class ReplicaSpec:
    key: str  # unique, e.g. "development/shop/api/r3a9f0c12de/0"
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    port: int | None = None  # the port given in PORT; None for workers and tasks without endpoints
    declared_port: int | None = None  # the descriptor's port: adopted when the process listens there instead
    readiness: ProbeSpec | None = None  # None: TCP connect to the port; no port: ready after 1 s alive
    liveness: ProbeSpec | None = None  # None: no liveness probing
    restart: Literal["always", "never"] = "always"  # tasks use "never"
    grace: float = 10.0  # SIGTERM -> SIGKILL of the whole process group
    limits: Limits = field(default_factory=Limits)
    files: list[FileMount] = field(default_factory=list)
    run_dir: Path | None = None  # non-secret files go to run_dir/mounts (secret ones to /dev/shm)
    sandbox: Sandbox | None = None  # None: it runs as this process's user and sees what it sees
    # which deployment's replica or task run this is (recorded in the ledger; ``key`` is then ``identity.key``);
    # None for a process the supervisor runs for no deployment (its own tests)
    identity: ReplicaId | None = None


class Replica:
    """The live view of one supervised replica; the supervisor updates it, callers only read it."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self.spec = spec
        self.state: ReplicaState = "starting"
        self.pid: int | None = None
        self.port: int | None = spec.port  # the port it serves on: spec.port or the adopted declared port
        self.restarts = 0
        self.exit_code: int | None = None  # the last exit: its code, or -signal
        self.message = "starting"
        self.started_at: float | None = None  # time.time() of the current (or last) start
        self.limits_note = ""
        self.ready_event = asyncio.Event()  # set while the state is "ready"
        self._done = asyncio.Event()  # supervision is over: stopped, or a run that is not restarted ended
        self._stop = asyncio.Event()
        self._stop_grace: float | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Replica {self.spec.key} {self.state} pid={self.pid} port={self.port}>"

    async def wait_ready(self, timeout: float) -> bool:
        """True once ready; False when ``timeout`` passes first or the replica will not get ready any more
        (it was stopped, or its only run ended)."""
        if self.ready_event.is_set():
            return True
        waiters = {asyncio.ensure_future(self.ready_event.wait()), asyncio.ensure_future(self._done.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        return self.ready_event.is_set()

    async def wait_exit(self) -> int:
        """Wait until supervision ends — for a task (restart="never"), the end of its single run — and return
        the exit code: negative for a signal, 127 (126: permission denied) when the command could not be
        started at all, -SIGTERM when it was stopped before it ever ran."""
        await self._done.wait()
        return self.exit_code if self.exit_code is not None else -signal.SIGTERM


@dataclass
class _Prepared:
    """What every start of one replica shares: files, cgroup, environment, child setup."""

    env: dict[str, str]
    cgroup: Cgroup | None
    rlimit_as: int | None
    mounts: Plan
    file_roots: list[Path]


@dataclass
class _Run:
    """One start of a replica's process."""

    proc: asyncio.subprocess.Process
    cgroup: Cgroup | None
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    last_line: dict[str, str] = field(default_factory=dict)
    liveness_failed: asyncio.Event = field(default_factory=asyncio.Event)
    kill_reason: str = ""
    oom_before: int = 0


@dataclass
class _Outcome:
    message: str
    ran: float  # seconds the process was up
    started: bool  # False: it could not be started at all


class Supervisor:
    def __init__(self, on_change: Callable[[Replica], None] | None = None,
                 on_output: Callable[[Replica, str, str], None] | None = None,
                 backoff_base: float = 0.5, backoff_max: float = 30.0, stable_after: float = 10.0,
                 crash_loop_after: int = 3, cgroups: CgroupManager | None = None,
                 ledger: Ledger | None = None) -> None:
        self.on_change = on_change
        self.on_output = on_output
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.crash_loop_after = crash_loop_after
        self.cgroups = cgroups if cgroups is not None else CgroupManager()
        self.ledger = ledger  # records what runs, so that the next agent can end it after a crash (``leftovers``)
        self.replicas: dict[str, Replica] = {}

    # -- public ------------------------------------------------------------------------------------------------

    async def start(self, spec: ReplicaSpec) -> Replica:
        """Start supervising ``spec``; returns at once. Raises ValueError for a spec that can never run
        (no command, a file path that is not absolute or leaves its root, a key already supervised)."""
        if not spec.argv:
            raise ValueError(f"replica {spec.key}: no command")
        if spec.key in self.replicas:
            raise ValueError(f"replica {spec.key} is already supervised")
        for f in spec.files:
            _relative(f.mount_path)
        replica = Replica(spec)
        self.replicas[spec.key] = replica
        replica._task = asyncio.create_task(self._supervise(replica), name=f"replica {spec.key}")
        return replica

    async def stop(self, replica: Replica, grace: float | None = None) -> None:
        """SIGTERM the replica's processes, SIGKILL them after ``grace`` (default: the spec's), wait until
        they are gone and clean up. A pending restart is cancelled; nothing restarts afterwards."""
        if replica._task is None:
            return
        if not replica._stop.is_set():
            replica._stop_grace = replica.spec.grace if grace is None else grace
            replica._stop.set()
        await asyncio.wait({replica._task})  # not cancelled with the caller: the stop completes regardless

    async def stop_all(self, grace: float | None = None) -> None:
        await asyncio.gather(*(self.stop(r, grace) for r in list(self.replicas.values())))

    # -- state -------------------------------------------------------------------------------------------------

    def _update(self, r: Replica, state: ReplicaState | None = None, message: str | None = None,
                port: int | None = None) -> None:
        changed = False
        if state is not None and state != r.state:
            r.state, changed = state, True
        if port is not None and port != r.port:
            r.port, changed = port, True
        if message is not None:
            r.message = message
        if r.state == "ready":
            r.ready_event.set()
        else:
            r.ready_event.clear()
        if changed:
            self._notify(r)

    def _notify(self, r: Replica) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(r)
        except Exception:  # a broken callback must not break supervision
            log.exception("on_change callback failed for %s", r.spec.key)

    # -- supervision -------------------------------------------------------------------------------------------

    async def _supervise(self, r: Replica) -> None:
        prepared: _Prepared | None = None
        try:
            failures = 0
            start_state: ReplicaState = "starting"
            while not r._stop.is_set():
                if prepared is None:
                    try:
                        prepared = await asyncio.to_thread(self._prepare, r)
                    except OSError as e:  # its files cannot be written: as good as a command that is missing
                        outcome = self._not_started(r, f"cannot start: {e}", 127)
                    else:
                        if self.ledger is not None:
                            self.ledger.record(r.spec.key, prepared.cgroup.dirs if prepared.cgroup else [],
                                               prepared.file_roots, r.spec.identity)
                if prepared is not None:
                    outcome = await self._run_once(r, prepared, start_state)
                if r._stop.is_set():
                    break
                if r.spec.restart == "never":
                    self._update(r, "exited" if outcome.started else "failed", outcome.message)
                    break
                failures = 1 if outcome.ran >= self.stable_after else failures + 1
                delay = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
                start_state = "crash-loop" if failures >= self.crash_loop_after else "starting"
                before = r.state
                self._update(r, start_state if outcome.started else "failed",
                             f"{outcome.message}; restarting in {delay:g}s")
                if r.state == before:  # an exit is news even when the state stays "starting" (a wake-up waits on it)
                    self._notify(r)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(r._stop.wait(), delay)
                    break
                r.restarts += 1
                self._notify(r)
        except Exception as e:
            log.exception("supervising %s", r.spec.key)
            self._update(r, "failed", f"supervision failed: {e}")
        finally:
            if prepared is not None:
                await asyncio.to_thread(_cleanup, prepared)
                if self.ledger is not None:
                    self.ledger.forget(r.spec.key)
            if r._stop.is_set():
                self._update(r, "stopped", "stopped")
            r._done.set()
            if self.replicas.get(r.spec.key) is r:
                del self.replicas[r.spec.key]

    def _prepare(self, r: Replica) -> _Prepared:
        """Write the replica's files, make its workspace and create its cgroup (in a thread: all touch the
        disk)."""
        spec, sandbox = r.spec, r.spec.sandbox
        env, binds, roots = _write_files(spec)
        if binds and sandbox is None and not _private_mounts():
            binds = []  # CELLPLANE_FILE_<NAME> tells the app where its files are
        try:
            for _, target in binds:
                if os.path.isdir(target):
                    raise OSError(f"the file {target} cannot be mounted: a directory is in its place")
            writes = []
            if sandbox is not None and spec.run_dir is not None:
                make_workspace(spec.run_dir, sandbox)
                writes.append(spec.run_dir)
            mounts = plan(sandbox, binds, writes, spec.cwd if sandbox is not None else None)
        except OSError:
            _cleanup(_Prepared({}, None, None, Plan(), roots))
            raise
        cgroup, rlimit_as, r.limits_note = self._confine(spec)
        if sandbox is not None:
            r.limits_note += "; " + sandbox.note()
        return _Prepared({**spec.env, **env}, cgroup, rlimit_as, mounts, roots)

    def _confine(self, spec: ReplicaSpec) -> tuple[Cgroup | None, int | None, str]:
        """The replica's cgroup — or, without one, its RLIMIT_AS — and its limits note."""
        limits = spec.limits
        why = self.cgroups.describe()
        if self.cgroups.available:
            try:
                cgroup = self.cgroups.create(spec.key, limits)
            except OSError as e:
                why = f"no cgroup ({e})"
            else:
                wanted, mechanism = describe(limits), f"cgroup v{cgroup.version}"
                note = f"{wanted} enforced by {mechanism}" if wanted else f"no limits; {mechanism}"
                if limits.cpu_millis is not None and not self.cgroups.cpu_limited():
                    note += "; cpu not limited (no cpu controller)"
                return cgroup, None, note
        notes = []
        if limits.memory_bytes is not None:
            notes.append(f"memory {mib(limits.memory_bytes)} enforced by RLIMIT_AS")
        if limits.cpu_millis is not None:
            notes.append("cpu not limited")
        return None, limits.memory_bytes, "; ".join([*(notes or ["no limits"]), why])

    async def _run_once(self, r: Replica, prepared: _Prepared, start_state: ReplicaState) -> _Outcome:
        spec = r.spec
        if not spec.cwd.is_dir():
            return self._not_started(r, f"cannot start: the working directory {spec.cwd} does not exist", 127)
        setup = _child_setup(prepared)
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv, cwd=str(spec.cwd), env=prepared.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                preexec_fn=setup)
        except FileNotFoundError:
            return self._not_started(r, f"cannot start: {spec.argv[0]} not found", 127)
        except PermissionError:
            return self._not_started(r, f"cannot start: {spec.argv[0]} is not executable (permission denied)", 126)
        except (OSError, subprocess.SubprocessError) as e:
            why = (setup.failure() if setup is not None else "") or f"{e} (cgroup, limits or file mounts)"
            return self._not_started(r, f"cannot start {spec.argv[0]}: {why}", 127)
        started = time.monotonic()
        if self.ledger is not None:
            self.ledger.run_started(spec.key, proc.pid)
        run = _Run(proc, prepared.cgroup, oom_before=prepared.cgroup.oom_kills() if prepared.cgroup else 0)
        r.pid, r.started_at = proc.pid, time.time()
        self._update(r, start_state, f"started (pid {proc.pid})", port=spec.port)
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [asyncio.create_task(self._pump(r, run, proc.stdout, "stdout")),
                 asyncio.create_task(self._pump(r, run, proc.stderr, "stderr"))]
        watchers = [asyncio.create_task(self._readiness(r, run)), asyncio.create_task(self._liveness(r, run))]
        if run.cgroup is None:
            watchers.append(asyncio.create_task(self._track(run)))
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(r._stop.wait())
        unhealthy = asyncio.ensure_future(run.liveness_failed.wait())
        try:
            await asyncio.wait({exited, stopping, unhealthy}, return_when=asyncio.FIRST_COMPLETED)
            for w in watchers:
                w.cancel()
            if not exited.done():
                if r._stop.is_set():
                    self._update(r, "stopping", "stopping")
                    grace = spec.grace if r._stop_grace is None else r._stop_grace
                else:
                    grace = spec.grace
                await asyncio.to_thread(_signal_all, run, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), grace)
            await asyncio.to_thread(_kill_all, run)  # what is left: after the grace, or after the main exited
            code = await exited
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pumps), DRAIN_SECONDS)
        except BaseException:
            _kill_all(run)  # cancelled (the loop is going away) or a bug: never leave the processes behind
            raise
        finally:
            for t in (*pumps, *watchers, exited, stopping, unhealthy):
                t.cancel()
        r.pid, r.exit_code = None, code
        message = "stopped" if r._stop.is_set() else self._exit_message(r, run, code)
        return _Outcome(message, time.monotonic() - started, True)

    @staticmethod
    def _not_started(r: Replica, message: str, code: int) -> _Outcome:
        r.exit_code = code
        return _Outcome(message, 0.0, False)

    @staticmethod
    def _exit_message(r: Replica, run: _Run, code: int) -> str:
        if run.kill_reason:
            return f"{run.kill_reason}; {_how(code)}"
        last = run.last_line.get("stderr") or run.last_line.get("stdout")
        message = _how(code) + (f" (last line: {last[:200]})" if last else "")
        memory = r.spec.limits.memory_bytes
        if memory is not None and (
                (run.cgroup is not None and run.cgroup.oom_kills() > run.oom_before)
                or (run.cgroup is None and last and OUT_OF_MEMORY.search(last))):
            message += f": out of memory (its limit is {mib(memory)})"
        return message

    # -- while it runs -----------------------------------------------------------------------------------------

    async def _pump(self, r: Replica, run: _Run, stream: asyncio.StreamReader, name: str) -> None:
        """Read a stream to its end, passing each line on; a line over LINE_MAX is cut there."""
        buffer = b""
        cutting = False  # inside the rest of a line already cut and passed on
        while chunk := await stream.read(65536):
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                if not cutting:
                    self._line(r, run, name, line)
                cutting = False
            if len(buffer) >= LINE_MAX:
                if not cutting:
                    self._line(r, run, name, buffer)
                buffer, cutting = b"", True
        if buffer and not cutting:
            self._line(r, run, name, buffer)

    def _line(self, r: Replica, run: _Run, stream: str, raw: bytes) -> None:
        line = raw[:LINE_MAX].decode("utf-8", errors="replace").removesuffix("\r")
        if line.strip():
            run.last_line[stream] = line
        if self.on_output is None:
            return
        try:
            self.on_output(r, stream, line)
        except Exception:
            log.exception("on_output callback failed for %s", r.spec.key)

    async def _readiness(self, r: Replica, run: _Run) -> None:
        """Probe until cancelled: ready, unready after failure_threshold failures in a row, ready again."""
        spec = r.spec.readiness or (ProbeSpec() if r.spec.port else None)
        if spec is None or (spec.port is None and r.port is None):
            await asyncio.sleep(READY_WITHOUT_PORT)
            self._update(r, "ready", "running")
            return
        await asyncio.sleep(spec.initial_delay)
        adopted = ""
        failures = 0
        starting = STARTUP_PROBE  # until the first success, probe often: a deploy and a wake-up wait for this
        while True:
            port = spec.port or r.port
            assert port is not None
            passed, reason = await check(spec, HOST, port)
            if passed:
                failures = 0
                starting = 0.0
                if r.state != "ready":
                    self._update(r, "ready", adopted or reason)
            elif r.state == "ready":
                failures += 1
                if failures >= spec.failure_threshold:
                    self._update(r, "unready", f"readiness failed: {reason}")
            else:
                declared = r.spec.declared_port
                if (declared and spec.port is None and r.port != declared
                        and await asyncio.to_thread(_listens_on, run, declared)):
                    adopted = f"the process ignores PORT and listens on its declared port {declared}"
                    self._update(r, message=adopted, port=declared)
                    continue
                r.message = f"{'readiness failed' if r.state == 'unready' else 'not ready'}: {reason}"
            if starting:  # a constant short interval, not a backoff: the first success is seen within 20 ms
                await asyncio.sleep(min(starting, spec.period))
            else:
                await asyncio.sleep(spec.period)

    async def _liveness(self, r: Replica, run: _Run) -> None:
        """Probe until cancelled; failure_threshold failures in a row end the run (and it restarts). A replica
        without a port is only probed when its liveness probe names one."""
        spec = r.spec.liveness
        if spec is None:
            return
        await asyncio.sleep(spec.initial_delay)
        failures = 0
        while (port := spec.port or r.port) is not None:
            passed, reason = await check(spec, HOST, port)
            failures = 0 if passed else failures + 1
            if failures >= spec.failure_threshold:
                run.kill_reason = f"liveness failed: {reason}"
                r.message = run.kill_reason
                run.liveness_failed.set()
                return
            await asyncio.sleep(spec.period)

    async def _track(self, run: _Run) -> None:
        """Remember the process tree as it grows: a daemon that forks away from it is still known."""
        while True:
            await asyncio.to_thread(_capture, run)
            await asyncio.sleep(SCAN_SECONDS)


# -- processes -------------------------------------------------------------------------------------------------


def _how(code: int) -> str:
    if code >= 0:
        return f"exited with {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _capture(run: _Run) -> dict[int, psutil.Process]:
    """The replica's processes now: its tree, the cgroup's members and every one seen before."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(run.proc.pid)
        for p in (root, *root.children(recursive=True)):
            run.seen.setdefault(p.pid, p)
    if run.cgroup is not None:
        for pid in run.cgroup.pids():
            if pid not in run.seen:
                with contextlib.suppress(psutil.Error):
                    run.seen[pid] = psutil.Process(pid)
    for pid in [pid for pid, p in run.seen.items() if not alive(p)]:
        del run.seen[pid]
    run.seen.pop(os.getpid(), None)
    return dict(run.seen)


def _signal_all(run: _Run, sig: signal.Signals) -> None:
    """Signal the process group, and each process of the replica that left it (once: a second SIGTERM
    means "hurry" to some servers)."""
    procs = _capture(run)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.proc.pid, sig)
    for p in procs.values():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(p.pid) != run.proc.pid:
                p.send_signal(sig)


def _kill_all(run: _Run) -> None:
    """SIGKILL the group and every process of the replica, frozen first so none can fork a replacement."""
    main = run.proc.pid
    for _ in range(5):
        procs = _capture(run)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(main, signal.SIGKILL)
        if not freeze_and_kill(procs.values(), owned=main):
            return


def _listens_on(run: _Run, port: int) -> bool:
    """Whether a process of the replica listens on ``port`` (how a process that ignores PORT is found)."""
    for p in _capture(run).values():
        with contextlib.suppress(psutil.Error):
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
                    return True
    return False


# -- files and child setup -------------------------------------------------------------------------------------


def _relative(mount_path: str) -> PurePosixPath:
    path = PurePosixPath(mount_path)
    if not path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
        raise ValueError(f"file mount path {mount_path!r} must be an absolute path to a file")
    return path.relative_to("/")


def file_variable(name: str) -> str:
    """``CELLPLANE_FILE_<NAME>``: the name upper-cased, every other character than A-Z and 0-9 as ``_``."""
    return "CELLPLANE_FILE_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def _write_files(spec: ReplicaSpec) -> tuple[dict[str, str], list[tuple[str, str]], list[Path]]:
    """Write the files; returns their variables, the (written, mount path) pairs and the roots to remove.

    Secret files go to memory (``/dev/shm``) in a directory only the owner can enter, never to disk. With a
    sandbox they stay root's, in directories of the workload's group (0750): readable by that workload
    only (mode 0440), and neither it nor anyone else can swap them or plant a link for root to follow.
    """
    # the run directory lies in the agent's data directory: two agents on one machine running the same release
    # never share (or sweep) each other's secret directory
    digest = hashlib.sha256(f"{spec.run_dir}\0{spec.key}".encode()).hexdigest()[:16]
    secret_root = (SHM if SHM.is_dir() else Path(tempfile.gettempdir())) / f"cellplane-{digest}"
    plain_root = spec.run_dir / "mounts" if spec.run_dir is not None else secret_root
    gid = spec.sandbox.gid if spec.sandbox is not None else None
    env: dict[str, str] = {}
    binds: list[tuple[str, str]] = []
    roots: list[Path] = []
    try:
        for f in spec.files:
            root = secret_root if f.secret else plain_root
            if root not in roots:
                if root == secret_root:
                    _private_dir(root, gid)
                else:
                    root.mkdir(parents=True, exist_ok=True)
                    if gid is not None:
                        root.chmod(0o755)
                roots.append(root)
            target = root / _relative(f.mount_path)
            _write(target, f.content, _file_mode(f.secret, gid), root, gid if root == secret_root else None)
            env[file_variable(f.name)] = str(target)
            binds.append((str(target), f.mount_path))
    except OSError:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return env, binds, roots


def _file_mode(secret: bool, gid: int | None) -> int:
    if not secret:
        return 0o644
    return 0o600 if gid is None else 0o440


def _write(target: Path, content: bytes, mode: int, root: Path, gid: int | None) -> None:
    """Write a file below ``root``, creating its directories: the workload's group's (0750) when ``gid``
    is given, else traversable (0755) whatever the umask."""
    missing = [d for d in (target.parent, *target.parent.parents) if d != root and root in d.parents
               and not d.exists()]
    for d in reversed(missing):
        d.mkdir()
        os.chown(d, -1, gid if gid is not None else -1, follow_symlinks=False)
        d.chmod(0o750 if gid is not None else 0o755)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out:
        if gid is not None:
            os.fchown(fd, 0, gid)
        os.fchmod(fd, mode)  # O_CREAT's mode does not apply to a file left from an earlier start
        out.write(content)


def _private_dir(path: Path, gid: int | None = None) -> None:
    """Create ``path`` mode 0700 (0750 and the workload's group with ``gid``) — or accept it only if it is
    already a real directory of ours: the shared memory directory is writable by anyone, who could otherwise
    plant a directory or link there first."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise OSError(f"{path} exists and is not a directory of this user's") from None
    if gid is not None:
        os.chown(path, -1, gid, follow_symlinks=False)
    path.chmod(0o700 if gid is None else 0o750)


def _cleanup(prepared: _Prepared) -> None:
    for root in prepared.file_roots:
        shutil.rmtree(root, ignore_errors=True)
    if prepared.cgroup is not None:
        prepared.cgroup.remove()


@functools.cache
def _private_mounts() -> bool:
    """Whether children can get a private mount namespace here (root, and no seccomp or container veto).
    Tried once in a throwaway process, so a replica never fails to start for want of it."""
    if os.geteuid() != 0:
        return False
    code = ("import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
            f"sys.exit(0 if libc.unshare({CLONE_NEWNS}) == 0 and "
            f"libc.mount(b'none', b'/', None, {MS_REC | MS_PRIVATE}, None) == 0 and "
            f"libc.mount(b'/dev/null', b'/dev/null', None, {MS_BIND}, None) == 0 else 1)")
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _child_setup(prepared: _Prepared) -> ChildSetup | None:
    """The code a child runs between fork and exec: join the cgroup, cap its address space without one,
    bind its files at their mount paths in a mount namespace of its own and, with a sandbox, hide what it
    must not see and become its own user (``sandbox.ChildSetup``). None when there is nothing to do.

    A mount path whose directory or file does not exist on this machine is created (an empty file, the
    missing directories) before the bind, on the real file system: mount points must exist, and they stay
    afterwards. The mounts themselves are read-only and visible only to the replica.
    """
    procs_files = prepared.cgroup.procs_files if prepared.cgroup else []
    if not (procs_files or prepared.rlimit_as is not None or prepared.mounts.steps or prepared.mounts.sandbox):
        return None
    return ChildSetup(procs_files, prepared.rlimit_as, prepared.mounts)
