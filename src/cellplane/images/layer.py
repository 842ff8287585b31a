"""One deterministic image layer from a build artifact: same artifact, same bytes, same digest.

The artifact (a reproducible ``.tar.gz``: ``manifest.json``, ``files/...``, a lock) is re-packed under ``/app``
as a tar stream through gzip: members in the artifact's own sorted order behind their parent directories, times 0,
owner root (uid and gid 0, no names), modes 0755 for directories and executables and 0644 for other files, so
the image's non-root user reads the application and cannot change it. gzip is written with mtime 0 and no name at
a fixed level. Both digests are taken while streaming: ``digest`` of the compressed blob (what the registry
stores), ``diff_id`` of the uncompressed tar (what the image config lists). Cost: one pass over the artifact,
about what gzip costs (tens of MB/s); memory is a copy buffer.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = "app"  # where the artifact lands in the image: /app/manifest.json, /app/files/...
MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Layer:
    path: Path  # the compressed blob
    digest: str  # sha256:<hex> of the blob
    diff_id: str  # sha256:<hex> of the uncompressed tar
    size: int  # bytes of the blob


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes on to ``inner``."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile | None) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hash.update(data)
        self.size += len(data)
        if self.inner is not None:
            self.inner.write(data)
        return len(data)


def from_artifact(artifact: Path, dest: Path, *, place: Callable[[str], str | None] | None = None,
                  extra: Sequence[tuple[str, bytes | None]] = ()) -> Layer:
    """Write the layer of ``artifact`` to ``dest`` and return its digests. By default every member lands under
    ``/app``; ``place`` maps a member's name to its path in the image instead (None leaves it out), after the
    ``extra`` entries (``(path, bytes)`` a file, ``(path, None)`` a directory), which come first as given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        blob = _Hashing(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=6) as gz:
            tar_stream = _Hashing(gz)
            with tarfile.open(fileobj=tar_stream, mode="w|", format=tarfile.PAX_FORMAT) as tar, \
                    tarfile.open(artifact, mode="r:gz") as source:
                if place is None:
                    tar.addfile(_header(ROOT, tarfile.DIRTYPE))
                for path, body in extra:
                    if body is None:
                        tar.addfile(_header(path, tarfile.DIRTYPE))
                    else:
                        file = tarfile.TarInfo(path)
                        file.size, file.mode = len(body), 0o644
                        tar.addfile(_header(path, tarfile.REGTYPE, file), io.BytesIO(body))
                for member in source:
                    if not (member.isdir() or member.isreg() or member.issym()):
                        continue
                    name = member.name.removeprefix("./").rstrip("/")
                    if not name or name.startswith("/") or ".." in name.split("/"):
                        continue  # archive.pack never writes these; an artifact is checked when stored
                    where = f"{ROOT}/{name}" if place is None else place(name)
                    if where is None:
                        continue
                    info = _header(where, member.type, member)
                    if member.isreg():
                        tar.addfile(info, source.extractfile(member))
                    else:
                        tar.addfile(info)
    return Layer(dest, "sha256:" + blob.hash.hexdigest(), "sha256:" + tar_stream.hash.hexdigest(), blob.size)


def from_tree(tree: Path, under: str, dest: Path) -> Layer:
    """Write a layer holding the files of ``tree`` at ``/<under>`` (its parents as directories), as deterministic as
    ``from_artifact``: entries in sorted path order, times 0, owner root, the same modes. Links are kept as links;
    other special files are left out. Cost: one walk and one gzip pass over the tree."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        blob = _Hashing(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=6) as gz:
            tar_stream = _Hashing(gz)
            with tarfile.open(fileobj=tar_stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                parts = under.strip("/").split("/")
                for i in range(1, len(parts) + 1):
                    tar.addfile(_header("/".join(parts[:i]), tarfile.DIRTYPE))
                for path in _walk(tree):
                    name = f"{'/'.join(parts)}/{path.relative_to(tree).as_posix()}"
                    member = tarfile.TarInfo(name)
                    st = path.lstat()
                    member.mode = st.st_mode
                    if path.is_symlink():
                        member.type, member.linkname = tarfile.SYMTYPE, os.readlink(path)
                        tar.addfile(_header(name, tarfile.SYMTYPE, member))
                    elif path.is_dir():
                        tar.addfile(_header(name, tarfile.DIRTYPE))
                    elif path.is_file():
                        member.size = st.st_size
                        with path.open("rb") as f:
                            tar.addfile(_header(name, tarfile.REGTYPE, member), f)
    return Layer(dest, "sha256:" + blob.hash.hexdigest(), "sha256:" + tar_stream.hash.hexdigest(), blob.size)


def _walk(tree: Path) -> list[Path]:
    """Every path under ``tree`` (not following links), parents before children, in sorted order."""
    found: list[Path] = []
    for entry in sorted(tree.iterdir(), key=lambda p: p.name):
        found.append(entry)
        if entry.is_dir() and not entry.is_symlink():
            found.extend(_walk(entry))
    return found


def _header(name: str, kind: bytes, member: tarfile.TarInfo | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if kind == tarfile.DIRTYPE:
        info.mode = 0o755
    elif kind == tarfile.SYMTYPE:
        assert member is not None
        info.mode, info.linkname = 0o777, member.linkname
    else:
        assert member is not None
        info.size = member.size
        info.mode = 0o755 if member.mode & 0o111 else 0o644
    return info
