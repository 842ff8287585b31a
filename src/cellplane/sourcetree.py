"""Paths inside a component's source tree, shared by the control plane's import and the build runner.

``subdirectory`` resolves ``source.path`` against a checkout and refuses anything that leaves it (``..``, an
absolute path, a symbolic link pointing out). Cost: one ``resolve`` and one ``stat``.
"""

from __future__ import annotations

from pathlib import Path

from cellplane.errors import FieldProblem, InvalidError


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
