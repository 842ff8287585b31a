"""What a crashed agent leaves behind, and the sweep that ends it when the next agent starts.

An agent killed with SIGKILL (or by the OOM killer, or a power cut of its container) cannot stop its replicas:
they are re-parented to init and go on serving the old release with the old configuration and secrets, while the
next agent starts a second set. So every supervised replica (a service replica or a task run) has a record in
``<data-dir>/replicas/``, written by the supervisor: its key, its identity (``replicaid.ReplicaId``: which deployment,
release and replica or task run it is), its cgroup directories and the roots of the files
written for it (secret ones in ``/dev/shm``) once they exist, and the pid and create time of its current process.
The record is removed when supervision ends; an agent that stops normally leaves none.

At start, holding the data directory's lock (no live agent owns these any more), ``sweep``:

1. kills what each record names that still runs: the recorded process, if that pid still has the recorded create
   time (a reused pid is never touched), its descendants, and every process of its session (a replica runs in a
   session of its own) created after it, even those that left its process group or lost their parent;
2. kills every process in this agent's cgroups (those recorded, and every cgroup named for this data directory
   under the agent's cgroup), which also catches daemons that left the session, and removes the cgroups;
3. removes the recorded file roots.

Processes are frozen before they are killed (``processes.freeze_and_kill``), so none can fork a replacement. The
new agent then starts its replicas afresh: nothing is adopted (an adopted process's output pipes and exit status
belong to the dead agent). A leftover that held a literal port has let go of it before any new replica starts.

Cost: one small file written (not synced: it only has to survive the agent's process, not the machine) per replica
start and one removed per stop; at start, one pass over the process table per record found.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cellplane.dataplane.limits import Cgroup, CgroupManager
from cellplane.dataplane.replicaid import ReplicaId
from cellplane.processes import alive, freeze_and_kill, same_process, session_members

log = logging.getLogger("cellplane.dataplane")

SHM = Path("/dev/shm")  # noqa: S108  (where the supervisor writes secret files)
KILL_ROUNDS = 5  # a process may fork between being listed and being frozen: list and kill again


class Ledger:
    """The records of the replicas this agent supervises, one JSON file each in ``directory``.

    A failure to write a record is logged and never stops a replica: the cgroup sweep still covers it where
    cgroups are used."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._entries: dict[str, dict[str, Any]] = {}
        self._failed = False

    def record(self, key: str, cgroup_dirs: list[Path], file_roots: list[Path],
               replica: ReplicaId | None = None) -> None:
        """A replica's cgroup and files exist (no process yet)."""
        entry = {"key": key, "replica": replica.to_json() if replica is not None else None,
                 "cgroups": [str(d) for d in cgroup_dirs], "files": [str(f) for f in file_roots], "run": None}
        self._entries[key] = entry
        self._write(key, entry)

    def run_started(self, key: str, pid: int) -> None:
        """A process of the replica started (its session and process group are ``pid``'s own)."""
        entry = self._entries.get(key)
        if entry is None:
            return
        try:
            created = psutil.Process(pid).create_time()
        except psutil.Error:  # gone already: nothing of it to find later
            return
        entry["run"] = {"pid": pid, "created": created}
        self._write(key, entry)

    def forget(self, key: str) -> None:
        """The replica's processes are gone, its files and cgroup removed."""
        if self._entries.pop(key, None) is not None:
            with contextlib.suppress(OSError):
                self._path(key).unlink()

    def left(self) -> list[dict[str, Any]]:
        """The records in the directory: at start, those a predecessor left (unreadable ones are skipped)."""
        found = []
        with contextlib.suppress(OSError):
            for path in sorted(self.directory.glob("*.json")):
                try:
                    entry = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    found.append(entry)
        return found

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            for path in self.directory.iterdir():
                path.unlink()

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")

    def _write(self, key: str, entry: dict[str, Any]) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if not self._failed:
                self._failed = True
                log.warning("cannot record replica %s in %s (%s): after a crash of this agent its processes may "
                            "be left running", key, self.directory, e.strerror or e)


@dataclass
class Swept:
    """What a sweep found and ended."""

    # the identities of the records found (those that have one): all were running at the crash
    recorded: list[ReplicaId] = field(default_factory=list)
    replicas: list[str] = field(default_factory=list)  # keys of the replicas with live processes
    processes: int = 0
    cgroups: int = 0
    file_roots: int = 0

    def __bool__(self) -> bool:
        return bool(self.replicas or self.processes or self.cgroups or self.file_roots)

    def describe(self) -> str:
        keys = ", ".join(self.replicas[:10]) + (f" and {len(self.replicas) - 10} more" if len(self.replicas) > 10
                                                else "")
        return (f"stopped {self.processes} process(es) of {len(self.replicas)} replica(s) a previous agent left "
                f"running{' (' + keys + ')' if keys else ''}; removed {self.cgroups} cgroup(s) and "
                f"{self.file_roots} file directory(ies)")


def sweep(ledger: Ledger, cgroups: CgroupManager, data_dir: Path) -> Swept:
    """End everything the records in ``ledger`` and this namespace's cgroups name (see the module's docstring).
    Call it only while holding the data directory's lock, before any replica starts; it blocks (seconds at most)."""
    swept = Swept()
    entries = ledger.left()
    swept.recorded = [replica for entry in entries if (replica := ReplicaId.from_json(entry.get("replica")))]
    for entry in entries:
        procs = _processes_of(entry.get("run"))
        if procs:
            swept.replicas.append(entry["key"])
            swept.processes += _kill(lambda run=entry.get("run"): _processes_of(run))
    groups = {tuple(g.dirs): g for g in cgroups.leftovers()}
    for entry in entries:
        dirs = [Path(d) for d in entry.get("cgroups") or [] if _is_our_cgroup(Path(d), cgroups.prefix)]
        if dirs and tuple(dirs) not in groups:
            groups[tuple(dirs)] = Cgroup(cgroups.version or 1, dirs)
    for group in groups.values():
        killed = _kill(lambda g=group: _cgroup_processes(g))
        if killed:
            swept.processes += killed
            swept.replicas.append(group.dirs[0].name)
        group.remove()
        swept.cgroups += 1
    for entry in entries:
        for root in entry.get("files") or []:
            if _is_our_file_root(Path(root), data_dir):
                shutil.rmtree(root, ignore_errors=True)
                swept.file_roots += 1
    ledger.clear()
    return swept


def _processes_of(run: Any) -> list[psutil.Process]:
    """The live processes of a recorded run: the process itself (if its pid was not reused), its descendants and
    its session's members created after it."""
    if not isinstance(run, dict) or not isinstance(run.get("pid"), int) or not isinstance(run.get("created"),
                                                                                       (int, float)):
        return []
    pid, created = run["pid"], float(run["created"])
    procs: dict[int, psutil.Process] = {}
    leader = same_process(pid, created)
    if leader is not None:
        procs[pid] = leader
        with contextlib.suppress(psutil.Error):
            procs.update((p.pid, p) for p in leader.children(recursive=True))
    # The session id is the recorded pid: a new session can only get that id once the old session is empty and the
    # pid came round again, and its processes would then be younger than its leader, which is gone or another one.
    if leader is not None or not _pid_in_use(pid):
        procs.update((p.pid, p) for p in session_members(pid, created))
    procs.pop(os.getpid(), None)
    return [p for p in procs.values() if alive(p)]


def _pid_in_use(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return alive(psutil.Process(pid))
    return False


def _cgroup_processes(group: Cgroup) -> list[psutil.Process]:
    procs = []
    for pid in group.pids() - {os.getpid()}:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    return procs


def _kill(listing: Any) -> int:
    """Freeze and kill what ``listing()`` returns until it returns nothing alive; how many processes were killed."""
    killed: set[int] = set()
    for _ in range(KILL_ROUNDS):
        procs = [p for p in listing() if alive(p)]
        if not procs:
            break
        killed.update(p.pid for p in procs)
        freeze_and_kill(procs)
    return len(killed)


def _is_our_cgroup(path: Path, prefix: str) -> bool:
    """A recorded cgroup directory is only trusted when it is one: absolute, named like this namespace's."""
    return path.is_absolute() and path.name.startswith(prefix) and (path / "cgroup.procs").is_file()


def _is_our_file_root(path: Path, data_dir: Path) -> bool:
    """A recorded file root is only removed when it is where the supervisor writes them (a ``cellplane-``
    directory in shared memory or the temporary directory, or inside the data directory) and is a directory of
    this user's, not a link."""
    if not path.is_absolute() or ".." in path.parts:
        return False
    in_memory = path.parent in (SHM, Path(tempfile.gettempdir())) and path.name.startswith("cellplane-")
    if not (in_memory or path.is_relative_to(data_dir)):
        return False
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
