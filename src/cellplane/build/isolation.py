"""Hide the control plane's data directory from a build.

The runner moves itself into a private mount namespace and mounts an empty tmpfs over the data
directory, then binds back only what the build needs: its own build directory, the dependency cache
and the OSV database when they live there. A build therefore cannot read the key ring, the token key,
the admin token, the SQLite database, or another build's source. The control plane itself is not
affected: the mounts exist only in the build's namespace. Creating a mount namespace needs root (or
CAP_SYS_ADMIN); elsewhere the build runs unisolated and its log says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def hide_data_dir(data_dir: Path, keep: list[Path]) -> str | None:
    """Isolate this process (and its future children). Returns None when done, else why it is not possible;
    raises OSError when it failed half-way (the build must not run with a broken view of the disk)."""
    if not data_dir.is_dir():
        return f"{data_dir} is not a directory"
    if os.geteuid() != 0:
        return "builds are isolated from the data directory only when the control plane runs as root"
    inside = [p for p in keep if p.exists() and (p == data_dir or data_dir in p.parents)]
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        return f"no mount namespace for the build ({os.strerror(ctypes.get_errno())})"
    fds: list[int] = []
    try:
        fds = [os.open(p, os.O_PATH) for p in inside]  # reachable after the tmpfs hides their paths
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
        _check(libc.mount(b"tmpfs", str(data_dir).encode(), b"tmpfs", 0, b"mode=0711,size=1m"), "tmpfs")
        for path, fd in zip(inside, fds, strict=True):
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            _check(libc.mount(f"/proc/self/fd/{fd}".encode(), str(path).encode(), None, MS_BIND | MS_REC, None),
                   f"binding {path}")
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    return None
