"""Resource limits of a replica: Kubernetes-style quantities, and the cgroup that enforces them.

A replica gets a cgroup of its own when this process may create cgroups: it carries the memory limit and
the CPU quota, and it lists every process the replica started, even those that daemonised away from its
process tree, so stopping the replica can kill them all. The cgroup is created *below the agent's own
cgroup*, never at the root of the hierarchy, so the replicas stay inside whatever limits the agent itself
runs under (a systemd unit, a container).

cgroup v2 is used when its hierarchy offers the memory controller and the agent's cgroup can delegate it
(the root cgroup always can; a non-root cgroup that holds processes — the agent's own — cannot, by the
v2 "no internal processes" rule). Otherwise the v1 ``memory`` and ``cpu`` hierarchies are used when
mounted. Without either the supervisor falls back to ``RLIMIT_AS`` for memory (which counts address space,
not resident memory: runtimes that reserve large virtual ranges up front, like V8, may fail to start under
a tight limit) and does not limit CPU. Nothing here ever fails a start: a cgroup that cannot be set up is
reported, and the fallback is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

log = logging.getLogger("cellplane.dataplane")

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE](?P<exp>[+-]?[0-9]+))?"
                       r"\s*(?P<unit>[A-Za-z]*)\s*$")
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000  # the kernel refuses smaller quotas


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None
    cpu_millis: int | None = None  # 500 = half a core


def _number(q: str, what: str) -> tuple[Decimal, str]:
    match = _QUANTITY.match(q)
    if not match:
        raise ValueError(f"{q!r} is not a valid {what} quantity")
    try:
        value = Decimal(match["number"]) * (Decimal(10) ** int(match["exp"] or 0))
    except InvalidOperation:
        raise ValueError(f"{q!r} is not a valid {what} quantity") from None
    return value, match["unit"]


def parse_memory(q: str) -> int:
    """``"256Mi"``, ``"1Gi"``, ``"512M"``, ``"1000"`` -> bytes (rounded up to a whole byte)."""
    value, unit = _number(str(q), "memory")
    factor = _BINARY.get(unit) or _DECIMAL.get(unit)
    if factor is None:
        raise ValueError(f"{q!r}: unknown memory unit {unit!r} (use Ki, Mi, Gi, Ti, k, M, G, T or none)")
    return int((value * factor).to_integral_value(rounding="ROUND_CEILING"))


def parse_cpu(q: str) -> int:
    """``"500m"`` -> 500, ``"2"`` -> 2000, ``"1.5"`` -> 1500: thousandths of a core (rounded up)."""
    value, unit = _number(str(q), "cpu")
    if unit not in ("", "m"):
        raise ValueError(f"{q!r}: unknown cpu unit {unit!r} (use cores, like 1.5, or millicores, like 500m)")
    millis = value if unit == "m" else value * 1000
    return int(millis.to_integral_value(rounding="ROUND_CEILING"))


def describe(limits: Limits) -> str:
    """``memory 64 MiB, cpu 500m``: how limits read in status messages."""
    parts = []
    if limits.memory_bytes is not None:
        parts.append(f"memory {mib(limits.memory_bytes)}")
    if limits.cpu_millis is not None:
        parts.append(f"cpu {limits.cpu_millis}m")
    return ", ".join(parts)


def mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


@dataclass(frozen=True)
class _Mount:
    version: int  # 1 or 2
    mountpoint: Path
    root: str  # the cgroup path the mount shows at its mountpoint
    options: frozenset[str]


class Cgroup:
    """The cgroup of one replica: one directory under v2, a memory and a cpu directory under v1."""

    def __init__(self, version: int, dirs: list[Path]) -> None:
        self.version = version
        self.dirs = dirs

    @property
    def procs_files(self) -> list[str]:
        """The files a child writes its pid to (before exec) to join this cgroup everywhere."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        """Every process in the cgroup, including those that left the replica's process tree."""
        pids: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in (d / "cgroup.procs").read_text().split())
        return pids

    def oom_kills(self) -> int:
        """How many processes the kernel has killed in this cgroup for exceeding its memory limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.dirs[0] / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        """Remove the directories; waits briefly for the kernel to let go of processes that just died."""
        for d in self.dirs:
            delay, waited = 0.005, 0.0  # the kernel usually lets go within milliseconds: look again soon
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if waited >= 1.0:
                        log.warning("cgroup %s could not be removed: %s", d, e)
                        break
                    time.sleep(delay)
                    waited += delay
                    delay = min(delay * 2, 0.1)


class CgroupManager:
    """Finds a cgroup hierarchy this process may delegate to, and creates one cgroup per replica in it."""

    def __init__(self, proc: Path = Path("/proc/self"), namespace: str = "") -> None:
        self.namespace = namespace  # tells the cgroups of two agents under one parent apart (their data dirs)
        self._proc = proc
        self.version: int | None = None
        self.reason = ""  # why cgroups are not available
        self._parents: dict[str, Path] = {}  # controller -> the agent's own cgroup directory
        self._discover()

    @property
    def available(self) -> bool:
        return self.version is not None

    def _discover(self) -> None:
        try:
            mounts = _cgroup_mounts((self._proc / "mountinfo").read_text())
            membership = _membership((self._proc / "cgroup").read_text())
        except OSError as e:
            self.reason = f"cgroups are not readable ({e.strerror or e})"
            return
        reasons = []
        for mount in mounts:
            if mount.version == 2 and "" in membership:
                parent = _inside(mount, membership[""])
                why = "its cgroup is not visible" if parent is None else _v2_refusal(parent)
                if parent is not None and why is None:
                    self.version, self._parents = 2, {"memory": parent}
                    return
                reasons.append(f"cgroup v2 at {mount.mountpoint}: {why}")
        v1: dict[str, Path] = {}
        for controller in ("memory", "cpu"):
            for mount in mounts:
                if mount.version == 1 and controller in mount.options and controller in membership:
                    parent = _inside(mount, membership[controller])
                    if parent is not None and os.access(parent, os.W_OK):
                        v1[controller] = parent
                        break
        if "memory" in v1:
            self.version, self._parents = 1, v1
            return
        reasons.append("no writable cgroup v1 memory hierarchy")
        self.reason = "; ".join(reasons)

    def describe(self) -> str:
        if self.version is None:
            return f"cgroups unavailable: {self.reason}"
        return f"cgroup v{self.version}"

    def create(self, key: str, limits: Limits) -> Cgroup:
        """Create (or reuse) the cgroup of the replica ``key`` and set its limits; raises OSError."""
        if self.version is None:
            raise OSError(f"cgroups unavailable: {self.reason}")
        # Two agents on one machine run the same release keys (a release id is its content's digest): without the
        # namespace, one stopping its replica would kill the other's processes in their shared cgroup. The name starts
        # with the namespace's own prefix, so that ``leftovers`` finds every cgroup of this agent's predecessor.
        name = self.prefix + hashlib.sha256(f"{self.namespace}\0{key}".encode()).hexdigest()[:16]
        dirs = []
        for parent in self._parents.values():
            (parent / name).mkdir(exist_ok=True)
            dirs.append(parent / name)
        group = Cgroup(self.version, dirs)
        try:
            self._apply(group, limits)
        except OSError:
            group.remove()
            raise
        return group

    @property
    def prefix(self) -> str:
        """How the names of this namespace's cgroups begin: ``cellplane-<8 hex digits of the namespace>-``."""
        return "cellplane-" + hashlib.sha256(self.namespace.encode()).hexdigest()[:8] + "-"

    def leftovers(self) -> list[Cgroup]:
        """Every cgroup of this namespace under the agent's own cgroups: at start, those a crashed predecessor left
        (an agent restarted in another cgroup finds its predecessor's through their records instead)."""
        if self.version is None:
            return []
        found: dict[str, list[Path]] = {}
        for parent in self._parents.values():
            with contextlib.suppress(OSError):
                for d in parent.iterdir():
                    if d.name.startswith(self.prefix) and d.is_dir():
                        found.setdefault(d.name, []).append(d)
        return [Cgroup(self.version, dirs) for dirs in found.values()]

    def _apply(self, group: Cgroup, limits: Limits) -> None:
        memory = group.dirs[0]
        cpu = group.dirs[-1] if self.version == 2 or "cpu" in self._parents else None
        if self.version == 2:
            if limits.memory_bytes is not None:
                (memory / "memory.max").write_text(str(limits.memory_bytes))
                with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                    (memory / "memory.swap.max").write_text("0")
            if limits.cpu_millis is not None and cpu is not None and (cpu / "cpu.max").exists():
                (cpu / "cpu.max").write_text(f"{_quota(limits.cpu_millis)} {CPU_PERIOD_US}")
            return
        if limits.memory_bytes is not None:
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            with contextlib.suppress(OSError):  # without it a limited process may swap instead of being stopped
                (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
        if limits.cpu_millis is not None and cpu is not None:
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(_quota(limits.cpu_millis)))

    def cpu_limited(self) -> bool:
        """Whether the cgroups this manager creates can carry a CPU quota."""
        return self.version == 2 or "cpu" in self._parents


def _v2_refusal(parent: Path) -> str | None:
    """Why the v2 cgroup ``parent`` cannot hold replica cgroups with a memory limit, or None when it can."""
    try:
        controllers = (parent / "cgroup.controllers").read_text().split()
        if "memory" not in controllers:
            return "the memory controller is not available"
        if not os.access(parent, os.W_OK):
            return f"{parent} is not writable"
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        wanted = [c for c in ("memory", "cpu") if c in controllers and c not in enabled]
        if wanted:
            # Refused (EBUSY) in a non-root cgroup that holds processes, like the agent's own usually does.
            (parent / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
    except OSError as e:
        return f"cannot delegate controllers from {parent} ({e.strerror or e})"
    return None


def _quota(cpu_millis: int) -> int:
    return max(MIN_CPU_QUOTA_US, cpu_millis * CPU_PERIOD_US // 1000)


def _cgroup_mounts(mountinfo: str) -> list[_Mount]:
    """cgroup mounts from /proc/self/mountinfo (the root field matters inside containers)."""
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = fields[4].replace("\\040", " ")
        mounts.append(_Mount(2 if rest[0] == "cgroup2" else 1, Path(mountpoint), fields[3],
                             frozenset(rest[2].split(","))))
    return mounts


def _membership(text: str) -> dict[str, str]:
    """controller -> this process's cgroup path, from /proc/self/cgroup ("" is the v2 hierarchy)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
        for controller in controllers.split(","):
            if controller:
                out[controller] = path
    return out


def _inside(mount: _Mount, path: str) -> Path | None:
    """The directory of cgroup ``path`` under ``mount``, or None when the mount does not show it."""
    root = mount.root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None
    directory = mount.mountpoint / path[len(root):].lstrip("/")
    return directory if directory.is_dir() else None
