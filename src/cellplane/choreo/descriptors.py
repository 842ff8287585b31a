"""Map a repository's Choreo source descriptors (``.choreo/*.yaml``) onto a Cellplane Component spec.

Choreo reads a component's endpoints, connections and configuration form from one of three files,
by precedence: ``component.yaml`` (``schemaVersion`` 1.0, 1.1, 1.2), the older ``component-config.yaml``
(``core.choreo.dev/v1beta1``), then ``endpoints.yaml`` (``version: 0.1``). Reading them lets a team
bring a repository over without writing down again what it already declares.

The error policy is chosen so that a user sees everything wrong at once and loses nothing silently:

* YAML that does not parse, or a value of the wrong shape where Choreo's own validator would reject
  it too (``endpoints: 5``, ``port: abc``, an unknown endpoint type or visibility, a missing endpoint
  name or port) raises ``InvalidError``; every such problem of the file is collected into one
  error, each field written ``<file>: <key path>``.
* Everything else (unknown keys, names rewritten into DNS labels, Choreo features that Cellplane has
  no place for) becomes a warning naming the file and key path, and the import goes on.

Whatever is returned passes ``validate_spec("Component", spec)``: what cannot be made valid is left
out with a warning rather than handed on to fail later.
"""

from __future__ import annotations

import difflib
import logging
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cellplane.errors import FieldProblem, InvalidError, join_path
from cellplane.model.component import ENV_NAME, HTTP_ENDPOINTS
from cellplane.model.document import validate_spec

log = logging.getLogger(__name__)

COMPONENT_YAML = ".choreo/component.yaml"
COMPONENT_CONFIG_YAML = ".choreo/component-config.yaml"
ENDPOINTS_YAML = ".choreo/endpoints.yaml"
DESCRIPTOR_FILES = (COMPONENT_YAML, COMPONENT_CONFIG_YAML, ENDPOINTS_YAML)  # Choreo's precedence order

MAX_FILE_BYTES = 1024 * 1024
MAX_WARNINGS = 200  # a generated file with thousands of unknown keys should not bury the rest
SCHEMA_VERSIONS = ("1.0", "1.1", "1.2")
LATEST_SCHEMA_VERSION = SCHEMA_VERSIONS[-1]

ENDPOINT_TYPES = {"rest": "REST", "graphql": "GraphQL", "grpc": "gRPC", "ws": "WebSocket",
                  "websocket": "WebSocket", "tcp": "TCP", "udp": "UDP"}
PROXY_TYPES = {"REST", "GraphQL", "WebSocket"}
VISIBILITIES = {"project": "Project", "organization": "Organization", "public": "Public"}
# Choreo connection keys -> Cellplane ConnectionValue. Choreo calls the API key "ChoreoAPIKey".
CONNECTION_KEYS = {"serviceurl": "ServiceURL", "consumerkey": "ConsumerKey",
                   "consumersecret": "ConsumerSecret", "tokenurl": "TokenURL",
                   "choreoapikey": "APIKey", "apikey": "APIKey"}
SENSITIVE_KEYS = {"consumersecret", "choreoapikey", "apikey", "password"}
# Injected by Choreo for a connectionReference unless renamed in configurations.env; the OAuth ones
# only exist when the target is reached through the gateway (Organization or Public visibility).
OAUTH_KEYS = ("ConsumerKey", "ConsumerSecret", "TokenURL")
CONFIG_FORM_ENV_TYPES = {"string", "number", "boolean", "secret"}
CONFIG_FILE_TYPES = {"yaml", "json", "toml"}
MAX_ENV_VALUE = 65536

_VERSION_SEGMENT = re.compile(r"^v\d+(\.\d+)*$", re.IGNORECASE)
_REF_VISIBILITIES = {"PUBLIC", "ORGANIZATION", "PROJECT"}


@dataclass
class ChoreoImport:
    """What a repository's Choreo descriptors say, as a partial Component spec.

    ``descriptor`` is the file that was read (None when there is none, and then ``spec`` is empty);
    ``spec`` is JSON-ready and valid on its own; ``warnings`` list what was adjusted or left out.
    """

    descriptor: str | None
    spec: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading the files


def read_descriptor_files(directory: Path) -> dict[str, str]:
    """The descriptor files present under ``directory``, as ``{relative path: text}``.

    Files that cannot be trusted or read (a symlink leading outside ``directory``, anything over
    1 MiB, not a regular file, not UTF-8) are skipped and logged: a repository is untrusted input.
    """
    files, _ = _read_files(Path(directory))
    return files


def import_directory(directory: Path) -> ChoreoImport:
    """``import_choreo`` on the descriptors found under ``directory``.

    A refused file that Choreo would have used is an error, because falling back to a
    lower-precedence file would silently import a different component; a refused file that would
    have been ignored anyway is only a warning.
    """
    files, refused = _read_files(Path(directory))
    for rel, reason in refused.items():
        if not any(f in files for f in DESCRIPTOR_FILES[: DESCRIPTOR_FILES.index(rel)]):
            raise InvalidError(f"{rel} cannot be imported", [FieldProblem(rel, reason)])
    result = import_choreo(files)
    result.warnings[:0] = [f"{rel}: {reason}; ignored" for rel, reason in refused.items()]
    return result


def _read_files(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    root = directory.resolve()
    files: dict[str, str] = {}
    refused: dict[str, str] = {}
    for rel in DESCRIPTOR_FILES:
        path = directory / rel
        if not os.path.lexists(path):
            continue
        try:
            text = _read_one(root, path)
        except (_Refused, OSError) as e:
            refused[rel] = str(e) if isinstance(e, _Refused) else f"cannot be read ({e.strerror})"
            log.warning("Choreo descriptor %s skipped: %s", rel, refused[rel])
            continue
        files[rel] = text
    return files, refused


class _Refused(Exception):
    """A descriptor file that is present but will not be read."""


def _read_one(root: Path, path: Path) -> str:
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _Refused("is a broken symlink or cannot be resolved") from None
    if not resolved.is_relative_to(root):
        raise _Refused("is a symlink pointing outside the repository")
    # O_NONBLOCK so that a FIFO planted in the repository cannot hang the import.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as e:
        raise _Refused(f"cannot be opened ({e.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused("is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise _Refused("is larger than 1 MiB")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:  # grew since fstat
        raise _Refused("is larger than 1 MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _Refused("is not UTF-8 text") from None


# ---------------------------------------------------------------------------------------------
# Entry point


def import_choreo(files: Mapping[str, str]) -> ChoreoImport:
    """Map the descriptor texts (keyed by their paths in ``DESCRIPTOR_FILES``) onto a Component spec.

    Pure: it reads nothing but ``files``. Raises ``InvalidError`` only.
    """
    present = [rel for rel in DESCRIPTOR_FILES if rel in files]
    if not present:
        return ChoreoImport(None, {}, [])
    chosen = present[0]
    ignored = [f"{rel}: ignored, {chosen} takes precedence" for rel in present[1:]]
    data = _load_yaml(chosen, files[chosen])
    walker = _Walker(chosen)
    if data is None:
        walker.warn("", "the file is empty, nothing to import")
        parts = _Parts()
    elif isinstance(data, dict):
        parts = _READERS[chosen](walker, data)
    else:
        raise InvalidError(f"{chosen} is not a valid Choreo descriptor",
                           [FieldProblem(chosen, f"expected a mapping at the top level, got {_kind(data)}")])
    if walker.problems:
        raise InvalidError(f"{chosen} is not a valid Choreo descriptor", walker.problems)
    spec = parts.assemble(walker)
    _check(chosen, spec)
    return ChoreoImport(chosen, spec, ignored + walker.all_warnings())


def _load_yaml(file: str, text: str | bytes) -> Any:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidError(f"{file} is not UTF-8 text", [FieldProblem(file, "not UTF-8 text")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{file}: line {mark.line + 1}" if mark else file
        column = f" (column {mark.column + 1})" if mark else ""
        problem = f"{e.problem or e.context or 'invalid YAML'}{column}"
        raise InvalidError(f"{file} is not valid YAML", [FieldProblem(where, problem)]) from None
    except RecursionError:
        raise InvalidError(f"{file} is not valid YAML", [FieldProblem(file, "nested too deeply")]) from None
    except Exception as e:  # PyYAML lets some constructor errors escape as ValueError and the like
        problem = FieldProblem(file, f"cannot be read: {_show(e, 200)}")
        raise InvalidError(f"{file} is not valid YAML", [problem]) from None


def _check(file: str, spec: dict[str, Any]) -> None:
    """Last line of defence: the mapping is meant to always produce a valid spec."""
    _, problems = validate_spec("Component", spec)
    if problems:
        details = [FieldProblem(f"{file} -> {p.field}", p.problem) for p in problems]
        raise InvalidError(f"{file} could not be mapped onto a valid Component spec", details)


# ---------------------------------------------------------------------------------------------
# Walking a parsed file: typed reads that record problems and warnings under file-qualified paths


class _Walker:
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
            shown = _show(key)
            close = difflib.get_close_matches(shown, names, n=1) if len(shown) <= 40 else []
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.warn(join_path(path, shown), f"unknown key, ignored{hint}")

    def mapping(self, value: Any, path: str, *, required: bool = False) -> dict[Any, Any] | None:
        if value is None:
            if required:
                self.fail(path, "required")
            return None
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
            return None
        return value

    def items(self, value: Any, path: str) -> list[tuple[str, Any]]:
        """A list's items with their paths; a missing list is an empty one."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {_kind(value)}")
            return []
        return [(f"{path}[{i}]", item) for i, item in enumerate(value)]

    def text(self, value: Any, path: str, *, required: bool = False) -> str | None:
        """A string; numbers are accepted as their text, as Choreo's validator does."""
        if value is None:
            if required:
                self.fail(path, "required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(path, f"expected a string, got {_kind(value)}")
            return None
        out = _as_text(value)
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
            self.warn(path, f"'{_show(value)}' is not a DNS-1123 label; using '{out}'")
        return out


def dns_label(value: str) -> str:
    """Lower-case, separators to '-', anything else invalid dropped, at most 63 characters."""
    out = re.sub(r"[_\s.]+", "-", value.strip().lower())
    out = re.sub(r"[^a-z0-9-]", "", out)
    out = re.sub(r"-{2,}", "-", out).strip("-")
    return out[:63].rstrip("-")


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any, limit: int = 60) -> str:
    """``value`` shortened for a message."""
    text = _as_text(value)
    if text is None:
        return "<a number too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_text(value: Any) -> str | None:
    """``str(value)``, or None when there is none: YAML 1.1 reads ``1:00:00:...`` (base 60) as an
    integer that can be too long for ``str`` to print."""
    try:
        return str(value)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# What has been read, before it becomes a spec


@dataclass
class _Connection:
    """A Choreo connection that maps onto a Cellplane dependency on a component."""

    name: str
    choreo_name: str  # as written in Choreo, for configurations.env connectionRef look-ups
    path: str
    component: str
    project: str | None
    env: list[tuple[str, str]] = field(default_factory=list)  # (Cellplane value, env variable)
    default_keys: tuple[str, ...] = ()  # keys Choreo injects as CHOREO_<NAME>_<KEY> unless renamed


@dataclass
class _Parts:
    endpoints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    connections: list[_Connection] = field(default_factory=list)
    unmapped: dict[str, str] = field(default_factory=dict)  # Choreo connection name -> why it was left out
    env: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    files: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    proxy: dict[str, Any] | None = None
    source: dict[str, Any] | None = None

    def assemble(self, w: _Walker) -> dict[str, Any]:
        """The spec, with every clash Cellplane would reject resolved (and reported) here."""
        spec: dict[str, Any] = {
            "endpoints": self._endpoints(w),
            "dependencies": [],
            "configuration": {"env": [], "files": self._files(w)},
        }
        claimed: set[str] = set()
        spec["dependencies"] = self._dependencies(w, claimed)
        spec["configuration"]["env"] = self._env(w, claimed)
        if self.proxy is not None:
            spec["type"] = "api-proxy"
            spec["proxy"] = self.proxy
        if self.source:
            spec["source"] = self.source
        return spec

    def _endpoints(self, w: _Walker) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        routes: dict[tuple[int, str], str] = {}
        for path, ep in self.endpoints:
            route = (ep["port"], ep["basePath"])
            if route in routes:
                w.warn(path, f"port {route[0]} with base path {route[1]} is already served by "
                             f"{routes[route]}; endpoint left out")
                continue
            routes[route] = path
            ep["name"] = _unique(w, path + ".name", ep["name"], names)
            out.append(ep)
        return out

    def _dependencies(self, w: _Walker, claimed: set[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        for conn in self.connections:
            renamed = {value for value, _ in conn.env}
            defaults = [(k, f"CHOREO_{_env_word(conn.choreo_name)}_{k.upper()}")
                        for k in conn.default_keys if k not in renamed]
            env = []
            for value, variable in conn.env + defaults:
                if variable in claimed:
                    w.warn(conn.path, f"environment variable {variable} is already set elsewhere; "
                                      f"{value} not injected again")
                    continue
                claimed.add(variable)
                env.append({"from": value, "to": variable})
            dep: dict[str, Any] = {"name": _unique(w, conn.path + ".name", conn.name, names),
                                   "component": conn.component}
            if conn.project:
                dep["project"] = conn.project
            dep["env"] = env
            out.append(dep)
        return out

    def _env(self, w: _Walker, claimed: set[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path, var in self.env:
            if var["name"] in claimed:
                w.warn(path, f"environment variable {var['name']} is already set elsewhere; left out")
                continue
            claimed.add(var["name"])
            out.append(var)
        return out

    def _files(self, w: _Walker) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        mounts: set[str] = set()
        for path, item in self.files:
            if item["mountPath"] in mounts:
                w.warn(path, f"another file is already mounted at {item['mountPath']}; left out")
                continue
            mounts.add(item["mountPath"])
            item["name"] = _unique(w, path + ".name", item["name"], names)
            out.append(item)
        return out


def _unique(w: _Walker, path: str, name: str, used: set[str]) -> str:
    out, n = name, 1
    while out in used:
        n += 1
        suffix = f"-{n}"
        out = name[: 63 - len(suffix)].rstrip("-") + suffix
    if out != name:
        w.warn(path, f"'{name}' is used more than once; using '{out}'")
    used.add(out)
    return out


def _env_word(name: str) -> str:
    """Choreo's spelling of a connection name inside CHOREO_<NAME>_<KEY>."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


# ---------------------------------------------------------------------------------------------
# component.yaml


def _component_yaml(w: _Walker, data: dict[Any, Any]) -> _Parts:
    w.known_keys(data, "", ("schemaVersion", "endpoints", "dependencies", "configurations", "proxy"))
    version = _schema_version(w, data.get("schemaVersion"))
    parts = _Parts()
    for path, raw in w.items(data.get("endpoints"), "endpoints"):
        _add_endpoint(w, parts, raw, path, legacy=False)

    deps = w.mapping(data.get("dependencies"), "dependencies")
    if deps:
        w.known_keys(deps, "dependencies", ("connectionReferences", "serviceReferences"))
        refs = w.items(deps.get("connectionReferences"), "dependencies.connectionReferences")
        if refs:
            _needs(w, version, "1.1", "dependencies.connectionReferences")
        for path, raw in refs:
            _connection_reference(w, parts, raw, path)
        for path, raw in w.items(deps.get("serviceReferences"), "dependencies.serviceReferences"):
            _service_reference(w, parts, raw, path)

    conf = w.mapping(data.get("configurations"), "configurations")
    if conf:
        _needs(w, version, "1.1", "configurations")
        w.known_keys(conf, "configurations", ("env", "file"))
        for path, raw in w.items(conf.get("env"), "configurations.env"):
            _config_env(w, parts, raw, path, version)
        for path, raw in w.items(conf.get("file"), "configurations.file"):
            _needs(w, version, "1.2", path)
            _config_file(w, parts, raw, path)

    if data.get("proxy") is not None:
        proxy = w.mapping(data.get("proxy"), "proxy")
        if proxy is not None:
            parts.proxy = _proxy(w, proxy, "proxy")
    return parts


def _schema_version(w: _Walker, raw: Any) -> str | None:
    """The schema version as text; YAML reads ``1.2`` as a number and ``"1.2"`` as a string."""
    if raw is None:
        w.warn("schemaVersion", f"missing (Choreo requires it); read as {LATEST_SCHEMA_VERSION}")
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        w.fail("schemaVersion", f"expected a version such as {LATEST_SCHEMA_VERSION}, got {_kind(raw)}")
        return None
    version = (_as_text(raw) or "").strip()
    if isinstance(raw, int) and version:
        version += ".0"
    if version not in SCHEMA_VERSIONS:
        w.warn("schemaVersion", f"'{_show(version or raw)}' is not a known schema version "
                                f"({', '.join(SCHEMA_VERSIONS)}); read as {LATEST_SCHEMA_VERSION}")
        return None
    return version


def _needs(w: _Walker, version: str | None, minimum: str, path: str) -> None:
    if version is not None and version < minimum:
        w.warn(path, f"needs schemaVersion {minimum} or later (file says {version}); imported anyway")


# ---------------------------------------------------------------------------------------------
# Endpoints (component.yaml, and the flat form of component-config.yaml / endpoints.yaml)

_ENDPOINT_KEYS = ("name", "displayName", "service", "type", "networkVisibilities", "networkVisibility",
                  "schemaFilePath")
_LEGACY_ENDPOINT_KEYS = ("name", "port", "type", "networkVisibility", "context", "schemaFilePath")


def _add_endpoint(w: _Walker, parts: _Parts, raw: Any, path: str, *, legacy: bool) -> None:
    """One endpoint; the older files keep port and ``context`` flat, component.yaml under ``service``."""
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    holder: dict[Any, Any] | None
    if legacy:
        w.known_keys(data, path, _LEGACY_ENDPOINT_KEYS)
        holder, holder_path, base_key = data, path, "context"
    else:
        w.known_keys(data, path, _ENDPOINT_KEYS)
        holder_path, base_key = f"{path}.service", "basePath"
        holder = w.mapping(data.get("service"), holder_path, required=True)
        if holder is not None:
            w.known_keys(holder, holder_path, ("basePath", "port"))
    before = len(w.problems)
    name = w.text(data.get("name"), f"{path}.name", required=True)
    port = _port(w, holder.get("port"), f"{holder_path}.port") if holder is not None else None
    kind = _endpoint_type(w, data.get("type"), f"{path}.type")
    visibility = _visibilities(w, data, path, list_key=None if legacy else "networkVisibilities")
    if len(w.problems) > before or holder is None or name is None or port is None or kind is None:
        return
    base = _base_path(w, holder.get(base_key), f"{holder_path}.{base_key}", kind)
    if base is None:
        return
    if not visibility:
        visibility = ["Project"]
        if kind in HTTP_ENDPOINTS:
            visibility = ["Public"]
            w.warn(path, "no network visibility given; Choreo's default is Public, so the endpoint is Public")
    label = w.label(name, f"{path}.name", "endpoint")
    endpoint: dict[str, Any] = {"name": label, "port": port, "type": kind, "basePath": base,
                                "visibility": visibility}
    # A name that had to be rewritten (``Greeting Service``) is still the best display name.
    display = (None if legacy else w.text(data.get("displayName"), f"{path}.displayName")) or (
        name if label != name else None)
    if display:
        if len(display) > 200:
            w.warn(f"{path}.displayName", "longer than 200 characters; shortened")
        endpoint["displayName"] = display[:200]
    contract = _relative_file(w, data.get("schemaFilePath"), f"{path}.schemaFilePath")
    if contract:
        endpoint["contract"] = contract
    parts.endpoints.append((path, endpoint))


def _port(w: _Walker, raw: Any, path: str) -> int | None:
    """An integer port; a quoted number is accepted, ``abc`` or ``8080.5`` is not."""
    if raw is None:
        w.fail(path, "required")
        return None
    value = raw
    quoted = isinstance(raw, str) and re.fullmatch(r"\s*[0-9]{1,6}\s*", raw)
    if quoted or (isinstance(raw, float) and raw.is_integer()):
        value = int(raw)
    if isinstance(value, bool) or not isinstance(value, int):
        w.fail(path, f"'{_show(raw)}' is not a port number (1-65535)")
        return None
    if not 1 <= value <= 65535:
        w.fail(path, f"{_show(value)} is not a port number (1-65535)")
        return None
    return value


def _endpoint_type(w: _Walker, raw: Any, path: str, allowed: Iterable[str] | None = None) -> str | None:
    if raw is None:
        w.warn(path, "missing (Choreo requires it); using REST")
        return "REST"
    text = w.text(raw, path, required=True)
    if text is None:
        return None
    kind = ENDPOINT_TYPES.get(text.lower())
    accepted = set(allowed) if allowed is not None else set(ENDPOINT_TYPES.values())
    if kind is None or kind not in accepted:
        choreo = {"REST": "REST", "GraphQL": "GraphQL", "gRPC": "GRPC", "WebSocket": "WS", "TCP": "TCP",
                  "UDP": "UDP"}
        names = ", ".join(choreo[k] for k in choreo if k in accepted)
        w.fail(path, f"'{_show(text)}' is not one of {names}")
        return None
    return kind


def _visibilities(w: _Walker, data: dict[Any, Any], path: str, *,
                  list_key: str | None = "networkVisibilities") -> list[str]:
    """``networkVisibilities`` (a list) wins over the older single ``networkVisibility``.

    ``list_key`` is None for the older files, which only know the single form.
    """
    many = data.get(list_key) if list_key else None
    one = data.get("networkVisibility")
    if many is not None:
        if one is not None:
            w.warn(f"{path}.networkVisibility", "ignored: networkVisibilities takes priority")
        values = w.items(many, f"{path}.networkVisibilities")
    elif one is not None:
        values = [(f"{path}.networkVisibility", one)]
    else:
        return []
    out: list[str] = []
    for item_path, raw in values:
        text = w.text(raw, item_path, required=True)
        if text is None:
            continue
        visibility = VISIBILITIES.get(text.lower())
        if visibility is None:
            w.fail(item_path, f"'{_show(text)}' is not one of Project, Organization, Public")
        elif visibility not in out:
            out.append(visibility)
    return out


def _base_path(w: _Walker, raw: Any, path: str, kind: str) -> str | None:
    text = w.text(raw, path)
    if text is None:
        return "/"
    if kind not in HTTP_ENDPOINTS:
        if text != "/":
            w.warn(path, f"a {kind} endpoint has no base path in Cellplane; '{_show(text)}' dropped")
        return "/"
    if not text.startswith("/"):
        w.warn(path, f"'{_show(text)}' does not start with '/'; using '/{_show(text)}'")
        text = "/" + text
    if any(c.isspace() for c in text) or "?" in text or "#" in text:
        w.fail(path, f"'{_show(text)}' is not a plain URL path")
        return None
    return text


def _relative_file(w: _Walker, raw: Any, path: str) -> str | None:
    """A path inside the source; Choreo resolves a leading '/' against the component root too."""
    text = w.text(raw, path)
    if text is None:
        return None
    segments = text.replace("\\", "/").split("/")
    if ".." in segments:
        w.warn(path, f"'{_show(text)}' points outside the source; ignored")
        return None
    return "/".join(s for s in segments if s not in ("", ".")) or None


# ---------------------------------------------------------------------------------------------
# Connections: connectionReferences (1.1+) and serviceReferences (1.0, component-config.yaml)


@dataclass(frozen=True)
class ResourceRef:
    """A parsed Choreo connection target; ``kind`` is service, database, thirdparty or unknown."""

    kind: str
    project: str | None = None
    component: str | None = None
    visibility: str | None = None


def parse_resource_ref(ref: str) -> ResourceRef:
    """``[service:][/<project>/]<component>/<major-version>[/<endpoint>][/<visibility>]``.

    The major version (``v1``, ``v1.1``) anchors the parse: the segment before it is the component
    and the one before that, if any, the project. Database and third-party targets are recognised
    but carry nothing Cellplane can point a dependency at.
    """
    prefix, sep, rest = ref.partition(":")
    if sep:
        kind = prefix.strip().lower()
        if kind != "service":
            return ResourceRef(kind if kind in ("database", "thirdparty") else "unknown")
    else:
        rest = ref
    segments = [s for s in rest.strip().split("/") if s]
    index = next((i for i, s in enumerate(segments) if _VERSION_SEGMENT.match(s)), None)
    if index is None or index == 0 or index > 2 or len(segments) - index > 3:
        return ResourceRef("unknown")
    visibility = segments[-1].upper() if len(segments) > index + 1 else None
    if visibility not in _REF_VISIBILITIES:
        visibility = None
    return ResourceRef("service", project=segments[0] if index == 2 else None,
                       component=segments[index - 1], visibility=visibility)


def parse_service_reference(name: str) -> ResourceRef:
    """``choreo:///<org>/<project>/<component>/<endpoint>/<major-version>/<visibility>`` (schema 1.0)."""
    lowered = name.strip().lower()
    for kind in ("database", "thirdparty"):
        if lowered.startswith(kind + ":"):
            return ResourceRef(kind)
    if not lowered.startswith("choreo:///"):
        return ResourceRef("unknown")
    segments = name.strip()[len("choreo:///"):].split("/")
    if len(segments) != 6 or not all(segments) or not _VERSION_SEGMENT.match(segments[4]):
        return ResourceRef("unknown")
    visibility = segments[5].upper()
    return ResourceRef("service", project=segments[1], component=segments[2],
                       visibility=visibility if visibility in _REF_VISIBILITIES else None)


def _why_unmapped(target: ResourceRef, ref: str) -> str:
    if target.kind == "database":
        return "Choreo-managed database connections have no Cellplane equivalent"
    if target.kind == "thirdparty":
        return "third-party service connections need a URL, which the descriptor does not hold"
    return f"'{_show(ref)}' is not a reference Cellplane can resolve to a component"


def _connection_reference(w: _Walker, parts: _Parts, raw: Any, path: str) -> None:
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    w.known_keys(data, path, ("name", "resourceRef"))
    name = w.text(data.get("name"), f"{path}.name", required=True)
    ref = w.text(data.get("resourceRef"), f"{path}.resourceRef", required=True)
    if name is None or ref is None:
        return
    target = parse_resource_ref(ref)
    if target.kind != "service" or not target.component:
        reason = _why_unmapped(target, ref)
        w.warn(f"{path}.resourceRef", f"{reason}; connection '{_show(name)}' is not imported")
        parts.unmapped[name] = reason
        return
    oauth = target.visibility in ("PUBLIC", "ORGANIZATION")
    parts.connections.append(_Connection(
        name=w.label(name, f"{path}.name", "connection"), choreo_name=name, path=path,
        component=w.label(target.component, f"{path}.resourceRef", "component"),
        project=w.label(target.project, f"{path}.resourceRef", "project") if target.project else None,
        default_keys=("ServiceURL", *OAUTH_KEYS) if oauth else ("ServiceURL",),
    ))


def _service_reference(w: _Walker, parts: _Parts, raw: Any, path: str) -> None:
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    w.known_keys(data, path, ("name", "connectionConfig", "connectionType", "env"))
    ref = w.text(data.get("name"), f"{path}.name", required=True)
    pairs: list[tuple[str, str, str]] = []  # (path, Choreo key, env variable)
    for item_path, item in w.items(data.get("env"), f"{path}.env"):
        entry = w.mapping(item, item_path, required=True)
        if entry is None:
            continue
        w.known_keys(entry, item_path, ("from", "to"))
        key = w.text(entry.get("from"), f"{item_path}.from", required=True)
        variable = w.text(entry.get("to"), f"{item_path}.to", required=True)
        if key is not None and variable is not None:
            pairs.append((item_path, key, variable))
    if ref is None:
        return
    target = parse_service_reference(ref)
    if target.kind != "service" or not target.component:
        declared = ", ".join(variable for _, _, variable in pairs)
        also = f"; {declared} declared without a value, to be set by hand" if declared else ""
        w.warn(f"{path}.name", f"{_why_unmapped(target, ref)}; service reference not imported{also}")
        for item_path, key, variable in pairs:
            _manual_env(w, parts, item_path, variable, key)
        return
    component = w.label(target.component, f"{path}.name", "component")
    conn = _Connection(name=component, choreo_name=ref, path=path, component=component,
                       project=w.label(target.project, f"{path}.name", "project") if target.project else None)
    for item_path, key, variable in pairs:
        _bind(w, parts, conn, item_path, key, variable)
    parts.connections.append(conn)


def _bind(w: _Walker, parts: _Parts, conn: _Connection, path: str, key: str, variable: str) -> None:
    """Inject connection value ``key`` of ``conn`` as ``variable``, or say why it cannot be."""
    if not ENV_NAME.match(variable):
        w.warn(path, f"'{_show(variable)}' is not a valid environment variable name; left out")
        return
    value = CONNECTION_KEYS.get(key.lower())
    if value is None:
        w.warn(path, f"connection key '{_show(key)}' has no Cellplane equivalent; "
                     f"{variable} is declared without a value, to be set by hand")
        parts.env.append((path, _declared(variable, key)))
        return
    conn.env.append((value, variable))


def _manual_env(w: _Walker, parts: _Parts, path: str, variable: str, key: str) -> None:
    if not ENV_NAME.match(variable):
        w.warn(path, f"'{_show(variable)}' is not a valid environment variable name; left out")
        return
    parts.env.append((path, _declared(variable, key)))


def _declared(variable: str, key: str = "") -> dict[str, Any]:
    """An env entry whose value is supplied later, secret when the Choreo key is a credential."""
    return {"name": variable, "secret": True} if key.lower() in SENSITIVE_KEYS else {"name": variable}


# ---------------------------------------------------------------------------------------------
# configurations (1.1+: env from connections; 1.2: configuration form env and files)


def _config_env(w: _Walker, parts: _Parts, raw: Any, path: str, version: str | None) -> None:
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    w.known_keys(data, path, ("name", "value", "valueFrom"))
    name = w.text(data.get("name"), f"{path}.name", required=True)
    value = _env_value(w, data.get("value"), f"{path}.value")
    source = w.mapping(data.get("valueFrom"), f"{path}.valueFrom")
    if name is None:
        return
    if not ENV_NAME.match(name):
        w.warn(f"{path}.name", f"'{_show(name)}' is not a valid environment variable name; left out")
        return
    if value is not None:
        if source is not None:
            w.warn(f"{path}.valueFrom", "ignored: a literal value is given")
        parts.env.append((path, {"name": name, "value": value}))
        return
    if not source:
        parts.env.append((path, {"name": name}))
        return
    where = f"{path}.valueFrom"
    w.known_keys(source, where, ("connectionRef", "configForm", "configGroupRef"))
    if source.get("connectionRef") is not None:
        _config_connection_ref(w, parts, source["connectionRef"], f"{where}.connectionRef", name)
    elif source.get("configForm") is not None:
        _needs(w, version, "1.2", f"{where}.configForm")
        form = w.mapping(source["configForm"], f"{where}.configForm")
        secret = False
        if form is not None:
            w.known_keys(form, f"{where}.configForm", ("displayName", "required", "type"))
            kind = w.text(form.get("type"), f"{where}.configForm.type")
            if kind is not None and kind not in CONFIG_FORM_ENV_TYPES:
                w.warn(f"{where}.configForm.type", f"'{_show(kind)}' is not an environment variable type "
                                                    "(string, number, boolean, secret)")
            secret = kind == "secret"
        parts.env.append((path, {"name": name, "secret": True} if secret else {"name": name}))
    elif source.get("configGroupRef") is not None:
        w.warn(f"{where}.configGroupRef", f"configuration groups are not imported; {name} is declared "
                                          "without a value, to be set by hand")
        parts.env.append((path, {"name": name}))
    else:
        parts.env.append((path, {"name": name}))


def _env_value(w: _Walker, raw: Any, path: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if not isinstance(raw, str | int | float):
        w.fail(path, f"expected a string, got {_kind(raw)}")
        return None
    text = _as_text(raw)
    if text is None or len(text) > MAX_ENV_VALUE:
        w.fail(path, f"longer than {MAX_ENV_VALUE} characters")
        return None
    return text


def _config_connection_ref(w: _Walker, parts: _Parts, raw: Any, path: str, variable: str) -> None:
    ref = w.mapping(raw, path)
    if ref is None:
        return
    w.known_keys(ref, path, ("name", "key"))
    conn_name = w.text(ref.get("name"), f"{path}.name", required=True)
    key = w.text(ref.get("key"), f"{path}.key", required=True)
    if conn_name is None or key is None:
        return
    conn = next((c for c in parts.connections if c.choreo_name == conn_name), None)
    if conn is None:
        conn = next((c for c in parts.connections if c.name == dns_label(conn_name)), None)
    if conn is not None:
        _bind(w, parts, conn, path, key, variable)
        return
    why = parts.unmapped.get(conn_name, "no such connection in dependencies.connectionReferences")
    w.warn(f"{path}.name", f"connection '{_show(conn_name)}' is not imported ({why}); "
                           f"{variable} is declared without a value, to be set by hand")
    parts.env.append((path, _declared(variable, key)))


def _config_file(w: _Walker, parts: _Parts, raw: Any, path: str) -> None:
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    w.known_keys(data, path, ("name", "mountPath", "type", "values"))
    name = w.text(data.get("name"), f"{path}.name", required=True)
    mount = w.text(data.get("mountPath"), f"{path}.mountPath", required=True)
    kind = w.text(data.get("type"), f"{path}.type")
    if kind is not None and kind.lower() not in CONFIG_FILE_TYPES:
        w.warn(f"{path}.type", f"'{_show(kind)}' is not a configuration file type (yaml, json, toml)")
    keys, secret = _form_keys(w, data.get("values"), f"{path}.values")
    if name is None or mount is None:
        return
    mount_path = _mount_path(w, mount, name, f"{path}.mountPath")
    if mount_path is None:
        return
    item: dict[str, Any] = {"name": dns_label(name) or "config-file", "mountPath": mount_path}
    if secret:
        item["secret"] = True
    listed = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
    w.warn(path, f"Choreo fills '{_show(name)}' from its configuration form (keys: {listed or 'none'}); "
                 f"imported as file '{item['name']}' at {mount_path} without content, to be supplied")
    parts.files.append((path, item))


def _form_keys(w: _Walker, raw: Any, path: str) -> tuple[list[str], bool]:
    """The top-level key names of a configuration-form file, and whether any of them is secret.

    Nested ``properties``/``items`` describe a form, not a value, so they are not walked.
    """
    keys: list[str] = []
    secret = False
    for item_path, item in w.items(raw, path):
        entry = w.mapping(item, item_path, required=True)
        if entry is None:
            continue
        w.known_keys(entry, item_path, ("name", "valueFrom", "displayName", "type", "required", "properties",
                                        "items", "values"))
        key = w.text(entry.get("name"), f"{item_path}.name", required=True)
        if key is not None:
            keys.append(_show(key, 40))
        form = entry.get("valueFrom")
        form = form.get("configForm") if isinstance(form, dict) else None
        types = [entry.get("type"), form.get("type") if isinstance(form, dict) else None]
        secret = secret or "secret" in types
    return keys, secret


def _mount_path(w: _Walker, mount: str, name: str, path: str) -> str | None:
    """Choreo mounts file ``name`` inside directory ``mountPath``; Cellplane wants the file's path."""
    if ".." in mount.split("/") or ".." in name.split("/"):
        w.warn(path, f"'{_show(mount)}' leaves the container's file tree; file left out")
        return None
    if not mount.startswith("/"):
        w.warn(path, f"'{_show(mount)}' is not absolute; using '/{_show(mount)}'")
        mount = "/" + mount
    mount = posixpath.normpath(mount)
    if posixpath.basename(mount) == posixpath.basename(name):
        return mount
    return posixpath.normpath(posixpath.join(mount, name.lstrip("/")))


# ---------------------------------------------------------------------------------------------
# proxy (an API proxy component built from a repository)


def _proxy(w: _Walker, data: dict[Any, Any], path: str) -> dict[str, Any]:
    w.known_keys(data, path, ("type", "schemaFilePath", "docPath", "thumbnailPath", "networkVisibilities",
                              "networkVisibility"))
    kind = _endpoint_type(w, data.get("type"), f"{path}.type", PROXY_TYPES)
    proxy: dict[str, Any] = {"type": kind or "REST"}
    for key in ("schemaFilePath", "docPath", "thumbnailPath"):
        value = _relative_file(w, data.get(key), f"{path}.{key}")
        if value:
            proxy[key] = value
    proxy["visibility"] = _visibilities(w, data, path) or ["Public"]
    w.warn(path, "Choreo keeps the proxy's target URL outside the descriptor; set proxy.upstream")
    return proxy


# ---------------------------------------------------------------------------------------------
# component-config.yaml and endpoints.yaml (older formats)


def _component_config_yaml(w: _Walker, data: dict[Any, Any]) -> _Parts:
    w.known_keys(data, "", ("apiVersion", "kind", "metadata", "spec"))
    api_version = w.text(data.get("apiVersion"), "apiVersion")
    if api_version != "core.choreo.dev/v1beta1":
        w.warn("apiVersion", f"expected core.choreo.dev/v1beta1, got '{_show(api_version)}'; read anyway")
    kind = w.text(data.get("kind"), "kind")
    if kind != "ComponentConfig":
        w.warn("kind", f"expected ComponentConfig, got '{_show(kind)}'; read anyway")
    parts = _Parts()
    spec = w.mapping(data.get("spec"), "spec")
    if not spec:
        return parts
    w.known_keys(spec, "spec", ("inbound", "outbound", "build", "image", "configurations"))
    for path, raw in w.items(spec.get("inbound"), "spec.inbound"):
        _add_endpoint(w, parts, raw, path, legacy=True)
    outbound = w.mapping(spec.get("outbound"), "spec.outbound")
    if outbound:
        w.known_keys(outbound, "spec.outbound", ("serviceReferences",))
        for path, raw in w.items(outbound.get("serviceReferences"), "spec.outbound.serviceReferences"):
            _service_reference(w, parts, raw, path)
    build = w.mapping(spec.get("build"), "spec.build")
    if build:
        parts.source = _build_source(w, build, "spec.build")
    for key in ("image", "configurations"):
        if spec.get(key) is not None:
            w.warn(f"spec.{key}", "not imported: Cellplane builds from source and configures in its own spec")
    return parts


def _build_source(w: _Walker, build: dict[Any, Any], path: str) -> dict[str, Any] | None:
    """``spec.build`` pins a branch and optionally a commit; Cellplane takes one or the other."""
    w.known_keys(build, path, ("branch", "revision"))
    branch = w.text(build.get("branch"), f"{path}.branch")
    revision = w.text(build.get("revision"), f"{path}.revision")
    if branch and len(branch) > 250:
        w.warn(f"{path}.branch", "longer than 250 characters; ignored")
        branch = None
    if revision and len(revision) > 250:
        w.warn(f"{path}.revision", "longer than 250 characters; ignored")
        revision = None
    if revision:
        if branch:
            w.warn(f"{path}.branch", f"Cellplane takes a branch or a ref: using revision {revision}")
        return {"ref": revision}
    return {"branch": branch} if branch else None


def _endpoints_yaml(w: _Walker, data: dict[Any, Any]) -> _Parts:
    w.known_keys(data, "", ("version", "endpoints"))
    version = data.get("version")
    if version is None:
        w.warn("version", "missing (Choreo requires it); read as 0.1")
    elif (_as_text(version) or "").strip() != "0.1":
        w.warn("version", f"'{_show(version)}' is not a known version (0.1); read as 0.1")
    parts = _Parts()
    for path, raw in w.items(data.get("endpoints"), "endpoints"):
        _add_endpoint(w, parts, raw, path, legacy=True)
    return parts


_READERS: dict[str, Callable[[_Walker, dict[Any, Any]], _Parts]] = {
    COMPONENT_YAML: _component_yaml,
    COMPONENT_CONFIG_YAML: _component_config_yaml,
    ENDPOINTS_YAML: _endpoints_yaml,
}
