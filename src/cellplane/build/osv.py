"""An offline vulnerability database in the OSV format (https://ossf.github.io/osv-schema/).

The database is loaded from files osv.dev publishes (``PyPI/all.zip``, ``npm/all.zip``, ``Go/all.zip``,
``Maven/all.zip``), single OSV JSON files, or a directory of either; nothing here touches the network.
:meth:`OsvDatabase.match` answers "which known vulnerabilities affect this package at this version" for the
PyPI, npm, Go and Maven ecosystems, following the OSV rules for ``versions`` lists and ``ECOSYSTEM``/``SEMVER``
ranges. Versions compare by each ecosystem's own rules: PEP 440 for PyPI, SemVer for npm and Go, Maven's
``ComparableVersion`` for Maven (:class:`MavenVersion`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from cellplane.build.plan import BuildFailure

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
ECOSYSTEMS = ("PyPI", "npm", "Go", "Maven")

# Words advisories use for severities, mapped to ours (GitHub says MODERATE, others MEDIUM or IMPORTANT).
_SEVERITY_WORDS = {
    "critical": "critical",
    "high": "high",
    "important": "high",
    "moderate": "medium",
    "medium": "medium",
    "low": "low",
    "minor": "low",
    "negligible": "low",
}
_SEVERITY_RANK = {name: rank for rank, name in enumerate(reversed(SEVERITIES))}  # unknown 0 ... critical 4


@dataclass(frozen=True)
class Vulnerability:
    """One known vulnerability affecting a queried package version."""

    id: str
    aliases: tuple[str, ...] = ()
    summary: str = ""
    severity: str = "unknown"  # one of SEVERITIES
    fixed: tuple[str, ...] = ()  # versions that fix it (above the queried one), lowest first

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "summary": self.summary,
            "severity": self.severity,
            "fixed": list(self.fixed),
        }


# --------------------------------------------------------------------------------------------------
# Names and versions


def normalise_name(ecosystem: str, name: str) -> str:
    """The name packages are indexed under: PEP 503 for PyPI, unchanged otherwise (Maven: ``group:artifact``)."""
    if ecosystem == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)


@dataclass(frozen=True, order=True)
class SemVer:
    """A semantic version ordered by SemVer 2.0 precedence (build metadata ignored)."""

    major: int
    minor: int
    patch: int
    # (0, ...) for a pre-release, (1,) for a release, so that a release sorts after its pre-releases.
    pre: tuple[Any, ...] = field(default=(1,))

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse ``1.2.3``, ``v1.2.3-beta.1+build``; :class:`ValueError` for anything else."""
        m = _SEMVER.match(text.strip())
        if m is None:
            raise ValueError(f"not a semantic version: {text!r}")
        pre: tuple[Any, ...] = (1,)
        if m["pre"] is not None:
            # Numeric identifiers sort before alphanumeric ones, numerically; others lexically (ASCII).
            idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in m["pre"].split("."))
            pre = (0, idents)
        return cls(int(m["major"]), int(m["minor"]), int(m["patch"]), pre)


# Maven's qualifiers in release order; "" is the release itself. Aliases first map onto these; any other
# qualifier sorts after all of them, alphabetically (ComparableVersion's "unknown qualifier" rule).
_MAVEN_QUALIFIERS = ("alpha", "beta", "milestone", "rc", "snapshot", "", "sp")
_MAVEN_ALIASES = {"ga": "", "final": "", "release": "", "cr": "rc"}
_MAVEN_LETTERS = {"a": "alpha", "b": "beta", "m": "milestone"}  # only when a number follows: 1.0a1, 2.0-m3
_MAVEN_TOKEN = re.compile(r"\d+|[^\d.\-]+|[.\-]")

# An item of a parsed Maven version: ("int", n), ("str", qualifier) or ("list", items).
_MavenItem = tuple[str, Any]


def _maven_qualifier_key(qualifier: str) -> tuple[int, str]:
    if qualifier in _MAVEN_QUALIFIERS:
        return (_MAVEN_QUALIFIERS.index(qualifier), "")
    return (len(_MAVEN_QUALIFIERS), qualifier)


def _maven_item_cmp(left: _MavenItem | None, right: _MavenItem | None) -> int:
    """ComparableVersion's Item.compareTo: -1, 0 or 1; ``None`` stands for a missing item (a padding zero)."""
    if left is None:
        return 0 if right is None else -_maven_item_cmp(right, None)
    kind, value = left
    if kind == "int":
        if right is None:
            return 1 if value else 0
        if right[0] == "int":
            return (value > right[1]) - (value < right[1])
        return 1  # a number is newer than a qualifier or a sub-list: 1.0.1 > 1.0-1 > 1.0-rc
    if kind == "str":
        mine = _maven_qualifier_key(value)
        if right is None:
            theirs = _maven_qualifier_key("")
        elif right[0] == "str":
            theirs = _maven_qualifier_key(right[1])
        else:
            return -1
        return (mine > theirs) - (mine < theirs)
    if right is None:
        for item in value:
            result = _maven_item_cmp(item, None)
            if result:
                return result
        return 0
    if right[0] == "int":
        return -1
    if right[0] == "str":
        return 1
    for i in range(max(len(value), len(right[1]))):
        mine_item = value[i] if i < len(value) else None
        theirs_item = right[1][i] if i < len(right[1]) else None
        result = _maven_item_cmp(mine_item, theirs_item)
        if result:
            return result
    return 0


def _maven_normalise(items: list[_MavenItem]) -> None:
    """ComparableVersion's ListItem.normalize: drop trailing null items (0, release "", empty lists)."""
    for i in range(len(items) - 1, -1, -1):
        if _maven_item_cmp(items[i], None) == 0 and (items[i][0] != "list" or not items[i][1]):
            del items[i]
        elif items[i][0] != "list":
            break


@functools.total_ordering
class MavenVersion:
    """A Maven version ordered like Maven's ``ComparableVersion`` (what Maven itself uses for ranges).

    Case is ignored; ``.`` separates items, ``-`` and each change between digits and letters open a sub-list;
    numbers compare numerically (trailing zeros do not count: 1.0 == 1); qualifiers order alpha < beta <
    milestone < rc (= cr) < snapshot < "" (release, = ga, final) < sp < any other, alphabetically; ``a1``,
    ``b1``, ``m1`` mean alpha, beta, milestone. Parsing is linear in the text's length; never fails.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.items: list[_MavenItem] = self._parse(text.strip().lower())

    @classmethod
    def parse(cls, text: str) -> MavenVersion:
        if not text.strip():
            raise ValueError("empty Maven version")
        return cls(text)

    @staticmethod
    def _parse(text: str) -> list[_MavenItem]:
        root: list[_MavenItem] = []
        current = root
        stack = [root]
        tokens = _MAVEN_TOKEN.findall(text)
        previous = ""  # the previous token, to tell a separator-less digit/letter change
        for i, token in enumerate(tokens):
            if token == ".":
                if previous in ("", ".", "-"):
                    current.append(("int", 0))
            elif token == "-":
                if previous in ("", ".", "-"):
                    current.append(("int", 0))
                sub: list[_MavenItem] = []
                current.append(("list", sub))
                current, previous = sub, token
                stack.append(sub)
                continue
            else:
                if previous not in ("", ".", "-"):  # 1.0alpha1: a digit/letter change opens a sub-list
                    sub = []
                    current.append(("list", sub))
                    current = sub
                    stack.append(sub)
                if token.isdigit():
                    current.append(("int", int(token)))
                else:
                    followed_by_digit = i + 1 < len(tokens) and tokens[i + 1].isdigit()
                    if current and (followed_by_digit or i + 1 == len(tokens)):
                        sub = []  # 1.0.x1, 2.0.a: a qualifier after "." counts as after "-"
                        current.append(("list", sub))
                        current = sub
                        stack.append(sub)
                    word = _MAVEN_LETTERS.get(token, token) if followed_by_digit else token
                    current.append(("str", _MAVEN_ALIASES.get(word, word)))
            previous = token
        for items in reversed(stack):
            _maven_normalise(items)
        return root

    def _cmp(self, other: MavenVersion) -> int:
        return _maven_item_cmp(("list", self.items), ("list", other.items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MavenVersion):
            return NotImplemented
        return self._cmp(other) == 0

    def __lt__(self, other: MavenVersion) -> bool:
        if not isinstance(other, MavenVersion):
            return NotImplemented
        return self._cmp(other) < 0

    def __hash__(self) -> int:
        return hash(repr(self.items))

    def __repr__(self) -> str:
        return f"MavenVersion({self.text!r})"


def _pypi_version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion as e:
        raise ValueError(str(e)) from None


def _parser(ecosystem: str, range_type: str) -> Callable[[str], Any]:
    """How versions of a range are compared: SEMVER ranges always by SemVer, else by ecosystem rules."""
    if range_type == "SEMVER" or ecosystem in ("npm", "Go"):
        return SemVer.parse
    if ecosystem == "Maven":
        return MavenVersion.parse
    return _pypi_version


# --------------------------------------------------------------------------------------------------
# Severity


_CVSS3_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_CVSS3_PR = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}


def _roundup(value: float) -> float:
    """CVSS 3.1 Roundup: the smallest number with one decimal that is >= value (float-safe)."""
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000
    return (math.floor(scaled / 10_000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float:
    """The CVSS 3.0/3.1 base score of a vector such as ``CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H``.

    Raises :class:`ValueError` for a vector that is not CVSS 3 or lacks a base metric.
    """
    parts = vector.strip().split("/")
    if not parts or not re.fullmatch(r"CVSS:3\.[01]", parts[0]):
        raise ValueError(f"not a CVSS 3 vector: {vector!r}")
    metrics = dict(p.split(":", 1) for p in parts[1:] if ":" in p)
    try:
        scope = metrics["S"]
        w = {name: table[metrics[name]] for name, table in _CVSS3_WEIGHTS.items()}
        pr = _CVSS3_PR[scope][metrics["PR"]]
    except KeyError as e:
        raise ValueError(f"CVSS vector {vector!r}: missing or invalid metric {e}") from None
    iss = 1 - (1 - w["C"]) * (1 - w["I"]) * (1 - w["A"])
    changed = scope == "C"
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    exploitability = 8.22 * w["AV"] * w["AC"] * pr * w["UI"]
    if impact <= 0:
        return 0.0
    total = 1.08 * (impact + exploitability) if changed else impact + exploitability
    return _roundup(min(total, 10.0))


def severity_from_score(score: float) -> str:
    """Qualitative rating of a CVSS score: >=9 critical, >=7 high, >=4 medium, >0 low."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0 else "unknown"


def _severity_word(value: Any) -> str | None:
    if isinstance(value, str):
        return _SEVERITY_WORDS.get(value.strip().lower())
    return None


def _severity_from_cvss(entries: Any) -> str | None:
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("type") == "CVSS_V3" and isinstance(entry.get("score"), str):
            try:
                return severity_from_score(cvss3_base_score(entry["score"]))
            except ValueError:
                continue
    return None


def _severity(record: dict[str, Any], affected: dict[str, Any]) -> str:
    """database_specific.severity, else the affected entry's ecosystem_specific.severity, else CVSS v3."""
    return (
        _severity_word(_dict(record.get("database_specific")).get("severity"))
        or _severity_word(_dict(affected.get("ecosystem_specific")).get("severity"))
        or _severity_from_cvss(record.get("severity"))
        or _severity_from_cvss(affected.get("severity"))
        or "unknown"
    )


# --------------------------------------------------------------------------------------------------
# Ranges


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _in_range(version: Any, events: list[Any], parse: Callable[[str], Any]) -> bool:
    """OSV range evaluation: walk the events sorted by version. Raises ValueError on an unparsable one."""
    keyed: list[tuple[Any, int, str, str]] = []
    for event in events:
        for order, kind in enumerate(("introduced", "fixed", "last_affected")):
            value = _dict(event).get(kind)
            if isinstance(value, str):
                key = None if kind == "introduced" and value == "0" else parse(value)
                keyed.append((key, order, kind, value))
    # "introduced: 0" first; ties keep introduced before fixed/last_affected.
    keyed.sort(key=lambda k: (k[0] is not None, k[0] if k[0] is not None else 0, k[1]))
    affected = False
    for key, _, kind, _ in keyed:
        if kind == "introduced":
            affected = affected or key is None or version >= key
        elif (kind == "fixed" and version >= key) or (kind == "last_affected" and version > key):
            affected = False
    return affected


def _fixed_above(version: str, affected: dict[str, Any], ecosystem: str) -> list[str]:
    """The ``fixed`` events of an affected entry above ``version`` (all of them if incomparable)."""
    found: list[tuple[Any, str]] = []
    for rng in _list(affected.get("ranges")):
        rng = _dict(rng)
        if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue
        parse = _parser(ecosystem, rng["type"])
        for event in _list(rng.get("events")):
            fixed = _dict(event).get("fixed")
            if not isinstance(fixed, str):
                continue
            try:
                key = parse(fixed)
                if key > parse(version):
                    found.append((key, fixed))
            except (ValueError, TypeError):
                found.append((None, fixed))
    comparable = [(k, f) for k, f in found if k is not None]
    with contextlib.suppress(TypeError):  # SEMVER and ECOSYSTEM ranges in one entry: keep the database's order
        comparable.sort()
    return list(dict.fromkeys([f for _, f in comparable] + [f for k, f in found if k is None]))


def _version_listed(version: str, listed: list[Any], ecosystem: str) -> bool:
    if version in listed:
        return True
    if ecosystem == "Maven":
        wanted_maven = MavenVersion(version)
        return any(isinstance(item, str) and MavenVersion(item) == wanted_maven for item in listed)
    if ecosystem != "PyPI":
        return False
    try:
        wanted = Version(version)
    except InvalidVersion:
        return False
    for item in listed:
        try:
            if isinstance(item, str) and Version(item) == wanted:
                return True
        except InvalidVersion:
            continue
    return False


def affects(affected: dict[str, Any], ecosystem: str, version: str) -> bool:
    """Whether one ``affected[]`` entry covers ``version`` (explicit ``versions`` or a range)."""
    if _version_listed(version, _list(affected.get("versions")), ecosystem):
        return True
    for rng in _list(affected.get("ranges")):
        rng = _dict(rng)
        if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue  # GIT ranges name commits, not releases
        parse = _parser(ecosystem, rng["type"])
        try:
            if _in_range(parse(version), _list(rng.get("events")), parse):
                return True
        except (ValueError, TypeError):
            continue  # an unparsable version (queried or in the range): this range says nothing
    return False


# --------------------------------------------------------------------------------------------------
# Loading


def _records_from_json(text: bytes | str, source: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise BuildFailure(f"OSV database {source}: not valid JSON ({e})", where=source) from None
    items = data if isinstance(data, list) else [data]
    for i, item in enumerate(items):
        where = f" (entry {i})" if isinstance(data, list) else ""
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise BuildFailure(f"OSV database {source}: not an OSV vulnerability{where}: no string id", where=source)
        if "affected" in item and not isinstance(item["affected"], list):
            raise BuildFailure(f"OSV database {source}: {item['id']}: affected is not a list", where=source)
    return items


def _records_from_zip(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.endswith(".json"):
                    continue
                yield from _records_from_json(archive.read(info), f"{path}!{info.filename}")
    except (zipfile.BadZipFile, OSError) as e:
        raise BuildFailure(f"OSV database {path}: not a readable zip archive ({e})", where=str(path)) from None


def _records_from_file(path: Path) -> Iterable[dict[str, Any]]:
    if path.suffix.lower() == ".zip":
        return _records_from_zip(path)
    try:
        return _records_from_json(path.read_bytes(), str(path))
    except OSError as e:
        raise BuildFailure(f"OSV database {path}: cannot be read ({e.strerror or e})", where=str(path)) from None


def _database_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".json", ".zip"))
    if path.is_file():
        return [path]
    raise BuildFailure(f"OSV database {path}: no such file or directory", where=str(path))


def _index_keys(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(ecosystem, normalised name) of each PyPI/npm/Go/Maven package a record's ``affected`` entries name."""
    keys = []
    for affected in _list(record.get("affected")):
        package = _dict(_dict(affected).get("package"))
        ecosystem, name = package.get("ecosystem"), package.get("name")
        if ecosystem in ECOSYSTEMS and isinstance(name, str):
            keys.append((ecosystem, normalise_name(ecosystem, name)))
    return keys


# --------------------------------------------------------------------------------------------------
# The database


class OsvDatabase:
    """OSV records indexed by (ecosystem, normalised package name); withdrawn records are left out."""

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self._records: dict[str, dict[str, Any]] = {}
        self._index: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
        for record in records:
            self.add(record)

    @classmethod
    def load(cls, path: Path) -> OsvDatabase:
        """Load an OSV JSON file (one record or a list), a zip of them, or a directory of both."""
        db = cls()
        for file in _database_files(Path(path)):
            for record in _records_from_file(file):
                db.add(record)
        return db

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: dict[str, Any]) -> None:
        """Index one OSV record (a later record with the same id replaces the earlier one)."""
        vid = record["id"]
        if vid in self._records:
            self._unindex(vid)
        if record.get("withdrawn"):
            self._records.pop(vid, None)
            return
        self._records[vid] = record
        for affected in _list(record.get("affected")):
            for key in _index_keys({"affected": [affected]}):
                self._index.setdefault(key, []).append((vid, affected))

    def _unindex(self, vid: str) -> None:
        for key in _index_keys(self._records.pop(vid)):
            kept = [e for e in self._index.get(key, []) if e[0] != vid]
            if kept:
                self._index[key] = kept
            else:
                self._index.pop(key, None)

    def match(self, ecosystem: str, name: str, version: str) -> list[Vulnerability]:
        """Vulnerabilities affecting ``name`` at ``version`` in ``ecosystem`` (one of ECOSYSTEMS), by id.

        Records that are aliases of one another (a PYSEC and a GHSA advisory for the same flaw) are
        reported once, under the id that sorts first, with the most severe rating either gives.
        """
        hits: dict[str, Vulnerability] = {}
        for vid, affected in self._index.get((ecosystem, normalise_name(ecosystem, name)), []):
            if not affects(affected, ecosystem, version):
                continue
            record = self._records[vid]
            found = _vulnerability(record, affected, ecosystem, version)
            previous = hits.get(vid)
            hits[vid] = found if previous is None else _merge(previous, found)
        return _dedupe_aliases(sorted(hits.values(), key=lambda v: v.id))


def _vulnerability(record: dict[str, Any], affected: dict[str, Any], ecosystem: str, version: str) -> Vulnerability:
    given = record.get("summary")
    summary: str = given if isinstance(given, str) else ""
    if not summary and isinstance(record.get("details"), str):
        summary = record["details"].strip().split("\n", 1)[0][:200]
    return Vulnerability(
        id=record["id"],
        aliases=tuple(a for a in _list(record.get("aliases")) if isinstance(a, str)),
        summary=summary,
        severity=_severity(record, affected),
        fixed=tuple(_fixed_above(version, affected, ecosystem)),
    )


def _merge(first: Vulnerability, other: Vulnerability) -> Vulnerability:
    """Two reports of one flaw: union of aliases and fixes, the more severe rating."""
    severity = max(first.severity, other.severity, key=lambda s: _SEVERITY_RANK.get(s, 0))
    aliases = tuple(dict.fromkeys(a for a in (*first.aliases, other.id, *other.aliases) if a != first.id))
    fixed = tuple(dict.fromkeys((*first.fixed, *other.fixed)))
    return Vulnerability(first.id, aliases, first.summary or other.summary, severity, fixed)


def _dedupe_aliases(vulns: list[Vulnerability]) -> list[Vulnerability]:
    kept: list[Vulnerability] = []
    for vuln in vulns:
        names = {vuln.id, *vuln.aliases}
        for i, seen in enumerate(kept):
            if names & {seen.id, *seen.aliases}:
                kept[i] = _merge(seen, vuln)
                break
        else:
            kept.append(vuln)
    return kept
