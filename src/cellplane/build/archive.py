"""Packing trees into gzip'd tarballs, and unpacking untrusted ones safely.

:func:`pack` is reproducible by default: the same tree gives the same bytes (artifacts are
addressed by the sha256 of those bytes), whatever the files' times, owners or umask.

:func:`unpack` treats the archive as hostile. It reads the whole archive once and checks every
member (names, types, link targets, sizes, counts) against a model of the tree it would create,
and only when all of them pass does it read the archive a second time and write, through
``tarfile``'s ``data`` filter as a second line of defence. A bad archive writes nothing.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import io
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cellplane.errors import FieldProblem, InvalidError

MiB = 1024 * 1024
GiB = 1024 * MiB

DEFAULT_EXCLUDES: tuple[str, ...] = (".git", "node_modules", ".venv", "venv", "__pycache__", "*.pyc", ".DS_Store")
"""Glob patterns matched against every component of a path: a match anywhere excludes it."""

_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = tarfile.BLOCKSIZE
_MAX_LINK_HOPS = 40  # as the Linux kernel: more symlinks than this in one resolution is a loop
# Bytes the tar stream may hold besides its members' data: headers, padding, pax records and read-ahead.
_METADATA_SLACK = 1 * MiB
_METADATA_PER_MEMBER = 8 * 1024
# Bytes of one path component: Linux's and macOS's NAME_MAX. Longer, and creating the file fails (ENAMETOOLONG).
NAME_MAX = 255
# Bytes of a member's path or link target: Linux's PATH_MAX (4096) less 1024 left for the directory the tree is
# unpacked in (here, in a build, on a data plane), so that no path handed to the kernel is too long for it.
PATH_MAX = 3072
_SHOWN = 80  # characters of a member's name (or link target) an error message quotes


# --------------------------------------------------------------------------------------------- pack


def exclude_matching(patterns: Iterable[str] = DEFAULT_EXCLUDES) -> Callable[[str], bool]:
    """A predicate for :func:`pack`'s ``exclude``: true when any path component matches a pattern."""
    frozen = tuple(patterns)

    def excluded(relpath: str) -> bool:
        return any(fnmatch.fnmatchcase(part, pattern) for part in relpath.split("/") for pattern in frozen)

    return excluded


default_exclude: Callable[[str], bool] = exclude_matching(DEFAULT_EXCLUDES)
"""``exclude_matching(DEFAULT_EXCLUDES)``: version control, dependency and cache directories."""


def pack(root: Path, dest: Path, *, exclude: Callable[[str], bool] | None = None, reproducible: bool = True) -> None:
    """Write ``dest`` as a .tar.gz of the tree under ``root``.

    Members are named relative to ``root`` (POSIX, no leading ``./``), in sorted tree order, and
    are directories, regular files and symlinks only (symlinks are stored, not followed; other
    file types are skipped; hard links become regular files). ``exclude`` receives each relative
    path and skips it (and, for a directory, all beneath it) when it returns true. With
    ``reproducible`` times, owners and modes are normalised so that equal trees give equal bytes.
    ``dest`` is written atomically; if it lies under ``root`` it is never packed into itself.
    """
    root = Path(root)
    dest = Path(dest)
    if not root.is_dir():
        raise NotADirectoryError(f"cannot pack {root}: not a directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    skip = {_real(tmp), _real(dest)}
    try:
        with os.fdopen(fd, "wb") as raw:
            _write_tarball(root, raw, exclude, reproducible, skip)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _write_tarball(root: Path, raw: IO[bytes], exclude: Callable[[str], bool] | None, reproducible: bool,
                   skip: set[str]) -> None:
    """Stream the tar of ``root`` through gzip into ``raw`` (gzip header without name or time)."""
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relpath, path in _walk(root, exclude):
            if _real(path) in skip and not path.is_symlink():
                continue
            info = _tarinfo(path, relpath, reproducible)
            if info is None:
                continue
            if info.isreg():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)


def _walk(root: Path, exclude: Callable[[str], bool] | None, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """Yield ``(relative POSIX path, path)`` depth-first, entries of each directory sorted by name."""
    directory = root / prefix if prefix else root
    for name in sorted(os.listdir(directory)):
        relpath = f"{prefix}/{name}" if prefix else name
        if exclude is not None and exclude(relpath):
            continue
        path = directory / name
        yield relpath, path
        if path.is_dir() and not path.is_symlink():
            yield from _walk(root, exclude, relpath)


def _tarinfo(path: Path, relpath: str, reproducible: bool) -> tarfile.TarInfo | None:
    """The header for one entry, or None for file types an artifact never holds (sockets, fifos, devices)."""
    st = path.lstat()
    info = tarfile.TarInfo(relpath)
    if stat.S_ISDIR(st.st_mode):
        info.type, info.size = tarfile.DIRTYPE, 0
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.size, info.linkname = tarfile.SYMTYPE, 0, os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    else:
        return None
    if reproducible:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        info.mode = _normal_mode(info, st.st_mode)
    else:
        info.mtime, info.uid, info.gid = int(st.st_mtime), st.st_uid, st.st_gid
        info.mode = stat.S_IMODE(st.st_mode)
    return info


def _normal_mode(info: tarfile.TarInfo, mode: int) -> int:
    if info.issym():
        return 0o777
    if info.isdir() or mode & 0o111:
        return 0o755
    return 0o644


# ------------------------------------------------------------------------------------------- unpack


@dataclass(frozen=True)
class UploadLimits:
    """How big an archive :func:`unpack` accepts."""

    max_compressed: int = 100 * MiB  # bytes of the .tar.gz file itself
    max_unpacked: int = 1 * GiB  # total declared size of the regular files inside it
    max_members: int = 50_000  # entries of every kind


def _invalid(message: str, problem: str | None = None) -> InvalidError:
    return InvalidError(message, [FieldProblem("archive", problem or message)])


def _shown(name: str) -> str:
    """``name`` quoted for a message; a long one is cut (an error names the member, not kilobytes of it)."""
    if len(name) <= _SHOWN:
        return repr(name)
    return f"{name[:_SHOWN]!r}... ({len(name)} characters)"


def _member_error(name: str, problem: str) -> InvalidError:
    return _invalid(f"archive member {_shown(name)} {problem}", f"member {_shown(name)} {problem}")


def _check_length(name: str, path: str, what: str) -> None:
    """Refuse a path (a member's name, or a link's target) the file system would refuse with ENAMETOOLONG: a
    component over ``NAME_MAX`` bytes, or the whole over ``PATH_MAX``; counted in the bytes it is written as."""
    try:
        size = len(os.fsencode(path))
        longest = max((len(os.fsencode(part)) for part in path.split("/")), default=0)
    except UnicodeEncodeError:
        raise _member_error(name, f"has {what} that is not valid text") from None
    if longest > NAME_MAX:
        raise _member_error(name, f"has {what} with a component of {longest} bytes (at most {NAME_MAX})")
    if size > PATH_MAX:
        raise _member_error(name, f"has {what} of {size} bytes (at most {PATH_MAX})")


@dataclass(frozen=True)
class _Entry:
    """What one validated member will create, keyed by its normalised path."""

    kind: str  # "dir", "file", "symlink" or "hardlink"
    link: str = ""  # symlink: target as written; hardlink: normalised path of the file it links to


@dataclass
class _TreeModel:
    """The tree the archive would create, built member by member while checking each one."""

    limits: UploadLimits
    entries: dict[str, _Entry] = field(default_factory=dict)
    members: list[tuple[str, bytes, int, str]] = field(default_factory=list)  # (name, type, size, linkname)
    unpacked: int = 0
    data_budget: int = 0  # padded data bytes of the members seen so far, for the stream's byte cap

    def add(self, member: tarfile.TarInfo) -> None:
        """Check ``member`` against the limits and everything before it, and record it."""
        self.members.append((member.name, member.type, member.size, member.linkname))
        if len(self.members) > self.limits.max_members:
            raise _invalid(f"the archive has more than {self.limits.max_members} members")
        parts = _member_parts(member)
        kind = _member_kind(member)
        if member.isreg():
            self.unpacked += member.size
            self.data_budget += -(-member.size // _BLOCK) * _BLOCK
            if self.unpacked > self.limits.max_unpacked:
                raise _invalid(f"the archive unpacks to more than {self.limits.max_unpacked} bytes "
                               f"(at member {member.name!r})")
        if not parts:
            if kind != "dir":
                raise _member_error(member.name, "names the top of the tree but is not a directory")
            return
        self._check_parents(member.name, parts)
        key = "/".join(parts)
        entry = self._entry(member, kind, key)
        previous = self.entries.get(key)
        if previous is not None and not (previous.kind == "dir" and kind == "dir"):
            raise _member_error(member.name, "duplicates an earlier member")
        self.entries[key] = entry

    def _check_parents(self, name: str, parts: list[str]) -> None:
        """Every parent must be a directory (explicit or implied), never a symlink or a file."""
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            existing = self.entries.get(prefix)
            if existing is None:
                self.entries[prefix] = _Entry("dir")
            elif existing.kind == "symlink":
                raise _member_error(name, f"goes through the symlink {prefix!r}")
            elif existing.kind != "dir":
                raise _member_error(name, f"goes through the file {prefix!r}")

    def _entry(self, member: tarfile.TarInfo, kind: str, key: str) -> _Entry:
        if kind == "symlink":
            if not member.linkname or "\x00" in member.linkname:
                raise _member_error(member.name, "is a symlink without a valid target")
            if member.linkname.startswith("/"):
                raise _member_error(member.name, f"is a symlink to the absolute path {_shown(member.linkname)}")
            _check_length(member.name, member.linkname, "a link target")
            return _Entry("symlink", member.linkname)
        if kind == "hardlink":
            return _Entry("hardlink", self._hardlink_target(member))
        return _Entry(kind)

    def _hardlink_target(self, member: tarfile.TarInfo) -> str:
        """A hard link must point at a regular file that an earlier member created."""
        target = member.linkname
        if not target or "\x00" in target or target.startswith("/") or ".." in target.split("/"):
            raise _member_error(member.name, f"is a hard link to {_shown(target)}, outside the upload's tree")
        _check_length(member.name, target, "a link target")
        key = "/".join(p for p in target.split("/") if p not in ("", "."))
        entry = self.entries.get(key)
        if entry is None or entry.kind not in ("file", "hardlink"):
            raise _member_error(member.name, f"is a hard link to {_shown(target)}, which is not an earlier file")
        return entry.link if entry.kind == "hardlink" else key

    def check_symlinks(self) -> None:
        """Once the whole tree is known: no symlink may resolve (through other symlinks) outside it."""
        links = {key: e.link for key, e in self.entries.items() if e.kind == "symlink"}
        for key, target in links.items():
            parent = key.split("/")[:-1]
            try:
                resolved = _resolve(parent, target, links, [0])
            except _SymlinkLoop:
                raise _member_error(key, f"is a symlink to {_shown(target)}, which loops") from None
            if resolved is None:
                raise _member_error(key, f"is a symlink to {_shown(target)}, which leaves the upload's tree")

    def files(self) -> int:
        return sum(1 for e in self.entries.values() if e.kind in ("file", "hardlink"))


def _member_parts(member: tarfile.TarInfo) -> list[str]:
    """The member's path components, refusing absolute names, NULs and ``..``."""
    name = member.name
    if "\x00" in name:
        raise _member_error(name, "has a NUL byte in its name")
    if name.startswith("/") or os.path.isabs(name):
        raise _member_error(name, "has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _member_error(name, "leaves the upload's tree")
    _check_length(name, name, "a path")
    return parts


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issparse():
        raise _member_error(member.name, "is a sparse file, which uploads may not contain")
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.ischr() or member.isblk():
        raise _member_error(member.name, "is a device file")
    if member.isfifo():
        raise _member_error(member.name, "is a fifo")
    raise _member_error(member.name, f"has an unsupported type {member.type!r}")


class _SymlinkLoop(Exception):
    """More than ``_MAX_LINK_HOPS`` symlinks in one resolution."""


def _resolve(start: list[str], target: str, links: dict[str, str], hops: list[int]) -> list[str] | None:
    """Resolve ``target`` from directory ``start`` as the kernel would, inside the modelled tree.

    Returns the resolved components, or None when the path leaves the tree (absolute or too many
    ``..``); raises :class:`_SymlinkLoop` after too many symlinks.
    """
    if target.startswith("/"):
        return None
    current = list(start)
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not current:
                return None
            current.pop()
            continue
        current.append(comp)
        link = links.get("/".join(current))
        if link is None:
            continue
        hops[0] += 1
        if hops[0] > _MAX_LINK_HOPS:
            raise _SymlinkLoop(target)
        current.pop()
        resolved = _resolve(current, link, links, hops)
        if resolved is None:
            return None
        current = resolved
    return current


class _CappedReader(io.RawIOBase):
    """A read-only stream that refuses to yield more bytes than ``budget()`` allows (decompression bombs)."""

    def __init__(self, inner: IO[bytes] | io.BufferedIOBase, budget: Callable[[], int]) -> None:
        super().__init__()
        self._inner = inner
        self._budget = budget
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        self.consumed += len(data)
        if self.consumed > self._budget():
            raise _invalid("the archive decompresses to more data than its members declare (a decompression bomb?)")
        buffer[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _open_stream(archive: Path, budget: Callable[[], int]) -> Iterator[tarfile.TarFile]:
    """The archive as a sequential tar stream over a byte-capped gzip reader."""
    with gzip.open(archive, "rb") as gz, _CappedReader(gz, budget) as capped, \
            tarfile.open(fileobj=capped, mode="r|") as tar:
        yield tar


@contextlib.contextmanager
def _as_invalid() -> Iterator[None]:
    """Turn what a corrupt or non-tar archive raises into an :class:`InvalidError`."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _invalid(f"the upload is not a valid gzip'd tar archive: {exc}") from exc


def _check_file(archive: Path, limits: UploadLimits) -> None:
    size = archive.stat().st_size
    if size > limits.max_compressed:
        raise _invalid(f"the archive is {size} bytes, more than the {limits.max_compressed} allowed")
    with archive.open("rb") as fh:
        if fh.read(2) != _GZIP_MAGIC:
            raise _invalid("the upload is not a gzip'd tar archive")


def _check_dest(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ValueError(f"cannot unpack into {dest}: not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise ValueError(f"cannot unpack into {dest}: the directory is not empty")


def _validate(archive: Path, limits: UploadLimits) -> _TreeModel:
    """First pass: read every member and check it; nothing is written."""
    model = _TreeModel(limits)

    def budget() -> int:
        return model.data_budget + _METADATA_SLACK + _METADATA_PER_MEMBER * (len(model.members) + 1)

    with _as_invalid(), _open_stream(archive, budget) as tar:
        for member in tar:
            model.add(member)
    model.check_symlinks()
    return model


def _extract(archive: Path, dest: Path, model: _TreeModel) -> None:
    """Second pass: write what the first pass validated, member for member, through the ``data`` filter."""
    expected = iter(model.members)
    budget = model.data_budget + _METADATA_SLACK + _METADATA_PER_MEMBER * (len(model.members) + 1)

    def only_validated(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        if next(expected, None) != (member.name, member.type, member.size, member.linkname):
            raise _invalid("the archive changed while it was being unpacked")
        if not [p for p in member.name.split("/") if p not in ("", ".")]:
            return None  # the top directory itself: it is dest
        return tarfile.data_filter(member, path)

    with _as_invalid(), _open_stream(archive, lambda: budget) as tar:
        try:
            tar.extractall(dest, filter=only_validated)  # noqa: S202 - every member validated, then filtered
        except tarfile.FilterError as exc:
            raise _invalid(f"archive member rejected while unpacking: {exc}") from exc


def unpack(archive: Path, dest: Path, limits: UploadLimits = UploadLimits()) -> int:
    """Unpack the untrusted .tar.gz ``archive`` into ``dest``; return the number of files written.

    ``dest`` must be a new or empty directory. Every member is validated before anything is
    written; a bad archive raises :class:`InvalidError` (field ``archive``) naming the member (its
    first ``_SHOWN`` characters), and leaves ``dest`` as it was. Names and link targets are at most
    ``PATH_MAX`` bytes, each component at most ``NAME_MAX``. Files are regular files and hard links
    (symlinks and directories are created but not counted).
    """
    archive, dest = Path(archive), Path(dest)
    _check_dest(dest)
    _check_file(archive, limits)
    model = _validate(archive, limits)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _extract(archive, dest, model)
    except BaseException:
        _empty(dest, remove=created)
        raise
    return model.files()


def _empty(dest: Path, *, remove: bool) -> None:
    """Undo a failed extraction: remove what was written (never following symlinks)."""
    if remove:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
