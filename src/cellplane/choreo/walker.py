"""Walking a parsed descriptor: typed reads that record problems and warnings under ``<file>: <key path>``."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from cellplane.errors import FieldProblem, join_path
from cellplane.model.component import ENV_NAME

MAX_WARNINGS = 200  # a generated file with thousands of unknown keys should not bury the rest


class ShapedReads:
    """Reads of a parsed YAML value's shape that record a problem (``fail``) and go on: shared by Choreo's
    descriptors (``Walker``) and OpenChoreo's documents (``cellplane.openchoreo.reader.Reader``)."""

    def fail(self, path: str, problem: str) -> None:
        raise NotImplementedError

    def mapping(self, value: Any, path: str, *, required: bool = False) -> dict[Any, Any] | None:
        if value is None:
            if required:
                self.fail(path, "required")
            return None
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {kind_of(value)}")
            return None
        return value

    def items(self, value: Any, path: str) -> list[tuple[str, Any]]:
        """A list's items with their paths; a missing list is an empty one."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {kind_of(value)}")
            return []
        return [(f"{path}[{i}]", item) for i, item in enumerate(value)]


class Walker(ShapedReads):
    """Collects the problems (which fail the import) and warnings (which do not) of one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[FieldProblem] = []
        self.warnings: list[str] = []
        self.dropped = 0

    def warn(self, path: str, message: str) -> None:
        if len(self.warnings) >= MAX_WARNINGS:
            self.dropped += 1
            return
        self.warnings.append(f"{self.file}: {path}: {message}" if path else f"{self.file}: {message}")

    def all_warnings(self) -> list[str]:
        extra = [f"{self.file}: {self.dropped} more warnings not shown"] if self.dropped else []
        return self.warnings + extra

    def fail(self, path: str, problem: str) -> None:
        self.problems.append(FieldProblem(f"{self.file}: {path}" if path else self.file, problem))

    def known_keys(self, data: dict[Any, Any], path: str, known: Iterable[str]) -> None:
        """Warn about each key Choreo does not define here, with a hint when it looks like a typo."""
        names = tuple(known)
        for key in data:
            if key in names:
                continue
            shown = show(key)
            close = difflib.get_close_matches(shown, names, n=1) if len(shown) <= 40 else []
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.warn(join_path(path, shown), f"unknown key, ignored{hint}")

    def text(self, value: Any, path: str, *, required: bool = False) -> str | None:
        """A string; numbers are accepted as their text, as Choreo's validator does."""
        if value is None:
            if required:
                self.fail(path, "required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(path, f"expected a string, got {kind_of(value)}")
            return None
        out = as_text(value)
        if out is None:
            self.fail(path, "a number too large to use")
            return None
        out = out.strip()
        if not out and required:
            self.fail(path, "must not be empty")
        return out or None

    def label(self, value: str, path: str, fallback: str) -> str:
        """``value`` as a DNS-1123 label, warning when it had to change."""
        out = dns_label(value) or fallback
        if out != value:
            self.warn(path, f"'{show(value)}' is not a DNS-1123 label; using '{out}'")
        return out

    def env_name(self, value: str, path: str) -> bool:
        """Whether ``value`` can name an environment variable, warning that it is left out when not."""
        if ENV_NAME.fullmatch(value):
            return True
        self.warn(path, f"'{show(value)}' is not a valid environment variable name; left out")
        return False


def dns_label(value: str) -> str:
    """Lower-case, separators to '-', anything else invalid dropped, at most 63 characters."""
    out = re.sub(r"[_\s.]+", "-", value.strip().lower())
    out = re.sub(r"[^a-z0-9-]", "", out)
    out = re.sub(r"-{2,}", "-", out).strip("-")
    return out[:63].rstrip("-")


def kind_of(value: Any) -> str:
    """What a YAML value is, for a message: ``a mapping``, ``a list``, ``a number``..."""
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def show(value: Any, limit: int = 60) -> str:
    """``value`` shortened for a message."""
    text = as_text(value)
    if text is None:
        return "<a number too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_text(value: Any) -> str | None:
    """``str(value)``, or None when there is none: YAML 1.1 reads ``1:00:00:...`` (base 60) as an
    integer that can be too long for ``str`` to print."""
    try:
        return str(value)
    except ValueError:
        return None
