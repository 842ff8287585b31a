"""A component's source: where it is and paths inside it, shared by the control plane, the build runner and the CLI.

``is_git_url`` tells a git URL (which the control plane clones) from a local directory (which the CLI may upload).
``subdirectory`` resolves ``source.path`` against a checkout and refuses anything that leaves it (``..``, an
absolute path, a symbolic link pointing out). Cost: one ``resolve`` and one ``stat``.
"""

from __future__ import annotations

import re
from pathlib import Path

from cellplane.errors import FieldProblem, InvalidError

_GIT_URL = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")


def is_git_url(value: str) -> bool:
    """Whether ``source.repository`` names a git remote (a URL, or scp-like ``user@host:path``), not a directory."""
    return bool(_GIT_URL.match(value))


def subdirectory(root: Path, path: str) -> Path:
    """``path`` inside ``root``, refusing anything that leaves it."""
    try:
        target = (root / path).resolve()
        is_dir = target.is_dir()
    except (OSError, RuntimeError, ValueError):
        raise InvalidError(f"'{path}' is not a directory in the source",
                           [FieldProblem("source.path", "no such directory")]) from None
    if target != root.resolve() and root.resolve() not in target.parents:
        raise InvalidError(f"'{path}' is outside the source", [FieldProblem("source.path", "leaves the source tree")])
    if not is_dir:
        raise InvalidError(f"'{path}' is not a directory in the source",
                           [FieldProblem("source.path", "no such directory")])
    return target
