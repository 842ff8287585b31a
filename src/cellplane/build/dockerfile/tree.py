"""A stage's file tree: the image's filesystem root modelled by a directory on disk."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from cellplane.build.dockerfile.parsing import fail

HOST_DEVICES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})


def image_abspath(path: str) -> str:
    """A normalised absolute image path (``..`` stops at the root, as in an image)."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


class Tree:
    """The work tree: the image's filesystem root on disk; nothing is written outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def host(self, image_path: str) -> Path:
        rel = image_abspath(image_path).lstrip("/")
        return self.root / rel if rel else self.root

    def image(self, path: Path) -> str:
        rel = path.relative_to(self.root).as_posix()
        return "/" if rel == "." else "/" + rel

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, POSIX style ("" for the root)."""
        rel = path.relative_to(self.root).as_posix()
        return "" if rel == "." else rel

    def check(self, path: Path, line: int, shown: str) -> Path:
        """``path`` normalised, after checking that it stays inside the tree (symlinks followed)."""
        if not path.resolve().is_relative_to(self.root):
            raise fail(line, f"the path {shown} leads outside the image's file tree")
        return Path(os.path.normpath(path))

    def mkdir(self, path: Path, line: int) -> None:
        path = self.check(path, line, str(path))
        shown = self.image(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise fail(line, f"cannot create the directory {shown}: a file is in the way") from None
        except OSError as e:
            raise fail(line, f"cannot create the directory {shown}: {e.strerror}") from None

    def points_into(self, image_path: str) -> bool:
        """Whether an absolute image path names something the build put into the tree."""
        host = self.host(image_path)
        if host == self.root:
            return False
        return os.path.lexists(host) or (host.parent != self.root and host.parent.is_dir())
