"""The planes' data directories: only the user the plane runs as may enter them.

A data directory holds the key ring, the token key, the agent's key, the admin token, the database (and its WAL),
build sources and spooled telemetry. It is mode 0700 and its files 0600, whatever created it: ``up``,
``controlplane serve``, ``dataplane run`` or an operator's ``mkdir``. ``make_private`` runs at each plane's start: it
creates the directory so, or checks the one there: a directory of another user (or not a directory) is refused,
a wider mode is tightened with a log line saying so, and so are the files directly in it and in ``spool/`` (the
keys, the token, the database and its WAL and SHM, ``desired.json``, the spool files), which an older version may
have left readable. Deeper trees are not walked (a build cache holds many thousands of files): they are behind the
0700 directory, and the planes create everything under ``PRIVATE_UMASK`` (``use_private_umask``), which their child
processes inherit.

Cost: one ``lstat`` per entry directly in the directory and in ``spool/``, at start only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from cellplane.errors import CellplaneError

log = logging.getLogger("cellplane")

PRIVATE_UMASK = 0o077  # files 0600, directories 0700
SUBDIRS = ("spool",)  # whose files are tightened too


def use_private_umask() -> None:
    """Every file this process (and its children) creates from now on is its owner's alone."""
    os.umask(PRIVATE_UMASK)


def make_private(path: Path, what: str) -> None:
    """Create ``path`` (mode 0700, with its missing parents) or make the existing one private; ``what`` names it in
    messages ("the control plane's data directory"). Raises CellplaneError (code ``data-dir``) when it cannot."""
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise CellplaneError(f"{what} {path} cannot be created: {e.strerror or e}", code="data-dir") from None
    try:
        st = os.stat(path)
    except OSError as e:
        raise CellplaneError(f"{what} {path} cannot be read: {e.strerror or e}", code="data-dir") from None
    if not stat.S_ISDIR(st.st_mode):
        raise CellplaneError(f"{what} {path} is not a directory", code="data-dir")
    if st.st_uid != os.geteuid():
        raise CellplaneError(f"{what} {path} belongs to user id {st.st_uid}, not to this process's ({os.geteuid()}): "
                             "its owner could read or replace the keys in it; give it to this user (chown) or use "
                             "another directory", code="data-dir")
    _tighten(path.resolve(), st.st_mode, 0o700, what)
    for directory in (path, *(path / name for name in SUBDIRS)):
        with contextlib.suppress(OSError):
            for entry in directory.iterdir():
                with contextlib.suppress(OSError):
                    st = entry.lstat()  # never through a link
                    if stat.S_ISREG(st.st_mode):
                        _tighten(entry, st.st_mode, 0o600 | (st.st_mode & 0o100), f"{what}: the file")
                    elif stat.S_ISDIR(st.st_mode) and entry.name in SUBDIRS:
                        _tighten(entry, st.st_mode, 0o700, f"{what}: the directory")


def _tighten(path: Path, mode: int, private: int, what: str) -> None:
    """chmod ``path`` to ``private`` when group or others have any access; says so."""
    if mode & 0o077 == 0:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # the entry checked, not a link put there since
        try:
            os.fchmod(fd, private)
        finally:
            os.close(fd)
    except OSError as e:
        raise CellplaneError(f"{what} {path} is mode {stat.S_IMODE(mode):04o} (other users can read it) and cannot be "
                             f"made private: {e.strerror or e}", code="data-dir") from None
    log.warning("%s %s was mode %04o (other users could read it): made it %04o", what, path, stat.S_IMODE(mode),
                private)
