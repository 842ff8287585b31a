"""Reading one OpenChoreo document: typed reads that record problems (which fail it) and warnings (which do not),
each at the field path of the document as written, and where each Cellplane field came from.

OpenChoreo's documents are Kubernetes objects with a schema of their own, so a field that schema does not define
(a typo) is an error, as in Cellplane's own documents; a field it defines that Cellplane has no place for is a
warning. Reads cost one dictionary lookup each; nothing here allocates more than the messages it records.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from cellplane.choreo.walker import ShapedReads, kind_of
from cellplane.errors import FieldProblem, join_path
from cellplane.model.meta import DNS_LABEL

MAX_WARNINGS = 200  # per document: a generated file with thousands of parameters should not bury the rest


class Reader(ShapedReads):
    """The problems, warnings and field origins of one document (``index`` in the apply request).

    ``origins`` maps a field path of the Cellplane document made from it (``spec.endpoints[0]``) to the path it
    was read from (``spec.endpoints.http``), so that a problem found later, when the result is validated as a
    Cellplane document or stored, is reported where the user wrote the value.
    """

    def __init__(self, index: int, label: str = "", *, strict: bool = True) -> None:
        self.index = index
        self.strict = strict  # unknown fields fail; else they warn (OpenChoreo's own reading of workload.yaml)
        self.label = label  # prefixes warnings, e.g. "Workload 'orders'" when they land on another document
        self.problems: list[FieldProblem] = []
        self.warnings: list[str] = []
        self.origins: dict[str, tuple[int, str]] = {}
        self.dropped = 0

    def fail(self, path: str, problem: str) -> None:
        self.problems.append(FieldProblem(path, problem))

    def warn(self, path: str, message: str) -> None:
        if len(self.warnings) >= MAX_WARNINGS:
            self.dropped += 1
            return
        where = f"{self.label} {path}" if self.label and path else (self.label or path)
        self.warnings.append(f"{where}: {message}" if where else message)

    def all_warnings(self) -> list[str]:
        return self.warnings + ([f"{self.dropped} more warnings not shown"] if self.dropped else [])

    def origin(self, cellplane_path: str, path: str) -> None:
        self.origins[cellplane_path] = (self.index, path)

    def fields(self, data: dict[Any, Any], path: str, known: Iterable[str]) -> None:
        """Fail (or warn, not ``strict``) on each key OpenChoreo's schema does not define here, with a hint when it
        looks like a typo."""
        names = tuple(known)
        for key in data:
            if key in names:
                continue
            shown = str(key)[:60]
            close = difflib.get_close_matches(shown, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            if self.strict:
                self.fail(join_path(path, shown), f"unknown field{hint}")
            else:
                self.warn(join_path(path, shown), f"unknown field, ignored{hint}")

    def text(self, value: Any, path: str, *, required: bool = False) -> str | None:
        if value is None or value == "":
            if required:
                self.fail(path, "required")
            return None
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {kind_of(value)}")
            return None
        return value

    def name(self, value: Any, path: str, *, required: bool = False) -> str | None:
        """A reference to another resource: a DNS-1123 label, as in OpenChoreo (a Kubernetes object name)."""
        out = self.text(value, path, required=required)
        if out is not None and (len(out) > 63 or not DNS_LABEL.fullmatch(out)):
            self.fail(path, f"'{out[:70]}' is not a DNS-1123 label (lower-case letters, digits and '-', at most 63)")
            return None
        return out

    def flag(self, value: Any, path: str) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {kind_of(value)}")
            return None
        return value

    def port(self, value: Any, path: str, *, required: bool = False) -> int | None:
        if value is None:
            if required:
                self.fail(path, "required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected a port number, got {kind_of(value)}")
            return None
        if not 1 <= value <= 65535:
            self.fail(path, f"{value} is not a port (1-65535)")
            return None
        return value

    def no_equivalent(self, data: dict[Any, Any], path: str, keys: Iterable[str], why: str) -> None:
        """A warning for each of ``keys`` present in ``data``: OpenChoreo fields Cellplane has no place for."""
        for key in keys:
            if data.get(key) not in (None, {}, []):
                self.warn(join_path(path, key), why)


def written_at(origins: dict[str, tuple[int, str]], path: str) -> tuple[int, str] | None:
    """Where the value at ``path`` of a mapped document was written: the longest recorded prefix of ``path``,
    with what follows it kept (field names mostly coincide); None when nothing is recorded."""
    probe = path
    while probe:
        if probe in origins:
            j, written = origins[probe]
            return j, written + path[len(probe):]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return None
