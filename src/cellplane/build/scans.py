"""The security scans a build runs over its result, and the policy that decides which findings fail it.

Three scans, none of which touches the network:

* :func:`scan_secrets` — credentials committed to the tree (detect-secrets, in process);
* :func:`scan_python` — risky Python constructs (bandit, in a subprocess);
* :func:`scan_dependencies` — locked dependency versions with known vulnerabilities (an offline
  :class:`~cellplane.build.osv.OsvDatabase`).

Every scan returns :class:`Finding` objects; a finding never carries a secret's value.
:class:`Policy` (from a component's ``failOn`` settings) picks the findings that block the build.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cellplane.build.osv import SEVERITIES, OsvDatabase, normalise_name
from cellplane.build.plan import BuildFailure

SKIPPED_DIRS = frozenset({".git", "node_modules", ".venv", "__pycache__"})
MAX_SCANNED_BYTES = 1024 * 1024  # larger files are data, not source: the secrets scan skips them
THRESHOLDS = ("critical", "high", "medium", "low", "none")

# detect-secrets types that are specific enough to be taken at face value.
CRITICAL_SECRET_TYPES = frozenset(
    {
        "AWS Access Key",
        "Azure Storage Account access key",
        "Discord Bot Token",
        "GitHub Token",
        "GitLab Token",
        "Mailchimp Access Key",
        "NPM tokens",
        "OpenAI Token",
        "Private Key",
        "PyPI Token",
        "SendGrid API Key",
        "Slack Token",
        "Square OAuth Secret",
        "Stripe Access Key",
        "Telegram Bot Token",
        "Twilio API Key",
    }
)
_ENTROPY_TYPES = frozenset({"Base64 High Entropy String", "Hex High Entropy String"})
# Plugins left out of the default set: an IP address is not a credential.
_DISABLED_PLUGINS = frozenset({"IPPublicDetector"})


@dataclass
class Finding:
    """One thing a scan found. ``file`` is relative (POSIX); ``line`` 0 when no line applies."""

    kind: str  # "secret" | "static-analysis" | "vulnerability" | "test"
    rule: str  # detect-secrets type, bandit test ("B602:subprocess_popen_with_shell_equals_true"), OSV id
    severity: str  # "critical" | "high" | "medium" | "low" | "unknown"
    file: str
    line: int = 0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Files


def _walk_files(root: Path) -> Iterator[Path]:
    """Regular files under root (symlinks not followed), outside SKIPPED_DIRS, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not path.is_symlink() and path.is_file():
                yield path


def _relative(path: Path | str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _looks_binary(path: Path) -> bool:
    try:
        if path.stat().st_size > MAX_SCANNED_BYTES:
            return True
        with path.open("rb") as f:
            return b"\0" in f.read(8192)
    except OSError:
        return True


def _is_lockfile(rel: str) -> bool:
    name = PurePosixPath(rel).name
    return (
        name in ("package-lock.json", "npm-shrinkwrap.json")
        or name.endswith(".lock")
        or bool(re.fullmatch(r"requirements.*\.lock", name))
    )


# --------------------------------------------------------------------------------------------------
# Secrets


def _secret_severity(secret_type: str) -> str:
    return "critical" if secret_type in CRITICAL_SECRET_TYPES else "high"


def scan_secrets(root: Path) -> list[Finding]:
    """Credentials in the tree, by detect-secrets' default plugins and filters.

    Findings name the file, line and kind of secret, never its value. High-entropy-string findings
    in lockfiles (integrity hashes) are dropped.
    """
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    root = Path(root)
    candidates = [_relative(p, root) for p in _walk_files(root) if not _looks_binary(p)]
    findings: list[Finding] = []
    with default_settings() as settings:
        settings.disable_plugins(*_DISABLED_PLUGINS)
        collection = SecretsCollection(root=str(root))
        for rel in candidates:
            collection.scan_file(rel)  # one at a time: scan_files() would fork a process pool
        for filename, secrets in collection.data.items():
            rel = _relative(Path(root, filename), root)
            for secret in secrets:
                if secret.type in _ENTROPY_TYPES and _is_lockfile(rel):
                    continue
                findings.append(
                    Finding(
                        kind="secret",
                        rule=secret.type,
                        severity=_secret_severity(secret.type),
                        file=rel,
                        line=secret.line_number or 0,
                        message=f"possible {secret.type} committed to the source; move it to a secret",
                    )
                )
    return sorted(findings, key=lambda f: (f.file, f.line, f.rule))


# --------------------------------------------------------------------------------------------------
# Python static analysis


def _has_python(root: Path) -> bool:
    return any(p.suffix == ".py" for p in _walk_files(root))


def scan_python(root: Path, timeout: float = 900) -> list[Finding]:
    """Bandit's findings over the Python files under root (virtualenvs and node_modules excluded)."""
    root = Path(root)
    if not _has_python(root):
        return []
    command = [
        sys.executable, "-m", "bandit", "-r", ".", "-f", "json", "-q",
        "-x", ",".join(f"*/{d}/*" for d in sorted(SKIPPED_DIRS)),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BuildFailure(f"Python static analysis (bandit) took longer than {timeout:g}s", where=str(root)) from None
    if done.returncode not in (0, 1):  # 1 means "issues found"
        raise BuildFailure(f"Python static analysis (bandit) failed: {_last_line(done.stderr)}", where=str(root))
    try:
        report = json.loads(done.stdout)
    except ValueError:
        why = _last_line(done.stderr)
        raise BuildFailure(f"Python static analysis (bandit) wrote no JSON report: {why}", where=str(root)) from None
    return sorted(
        (_bandit_finding(result, root) for result in report.get("results", [])),
        key=lambda f: (f.file, f.line, f.rule),
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def _bandit_finding(result: dict[str, Any], root: Path) -> Finding:
    severity = str(result.get("issue_severity", "")).lower()
    return Finding(
        kind="static-analysis",
        rule=f"{result.get('test_id', '?')}:{result.get('test_name', '?')}",
        severity=severity if severity in ("high", "medium", "low") else "unknown",
        file=_relative(Path(root, result.get("filename", "")), root),
        line=int(result.get("line_number") or 0),
        message=_redact_quoted(str(result.get("issue_text", ""))),
    )


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _redact_quoted(text: str) -> str:
    """Bandit quotes the value it suspects ("Possible hardcoded password: 'hunter2'"): never store it."""
    return _QUOTED.sub("'***'", text)


# --------------------------------------------------------------------------------------------------
# Dependencies


_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*([^\s;,#\\]+)")


def parse_requirements_pins(text: str) -> list[tuple[str, str, int]]:
    """``(name, version, line)`` for each ``name==version`` requirement; other lines are ignored.

    Handles comments (``# via ...``), ``--hash`` options, continuation lines, extras and environment
    markers (markers are not evaluated: a pin is reported whatever the platform).
    """
    pins: list[tuple[str, str, int]] = []
    continued = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "" if raw.lstrip().startswith("#") else re.split(r"\s#", raw, maxsplit=1)[0]
        was_continued, continued = continued, line.rstrip().endswith("\\")
        if was_continued or line.lstrip().startswith("-"):
            continue  # a continuation (--hash=...) or an option line (-r, -e, --index-url)
        m = _PIN.match(line)
        if m:
            pins.append((m[1], m[2], number))
    return pins


def _npm_name(key: str) -> str:
    return key.rsplit("node_modules/", 1)[-1]


def parse_package_lock(text: str) -> list[tuple[str, str, int]]:
    """``(name, version, line)`` for each installed package of a package-lock.json (v1, v2 or v3).

    Raises :class:`ValueError` if the text is not a JSON object.
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    key_lines = _json_key_lines(text)
    found: list[tuple[str, str, int]] = []
    packages = data.get("packages")
    if isinstance(packages, dict):
        for key, entry in packages.items():
            if "node_modules/" not in key or not isinstance(entry, dict) or entry.get("link"):
                continue  # the root package, workspaces and links are the app's own code
            given = entry.get("name")
            name: str = given if isinstance(given, str) else _npm_name(key)
            if isinstance(entry.get("version"), str):
                found.append((name, entry["version"], key_lines.get(key, 0)))
    else:
        found.extend(_v1_dependencies(data.get("dependencies"), key_lines))
    return found


def _v1_dependencies(deps: Any, key_lines: dict[str, int]) -> Iterator[tuple[str, str, int]]:
    if not isinstance(deps, dict):
        return
    for name, entry in deps.items():
        if not isinstance(entry, dict):
            continue
        version = entry.get("version")
        if isinstance(version, str):
            real, version = _npm_alias(name, version)
            yield real, version, key_lines.get(name, 0)
        yield from _v1_dependencies(entry.get("dependencies"), key_lines)


def _npm_alias(name: str, version: str) -> tuple[str, str]:
    """``npm:real-name@1.2.3`` (an aliased dependency) → ``("real-name", "1.2.3")``."""
    if version.startswith("npm:") and "@" in version[5:]:
        real, _, ver = version[4:].rpartition("@")
        return real, ver
    return name, version


def _json_key_lines(text: str) -> dict[str, int]:
    """Line of the first ``"key": {`` for each key, to point findings at a lockfile line."""
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        m = re.match(r'\s*"([^"]+)"\s*:\s*\{', line)
        if m:
            lines.setdefault(m[1], number)
    return lines


def _read_lock(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BuildFailure(f"{Path(path).name}: cannot be read ({e})", where=str(path)) from None


def _vulnerability_findings(
    db: OsvDatabase, ecosystem: str, pins: list[tuple[str, str, int]], lockfile: str
) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for name, version, line in pins:
        if (normalise_name(ecosystem, name), version) in seen:
            continue  # one package at one version, installed at several paths: reported once
        seen.add((normalise_name(ecosystem, name), version))
        for vuln in db.match(ecosystem, name, version):
            advice = f"fixed in {vuln.fixed[0]}" if vuln.fixed else "no fixed version known"
            message = f"{name}@{version}: {vuln.summary or vuln.id} ({advice})"
            findings.append(Finding("vulnerability", vuln.id, vuln.severity, lockfile, line, message))
    return findings


def scan_dependencies(db: OsvDatabase | None, python_lock: Path | None, node_lock: Path | None,
                      go_modules: list[tuple[str, str]] | None = None,
                      maven_pins: list[tuple[str, str]] | None = None, maven_file: str = "pom.xml") -> list[Finding]:
    """Known vulnerabilities of the pinned versions in a requirements lock, a package-lock.json, the Go
    modules compiled into a build's binaries (``(path, "v1.2.3")``, reported against go.sum) and/or the Maven
    artifacts a Java build's jar runs with (``("group:artifact", "1.2.3")``, reported against ``maven_file``,
    the build file that declared them: pom.xml or build.gradle). One index look-up per pin."""
    if db is None:
        return []
    findings: list[Finding] = []
    if go_modules:
        pins = [(name, version.removeprefix("v"), 0) for name, version in go_modules]
        findings += _vulnerability_findings(db, "Go", pins, "go.sum")
    if maven_pins:
        findings += _vulnerability_findings(db, "Maven", [(n, v, 0) for n, v in maven_pins], maven_file)
    if python_lock is not None:
        pins = parse_requirements_pins(_read_lock(python_lock))
        findings += _vulnerability_findings(db, "PyPI", pins, Path(python_lock).name)
    if node_lock is not None:
        try:
            pins = parse_package_lock(_read_lock(node_lock))
        except ValueError as e:
            name = Path(node_lock).name
            raise BuildFailure(f"{name}: not a valid package-lock.json ({e})", where=str(node_lock)) from None
        findings += _vulnerability_findings(db, "npm", pins, Path(node_lock).name)
    return findings


# --------------------------------------------------------------------------------------------------
# Policy


_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "unknown": 0}
# The least rank a finding needs to block: "low" lets even "unknown" block; "none" nothing.
_THRESHOLD_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 0, "none": 99}
_SPEC_KEYS = {
    "secrets": "secrets",
    "vulnerabilities": "vulnerabilities",
    "staticAnalysis": "static_analysis",
    "tests": "tests",
}


@dataclass
class Policy:
    """Which findings fail the build. Thresholds: "critical" | "high" | "medium" | "low" | "none"."""

    secrets: bool = True
    vulnerabilities: str = "critical"
    static_analysis: str = "none"
    tests: bool = True

    def __post_init__(self) -> None:
        for name in ("secrets", "tests"):
            if not isinstance(getattr(self, name), bool):
                raise BuildFailure(f"failOn.{name}: expected true or false", where=f"failOn.{name}")
        for name, key in (("vulnerabilities", "vulnerabilities"), ("static_analysis", "staticAnalysis")):
            if getattr(self, name) not in THRESHOLDS:
                raise BuildFailure(
                    f"failOn.{key}: expected one of {', '.join(THRESHOLDS)}, not {getattr(self, name)!r}",
                    where=f"failOn.{key}",
                )

    @classmethod
    def from_spec(cls, d: dict[str, Any] | None) -> Policy:
        """From ``{"failOn": {"secrets": bool, "vulnerabilities": str, "staticAnalysis": str, "tests": bool}}``."""
        fail_on = (d or {}).get("failOn") or {}
        if not isinstance(fail_on, dict):
            raise BuildFailure("failOn: expected a mapping", where="failOn")
        unknown = sorted(set(fail_on) - set(_SPEC_KEYS))
        if unknown:
            raise BuildFailure(
                f"failOn: unknown setting {unknown[0]!r} (expected {', '.join(_SPEC_KEYS)})", where="failOn"
            )
        values: dict[str, Any] = {_SPEC_KEYS[k]: v.lower() if isinstance(v, str) else v for k, v in fail_on.items()}
        return cls(**values)

    def blocking(self, findings: list[Finding]) -> list[Finding]:
        """The findings that fail the build under this policy, in their given order."""
        return [f for f in findings if self._blocks(f)]

    def _blocks(self, finding: Finding) -> bool:
        if finding.kind == "secret":
            return self.secrets
        if finding.kind == "test":
            return self.tests
        threshold = {"vulnerability": self.vulnerabilities, "static-analysis": self.static_analysis}.get(finding.kind)
        if threshold is None:
            return False
        return _RANK.get(finding.severity, 0) >= _THRESHOLD_RANK[threshold]


def summarise(findings: list[Finding]) -> dict[str, Any]:
    """Counts for display: ``{"total": n, "bySeverity": {sev: n}, "byKind": {kind: {sev: n}}}``."""
    by_severity: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    for f in findings:
        by_severity[f.severity] = by_severity.get(f.severity, 0) + 1
        kind = by_kind.setdefault(f.kind, {})
        kind[f.severity] = kind.get(f.severity, 0) + 1
    order = {s: i for i, s in enumerate(SEVERITIES)}

    def ordered(counts: dict[str, int]) -> dict[str, int]:
        return dict(sorted(counts.items(), key=lambda kv: order.get(kv[0], len(order))))

    return {
        "total": len(findings),
        "bySeverity": ordered(by_severity),
        "byKind": {k: ordered(v) for k, v in sorted(by_kind.items())},
    }
