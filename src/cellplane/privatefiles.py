"""Files only their owner can read, written atomically: keys, tokens, the agent's state, the CLI's config.

Used by both planes and the CLI, so it lives outside them. ``write_private`` writes a temporary file of mode 0600
next to the target (created exclusively, so it never follows a planted link), fsyncs it and renames it over the
target: a crash leaves the old file or the new one, never half of one. Cost: one open, write, fsync and rename.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Atomically write a file only its owner can read."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
