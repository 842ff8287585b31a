"""The build context COPY and ADD read from: globs, symlinks kept inside, ``.git`` and ``.dockerignore`` left out."""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
import re
import shutil
from pathlib import Path

from cellplane.build.dockerfile.parsing import fail
from cellplane.build.dockerfile.tree import Tree


class _IgnoreRules:
    """``.dockerignore``: path patterns (``*``, ``?``, ``[...]``, ``**``), ``!`` re-includes; the last match wins."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[re.Pattern[str], bool]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = posixpath.normpath(line.removeprefix("!").strip().lstrip("/"))
            if pattern not in (".", ""):
                self.rules.append((_pattern_regex(pattern), include))
        self.has_negations = any(include for _, include in self.rules)

    @classmethod
    def load(cls, context: Path) -> _IgnoreRules:
        path = context / ".dockerignore"
        if not path.is_file() or not path.resolve().is_relative_to(context):
            return cls([])
        return cls(path.read_text(encoding="utf-8", errors="replace").splitlines())

    def excluded(self, rel: str) -> bool:
        """Whether the context-relative POSIX path ``rel`` (or a directory above it) is excluded."""
        if not rel or not self.rules:
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
        result = False
        for regex, include in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not include
        return result


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A Docker path pattern as a regex: ``*`` and ``?`` stay within a path segment, ``**`` spans segments."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif char == "*":
            out.append("[^/]*")
            index += 1
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "[" and (end := pattern.find("]", index + 2)) > 0:
            body = pattern[index + 1 : end]
            body = "^" + body[1:] if body[0] in "!^" else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            index = end + 1
        elif char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
        else:
            out.append(re.escape(char))
            index += 1
    return re.compile("".join(out))


class Context:
    """The build context: where COPY and ADD read from, as Docker would see it."""

    def __init__(self, root: Path, tree: Tree) -> None:
        self.root = root
        self.tree = tree
        self.ignore = _IgnoreRules.load(root)

    def sources(self, source: str, keyword: str, line: int) -> list[str]:
        """The context-relative paths a COPY source names ("" is the context itself)."""
        if source.startswith("/"):
            raise fail(line, f"{keyword} source '{source}' is an absolute path; sources are relative to the context")
        rel = posixpath.normpath(source)
        if rel == ".." or rel.startswith("../"):
            raise fail(line, f"{keyword} source '{source}' leads outside the build context")
        matches = self._glob(rel, keyword, line)
        kept = [match for match in matches if not self._left_out(match)]
        if not kept:
            why = " (.dockerignore excludes it)" if matches else ""
            raise fail(line, f"{keyword} source '{source}' was not found in the build context{why}")
        return kept

    def resolve(self, rel: str, keyword: str, line: int) -> Path:
        """The real path of a context entry, which must stay inside the context."""
        try:
            real = (self.root / rel).resolve(strict=True)
        except (OSError, RuntimeError):
            raise fail(line, f"{keyword} source '{rel}' is a broken symlink") from None
        if not real.is_relative_to(self.root):
            raise fail(line, f"{keyword} source '{rel}' is a symlink leading outside the build context")
        return real

    def copy(self, rel: str, dest: Path, into_dir: bool, keyword: str, line: int) -> None:
        """Copy a context entry to ``dest`` (a directory's contents go into ``dest``)."""
        real = self.resolve(rel, keyword, line)
        if real.is_dir():
            self._copy_tree(real, rel, dest, keyword, line, frozenset({real}))
        elif real.is_file():
            self._copy_file(real, dest / posixpath.basename(rel) if into_dir else dest, line)
        else:
            raise fail(line, f"{keyword} source '{rel}' is not a regular file or a directory")

    def _glob(self, rel: str, keyword: str, line: int) -> list[str]:
        found = [""]
        for segment in rel.split("/"):
            if segment not in ("", "."):
                found = [match for base in found for match in self._match(base, segment, keyword, line)]
        return found

    def _match(self, base: str, segment: str, keyword: str, line: int) -> list[str]:
        if not glob.has_magic(segment):
            candidate = posixpath.join(base, segment)
            return [candidate] if os.path.lexists(self.root / candidate) else []
        directory = self.resolve(base, keyword, line)
        if not directory.is_dir():
            return []
        names = sorted(name for name in os.listdir(directory) if fnmatch.fnmatchcase(name, segment))
        return [posixpath.join(base, name) for name in names]

    def _left_out(self, rel: str) -> bool:
        return ".git" in rel.split("/") or self.ignore.excluded(rel)

    def _copy_tree(self, real: Path, rel: str, dest: Path, keyword: str, line: int, active: frozenset[Path]) -> None:
        if not self.ignore.excluded(rel):
            self.tree.mkdir(dest, line)
        for entry in sorted(os.scandir(real), key=lambda e: e.name):
            child = posixpath.join(rel, entry.name)
            if entry.name == ".git" or (self.ignore.excluded(child) and not self.ignore.has_negations):
                continue
            target = self.resolve(child, keyword, line)
            if target == self.tree.root:
                continue  # the work tree itself, when it lives inside the context
            if target.is_dir():
                if target in active:
                    raise fail(line, f"{keyword} source '{child}' is a symlink loop")
                self._copy_tree(target, child, dest / entry.name, keyword, line, active | {target})
            elif target.is_file() and not self.ignore.excluded(child):
                self._copy_file(target, dest / entry.name, line)
            # sockets, FIFOs and devices are not copied

    def _copy_file(self, source: Path, target: Path, line: int) -> None:
        self.tree.mkdir(target.parent, line)
        if target.is_symlink():
            target.unlink()
        elif target.is_dir():
            raise fail(line, f"cannot copy a file over the directory {self.tree.image(target)}")
        shutil.copyfile(source, target)
        shutil.copymode(source, target)
