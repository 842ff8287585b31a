"""Content digests: ``sha256:<64 hex digits>``, the names of blobs and artifacts."""

from __future__ import annotations

import hashlib
from pathlib import Path

PREFIX = "sha256:"
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return PREFIX + h.hexdigest()


def valid(digest: str) -> bool:
    hexpart = digest.removeprefix(PREFIX)
    return digest.startswith(PREFIX) and len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)
