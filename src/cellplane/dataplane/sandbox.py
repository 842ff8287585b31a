"""Workload isolation on a local data plane: a user of its own, a private view of the disk and of ``/proc``.

When the agent runs as root, every workload process (service replica or task run) starts in a mount
namespace of its own, prepared between fork and exec:

- an empty tmpfs (mode 0711) covers the agent's data and cache directories, and every directory on the way
  to something the workload needs that its user could not enter anyway (``/root`` when the interpreter
  lives there); only what it needs is bound back: its artifact tree, its runtime (virtual environment,
  ``node_modules``), the interpreter, read-only, and its run directory (``HOME``, ``TMPDIR``), writable.
  The keys, tokens, database, desired state and other workloads' files are simply not there;
- a fresh procfs with ``hidepid=invisible`` covers ``/proc``: the workload sees only its own user's
  processes, so no other workload's (nor the agent's) ``environ`` or ``cmdline``;
- then it drops root: no supplementary groups, the group and user of its component (allocated once per
  environment/project/component, from a block of 65,536 ids above 2,000,000,000 chosen at random per data
  directory and kept in ``workload-users.json`` there) and ``no_new_privs``. No parent-death signal: it
  would end only the main process, and what a crashed agent leaves is ended by the next one anyway.

Files written for it (configuration files, secret ones in ``/dev/shm``) are root-owned in directories
whose group is the workload's (0750), readable by that group only: another workload cannot read them,
and the workload cannot replace them. The mounts cost one syscall each (a dozen per start); nothing is
copied. Without root none of this is possible: workloads then run as the agent's user, and the agent
says so when it starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import grp
import json
import logging
import mmap
import os
import pwd
import resource
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cellplane.build.isolation import CLONE_NEWNS, MS_BIND, MS_PRIVATE, MS_REC

log = logging.getLogger("cellplane.dataplane")

USERS_FILE = "workload-users.json"
FIRST_ID = 2_000_000_000  # far above any real user or group (and below 2^31: some tools read ids as signed)
BLOCK = 1 << 16  # ids per data directory: one per environment/project/component
BLOCKS = (2**31 - 1 - FIRST_ID) // BLOCK
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
PR_SET_NO_NEW_PRIVS = 38
PROC_OPTIONS = b"hidepid=invisible"  # per-mount procfs options: Linux 5.8 and later
ERROR_BYTES = 4096
CONTROL_PLANE_FILES = ("master.key", "token.key", "admin.token")
HOME, TMP = "home", "tmp"  # in a replica's run directory


@dataclass(frozen=True)
class Sandbox:
    """How one workload is confined: its user and group, and what it may see of the disk."""

    uid: int
    gid: int
    hide: tuple[Path, ...]  # directories it must not see (the agent's data and cache directories)
    reads: tuple[Path, ...]  # what it needs from beneath them or behind directories it cannot enter: read-only

    def note(self) -> str:
        return (f"runs as uid {self.uid} (no groups, no new privileges), private /proc, "
                "the data plane's files hidden")


# -- users -----------------------------------------------------------------------------------------------------


class WorkloadUsers:
    """The user id of each workload identity (``environment/project/component``), kept in a JSON file so that
    it stays the same across agent restarts: files a workload left in its home still belong to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"first": FIRST_ID + secrets.randbelow(BLOCKS) * BLOCK, "ids": {}}
        except (OSError, ValueError) as e:
            raise OSError(f"{self.path} is unreadable ({e}): workload users cannot be allocated") from None
        if not (isinstance(data, dict) and isinstance(data.get("first"), int) and isinstance(data.get("ids"), dict)):
            raise OSError(f"{self.path} is not a workload user table")
        return data

    def uid(self, identity: str) -> int:
        """The id (user and group) of ``identity``: the one it had, or the next free one of this block."""
        with self._lock:
            data = self._load()
            ids: dict[str, int] = data["ids"]  # type: ignore[assignment]
            if identity in ids:
                return int(ids[identity])
            first = int(data["first"])  # type: ignore[call-overload]
            taken = set(ids.values())
            for candidate in range(first, first + BLOCK):
                if candidate not in taken and not _exists(candidate):
                    break
            else:
                raise OSError(f"all {BLOCK} workload user ids of {self.path} are allocated")
            ids[identity] = candidate
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump({"first": first, "ids": ids}, out, indent=1, sort_keys=True)
            tmp.replace(self.path)
            return candidate


def _exists(uid: int) -> bool:
    """Whether a real user or group has this id."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        with contextlib.suppress(KeyError):
            lookup(uid)
            return True
    return False


# -- the agent's side ------------------------------------------------------------------------------------------


class Isolation:
    """Whether workloads can be isolated here, and the sandbox of each."""

    def __init__(self, data_dir: Path, cache_dir: Path) -> None:
        self.users = WorkloadUsers(data_dir / USERS_FILE)
        data_dir = data_dir.resolve()
        self.hide: tuple[Path, ...] = (data_dir, cache_dir.resolve())
        # an agent's data directory inside a control plane's (as `cellplane up` makes them): that one too
        if any((data_dir.parent / name).exists() for name in CONTROL_PLANE_FILES):
            self.hide += (data_dir.parent,)
        self.unavailable: str | None = "not checked yet"

    def check(self) -> str | None:
        """Try it once (in a throwaway process); None when workloads will be isolated, else why not."""
        self.unavailable = probe()
        return self.unavailable

    def note(self, sandbox: Sandbox | None) -> str:
        """What a workload's log says about its isolation."""
        return sandbox.note() if sandbox is not None else f"none: it runs as the agent's user ({self.unavailable})"

    def sandbox(self, identity: str, reads: Iterable[Path]) -> Sandbox | None:
        """The sandbox of a workload that needs ``reads`` (its artifact tree, its runtime); None when
        workloads cannot be isolated here."""
        if self.unavailable is not None:
            return None
        uid = self.users.uid(identity)
        reads = list(reads)
        return Sandbox(uid, uid, self.hide, tuple(dict.fromkeys([*reads, *_venv_homes(reads), *interpreter_paths()])))


@functools.cache
def interpreter_paths() -> tuple[Path, ...]:
    """What any workload may run: the Python Cellplane runs on (applications' virtual environments link to
    it; static sites are served by Cellplane's own code) and the Node.js on PATH."""
    import cellplane

    paths = [Path(sys.base_prefix), Path(sys.prefix), Path(cellplane.__file__).parent.parent]
    node = shutil.which("node")
    if node:
        paths.append(Path(node).resolve().parent.parent)
    return tuple(dict.fromkeys(p.resolve() for p in paths))


def _venv_homes(paths: Iterable[Path]) -> list[Path]:
    """The installation a virtual environment's interpreter links to (``home`` in its ``pyvenv.cfg``)."""
    homes = []
    for path in paths:
        with contextlib.suppress(OSError):
            for line in (path / "pyvenv.cfg").read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    homes.append(Path(value.strip()).resolve().parent)  # .../bin -> its prefix
    return homes


_PROBE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        sys.exit(f"{what}: {os.strerror(ctypes.get_errno())}")
check(libc.unshare(%(newns)d), "no mount namespace")
check(libc.mount(b"none", b"/", None, %(private)d, None), "mounts cannot be made private")
check(libc.mount(b"tmpfs", sys.argv[1].encode(), b"tmpfs", 0, b"mode=0711,size=64k"), "no tmpfs")
check(libc.mount(b"proc", b"/proc", b"proc", %(proc_flags)d, %(proc_options)r), "no private /proc with hidepid")
os.setgroups([])
os.setgid(%(id)d)
os.setuid(%(id)d)
check(libc.prctl(%(nnp)d, 1, 0, 0, 0), "no no_new_privs")
"""


def probe() -> str | None:
    """None when this process can give workloads a private mount namespace, a private /proc with hidepid,
    and a user of their own; else why not. Tried in a throwaway process (about 30 ms), once per agent."""
    if os.geteuid() != 0:
        return f"the agent runs as uid {os.geteuid()}, not root"
    code = _PROBE % {"newns": CLONE_NEWNS, "private": MS_REC | MS_PRIVATE, "proc_flags": MS_NOSUID | MS_NODEV
                     | MS_NOEXEC, "proc_options": PROC_OPTIONS, "id": FIRST_ID, "nnp": PR_SET_NO_NEW_PRIVS}
    with tempfile.TemporaryDirectory(prefix="cellplane-probe-") as where:
        try:
            done = subprocess.run([sys.executable, "-c", code, where], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            return f"the isolation probe could not run ({e})"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"the isolation probe exited with {done.returncode}"])[-1]
    return None


def workspace_env(run_dir: Path) -> dict[str, str]:
    """``HOME`` and ``TMPDIR`` of a sandboxed workload: its own, in its run directory."""
    return {"HOME": str(run_dir / HOME), "TMPDIR": str(run_dir / TMP)}


def make_workspace(run_dir: Path, sandbox: Sandbox) -> None:
    """The run directory (root's, 0711: the workload cannot add, remove or swap anything in it) with the
    workload's own home and temporary directory (0700) in it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o711)
    for name in (HOME, TMP):
        path = run_dir / name
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(f"{path} is not a directory")
        os.chown(path, sandbox.uid, sandbox.gid, follow_symlinks=False)
        path.chmod(0o700)


# -- the mount plan --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One mount: a tmpfs that hides ``path``, or a bind of ``source`` at ``path``."""

    kind: Literal["tmpfs", "read", "write", "file"]  # file: a configuration file, read-only, its mount point made
    path: str
    source: str = ""

    @property
    def depth(self) -> int:
        return len(Path(self.path).parts)


@dataclass(frozen=True)
class Plan:
    """What a child does between fork and exec: its mounts (outermost first), then who it becomes."""

    steps: tuple[Step, ...] = ()
    sandbox: Sandbox | None = None
    cwd: str = ""


def plan(sandbox: Sandbox | None, files: Iterable[tuple[str, str]], writes: Iterable[Path] = (),
         cwd: Path | None = None) -> Plan:
    """The mounts of one replica: without a sandbox only its files (``(written, mount path)`` pairs) bound at
    their mount paths; with one also the hidden directories and what is bound back beneath them."""
    steps = [Step("file", target, source) for source, target in files]
    if sandbox is not None:
        needed = {p.resolve(): kind for kind, paths in (("read", [*sandbox.reads, *([cwd] if cwd else [])]),
                                                         ("write", writes)) for p in paths if p.exists()}
        hides = {p for p in sandbox.hide if p.is_dir()}
        for path in needed:
            blocked = _closed_ancestor(path, hides)
            if blocked is not None:
                hides.add(blocked)
        steps += [Step("tmpfs", str(h)) for h in hides]
        for path, kind in needed.items():
            if _needs_bind(path, kind, hides, needed):
                steps.append(Step(kind, str(path), str(path)))  # type: ignore[arg-type]
    order = {"tmpfs": 0, "read": 1, "write": 1, "file": 2}
    steps.sort(key=lambda s: (s.depth, order[s.kind], s.path))
    return Plan(tuple(steps), sandbox, str(cwd) if cwd is not None else "")


def _closed_ancestor(path: Path, hides: set[Path]) -> Path | None:
    """The outermost directory above ``path`` that a user of its own could not enter (no "others" execute
    bit), unless a hidden directory comes first."""
    for ancestor in reversed(path.parents[:-1]):  # from the top, "/" itself left out
        if ancestor in hides:
            return None
        with contextlib.suppress(OSError):
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                return ancestor
    return None


def _needs_bind(path: Path, kind: str, hides: set[Path], needed: dict[Path, str]) -> bool:
    """A needed path is bound back when a hidden directory covers it and no needed ancestor (bound back
    below that directory, as writable or as read-only) already brings it back."""
    covering = [h for h in hides if h == path or h in path.parents]
    if not covering:
        return False
    deepest = max(len(h.parts) for h in covering)
    return not any(other in path.parents and len(other.parts) > deepest and (other_kind == kind or kind == "read")
                   for other, other_kind in needed.items())


# -- the child's side ------------------------------------------------------------------------------------------


class ChildSetup:
    """The code a child runs between fork and exec (``preexec_fn``). Its failure is written to memory shared
    with the parent (``subprocess`` reports only "Exception occurred in preexec_fn"), for ``failure()``."""

    def __init__(self, procs_files: list[str], rlimit_as: int | None, plan: Plan) -> None:
        self.procs_files = procs_files
        self.rlimit_as = rlimit_as
        self.plan = plan
        self._error = mmap.mmap(-1, ERROR_BYTES)  # MAP_SHARED: the child's write is seen here
        self._libc = ctypes.CDLL(None, use_errno=True)

    def failure(self) -> str:
        """Why the child could not be set up ("" when it could)."""
        return self._error[:].split(b"\0", 1)[0].decode(errors="replace")

    def __call__(self) -> None:
        try:
            self._setup()
        except BaseException as e:
            message = (str(e) or type(e).__name__).encode()[:ERROR_BYTES - 1]
            self._error[:len(message) + 1] = message + b"\0"
            raise

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    def _setup(self) -> None:
        pid = str(os.getpid()).encode()
        for path in self.procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        if self.rlimit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.rlimit_as, self.rlimit_as))
        if self.plan.steps or self.plan.sandbox is not None:
            self._mount()
        if self.plan.sandbox is not None:
            self._become(self.plan.sandbox)

    def _mount(self) -> None:
        libc, steps = self._libc, self.plan.steps
        self._check(libc.unshare(CLONE_NEWNS), "unshare")
        self._check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
        # the sources, opened in this namespace before any tmpfs hides their paths
        fds = {s.source: os.open(s.source, os.O_PATH) for s in steps if s.source}
        try:
            for s in steps:
                if s.kind == "tmpfs":
                    if os.path.isdir(s.path):  # not there: inside an outer tmpfs, with nothing bound back above it
                        self._check(libc.mount(b"tmpfs", s.path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                                               b"mode=0711,size=1m"), f"hiding {s.path}")
                    continue
                fd = fds[s.source]
                _mount_point(s.path, os.path.isdir(f"/proc/self/fd/{fd}"), 0o755 if s.kind == "file" else 0o711)
                self._check(libc.mount(f"/proc/self/fd/{fd}".encode(), s.path.encode(), None, MS_BIND, None),
                            f"binding {s.path}")
                if s.kind != "write":
                    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
                    if os.statvfs(s.path).f_flag & os.ST_NOEXEC:
                        flags |= MS_NOEXEC
                    self._check(libc.mount(b"none", s.path.encode(), None, flags, None), f"making {s.path} read-only")
        finally:
            for fd in fds.values():
                os.close(fd)
        if self.plan.sandbox is not None:
            self._check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, PROC_OPTIONS),
                        "mounting a private /proc")

    def _become(self, sandbox: Sandbox) -> None:
        os.setgroups([])
        os.setgid(sandbox.gid)
        os.setuid(sandbox.uid)
        self._check(self._libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")
        if self.plan.cwd:
            try:
                os.chdir(self.plan.cwd)  # again, in this view of the disk and as this user
            except OSError as e:
                raise OSError(f"uid {sandbox.uid} cannot enter its working directory {self.plan.cwd}: "
                              f"{e.strerror}") from None


def _mount_point(path: str, directory: bool, mode: int) -> None:
    """Make the mount point and its missing directories (``mode``): on the real file system for a
    configuration file's path (they stay), inside a tmpfs for what is bound back beneath a hidden directory
    (0711: traversable, not listable)."""
    parent = os.path.dirname(path)
    missing = []
    while parent and not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for d in reversed(missing):
        os.mkdir(d, mode)
        os.chmod(d, mode)  # not narrowed by the umask
    if os.path.lexists(path):
        return
    if directory:
        os.mkdir(path, 0o711)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
