"""Pruning the image-layers cache: where dependency layers are kept between builds (``<cache>/image-layers/``).

Each entry is ``<key>.tar.gz`` (the layer) and ``<key>.json`` (its digests), written once by
``dependencies._cached``, whose every use touches the ``.json`` (so its mtime is the entry's last use). Without
pruning, every lock ever built stays; ``prune`` applies the policy after each image push:

1. entries not used for ``max_age`` (default 14 days) are removed;
2. then, while the entries hold more than ``max_bytes`` (default 5 GiB), the least recently used go first;
3. an entry used within ``RECENT`` (10 minutes) is never removed (a build in flight may be uploading it), nor one
   whose ``.json`` is missing (being built); staging directories a crash left (``cellplane-deps-*``) older than a
   day are removed.

Removing a layer costs nothing but a rebuild of it the next time its lock is built (the same bytes, so the same
digest: the registry still holds it and nothing is uploaded again). Cost: one directory listing and a stat per
entry; entries are removed under the same file lock the builder takes.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from cellplane.runtime.materialize import locked

FOLDER = "image-layers"
MAX_AGE = 14 * 86400.0
MAX_BYTES = 5 << 30
RECENT = 600.0
_STAGING_AGE = 86400.0


@dataclass(frozen=True)
class Pruned:
    removed: int  # entries removed
    freed: int  # bytes
    kept: int  # entries left
    kept_bytes: int


def settings() -> tuple[float, int]:
    """(max age in seconds, max bytes) from ``CELLPLANE_IMAGE_LAYERS_MAX_AGE_DAYS`` and
    ``CELLPLANE_IMAGE_LAYERS_MAX_BYTES`` (the control plane's environment), else the defaults."""
    days = os.environ.get("CELLPLANE_IMAGE_LAYERS_MAX_AGE_DAYS", "").strip()
    size = os.environ.get("CELLPLANE_IMAGE_LAYERS_MAX_BYTES", "").strip()
    return (float(days) * 86400 if days else MAX_AGE), (int(size) if size else MAX_BYTES)


def prune(cache_root: Path, max_age: float = MAX_AGE, max_bytes: int = MAX_BYTES,
          now: float | None = None) -> Pruned:
    """Apply the policy above to ``<cache_root>/image-layers``."""
    folder = cache_root / FOLDER
    if not folder.is_dir():
        return Pruned(0, 0, 0, 0)
    now = time.time() if now is None else now
    entries: list[tuple[float, int, str]] = []  # (last use, bytes, key)
    for path in folder.iterdir():
        if path.is_dir() and path.name.startswith("cellplane-deps-"):
            if now - path.stat().st_mtime > _STAGING_AGE:
                shutil.rmtree(path, ignore_errors=True)
            continue
        if path.suffix != ".json":
            continue
        key = path.name.removesuffix(".json")
        blob = folder / f"{key}.tar.gz"
        try:
            entries.append((path.stat().st_mtime, blob.stat().st_size if blob.exists() else 0, key))
        except FileNotFoundError:
            continue
    entries.sort()  # least recently used first
    total = sum(size for _, size, _ in entries)
    removed = freed = 0
    for used, size, key in entries:
        if now - used < RECENT:
            break  # sorted: every later entry is more recent still
        if now - used <= max_age and total <= max_bytes:
            continue
        if _remove(folder, key, used):
            removed += 1
            freed += size
            total -= size
    return Pruned(removed, freed, len(entries) - removed, total)


def _remove(folder: Path, key: str, used: float) -> bool:
    blob, record = folder / f"{key}.tar.gz", folder / f"{key}.json"
    with locked(blob):
        try:
            if record.stat().st_mtime != used:  # used again meanwhile: keep it
                return False
        except FileNotFoundError:
            return False
        record.unlink()
        blob.unlink(missing_ok=True)
    return True  # the empty .lock file stays: removing it could split the lock between two processes
