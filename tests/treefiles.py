"""Writing small file trees in tests."""

from __future__ import annotations

from pathlib import Path


def write(root: Path, rel: str, text: str | bytes) -> Path:
    """Write ``text`` to ``root/rel``, creating directories; returns the path."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path
