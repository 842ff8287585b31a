"""Content-addressed bytes in the database: artifacts and uploaded sources.

Blobs live in the store (in 1 MiB chunks) rather than on one replica's disk, so that any control-plane
replica can serve an artifact that another one built. A blob's name is the SHA-256 of its bytes; writing
the same bytes twice stores them once, and every read can be verified against the name.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cellplane.digests import CHUNK, PREFIX, sha256_file
from cellplane.errors import CellplaneError, NotFoundError
from cellplane.store import Store
from cellplane.store.tables import BlobChunkRow, BlobRow


def put(s: Session, path: Path, digest: str | None = None) -> tuple[str, int]:
    """Store the file's bytes (once); returns (digest, size)."""
    digest = digest or sha256_file(path)
    size = path.stat().st_size
    if s.get(BlobRow, digest) is not None:
        return digest, size
    s.add(BlobRow(digest=digest, size=size))
    s.flush()
    with path.open("rb") as f:
        for seq, chunk in enumerate(iter(lambda: f.read(CHUNK), b"")):
            s.add(BlobChunkRow(digest=digest, seq=seq, data=chunk))
            if seq % 16 == 15:
                s.flush()
    return digest, size


def size_of(s: Session, digest: str) -> int:
    row = s.get(BlobRow, digest)
    if row is None:
        raise NotFoundError(f"no blob {digest}")
    return row.size


def chunks(store: Store, digest: str) -> Iterator[bytes]:
    """The blob's bytes, one chunk per short transaction, verified against the digest at the end."""
    h = hashlib.sha256()
    seq = 0
    while True:
        with store.read() as s:
            data = s.scalar(select(BlobChunkRow.data).where(BlobChunkRow.digest == digest, BlobChunkRow.seq == seq))
        if data is None:
            break
        h.update(data)
        yield bytes(data)
        seq += 1
    if PREFIX + h.hexdigest() != digest:
        raise CellplaneError(f"blob {digest} is corrupt in the store", code="corrupt", status=500)


async def stream(store: Store, digest: str) -> AsyncIterator[bytes]:
    """``chunks`` for a streamed answer: each chunk is read in a worker thread, never on the event loop."""
    it = chunks(store, digest)
    while True:
        chunk = await asyncio.to_thread(next, it, None)
        if chunk is None:
            return
        yield chunk


def write_to(store: Store, digest: str, dest: Path) -> None:
    with dest.open("wb") as f:
        for data in chunks(store, digest):
            f.write(data)


def remove(s: Session, digest: str) -> None:
    s.execute(delete(BlobChunkRow).where(BlobChunkRow.digest == digest))
    s.execute(delete(BlobRow).where(BlobRow.digest == digest))
