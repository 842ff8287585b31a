"""The Component spec: what a unit of deployment is made of.

Cross-field rules live in ``ComponentSpec.problems`` rather than in pydantic validators so that
they can report exact field paths, all at once, next to the structural errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator, Field, WithJsonSchema

from cellplane.errors import FieldProblem
from cellplane.model import scaling as scaling_rules
from cellplane.model.meta import NAME_SCHEMA, Name, Strict
from cellplane.model.scaling import Scaling

ComponentType = Literal["service", "web-app", "scheduled-task", "manual-task", "webhook", "api-proxy", "worker"]
EndpointType = Literal["REST", "GraphQL", "gRPC", "WebSocket", "TCP", "UDP"]
Visibility = Literal["Project", "Organization", "Public"]
BuildMode = Literal["auto", "procfile", "dockerfile", "command"]
ConnectionValue = Literal["ServiceURL", "APIKey", "ConsumerKey", "ConsumerSecret", "TokenURL"]

TASK_TYPES = {"scheduled-task", "manual-task"}
HTTP_ENDPOINTS = {"REST", "GraphQL", "WebSocket"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
API_VERSION = re.compile(r"^v?[0-9]{1,6}\.[0-9]{1,6}$")
API_MAJOR = re.compile(r"^v?[0-9]{1,6}$")
TRACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
QUANTITY_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")
QUANTITY_MEMORY = re.compile(r"^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$")


def _env_name(value: str) -> str:
    if not ENV_NAME.fullmatch(value):
        raise ValueError(f"'{value}' is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    return value


def _relative_path(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"'{value}' must be a relative path inside the source, without '..'")
    return value


def _base_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"'{value}' must start with '/'")
    if any(c.isspace() for c in value) or "?" in value or "#" in value:
        raise ValueError(f"'{value}' must be a plain URL path (no spaces, '?' or '#')")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"'{value}' must be an absolute path without '..'")
    return value


# Single-field rules are validators, so that they are reported together with every other problem.
def _cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f"'{value}' is not a valid cron expression")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' is not a known time zone (e.g. UTC, Europe/Berlin)") from None
    return value


def _absolute_url(value: str) -> str:
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        raise ValueError(f"'{value}' is not an absolute URL")
    return value


def _quantity(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"'{value}' is not a {what}")
        return value

    return check


# Each single-field rule is stated in the JSON schema too (the OpenAPI document), so that what is valid by the schema
# is what the validators accept; ``not`` states what a validator refuses that one pattern cannot say.
_DOTDOT = {"pattern": r"(^|/)\.\.(/|$)"}
EnvName = Annotated[str, AfterValidator(_env_name), WithJsonSchema({"type": "string", "pattern": ENV_NAME.pattern})]
RelativePath = Annotated[str, AfterValidator(_relative_path),
                         WithJsonSchema({"type": "string", "not": {"anyOf": [{"pattern": "^/"}, _DOTDOT]}})]
# ``str.isspace`` is true of \x1c-\x1f and \x85 too, which a JSON schema's \s (ECMAScript's) leaves out.
BasePath = Annotated[str, AfterValidator(_base_path),
                     WithJsonSchema({"type": "string", "pattern": r"^/[^\s\u001c-\u001f\u0085?#]*$"})]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path),
                         WithJsonSchema({"type": "string", "pattern": "^/", "not": _DOTDOT})]
Cron = Annotated[str, AfterValidator(_cron)]
TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]
AbsoluteUrl = Annotated[str, AfterValidator(_absolute_url),
                        WithJsonSchema({"type": "string", "pattern": "^[a-zA-Z][a-zA-Z0-9+.-]*://"})]
CpuQuantity = Annotated[str, AfterValidator(_quantity(QUANTITY_CPU, "CPU quantity (e.g. 500m, 1, 1.5)")),
                        WithJsonSchema({"type": "string", "pattern": QUANTITY_CPU.pattern})]
MemoryQuantity = Annotated[str, AfterValidator(_quantity(QUANTITY_MEMORY, "memory quantity (e.g. 256Mi, 1Gi)")),
                           WithJsonSchema({"type": "string", "pattern": QUANTITY_MEMORY.pattern})]


def _api_version(value: str) -> str:
    if not API_VERSION.fullmatch(value):
        raise ValueError(f"'{value}' is not an API version: give MAJOR.MINOR (e.g. 1.3 or v1.3)")
    return value.removeprefix("v")


def _api_major(value: str) -> str:
    if not API_MAJOR.fullmatch(value):
        raise ValueError(f"'{value}' is not an API major version (e.g. v1)")
    return "v" + value.removeprefix("v")


def _track_name(value: str) -> str:
    if not TRACK_NAME.fullmatch(value) or ".." in value or value.endswith((".", "/", ".lock")):
        raise ValueError(f"'{value}' is not a valid track name (a git branch name such as main or release-1.x)")
    return value


ApiVersion = Annotated[str, Field(max_length=20), AfterValidator(_api_version),
                      WithJsonSchema({"type": "string", "maxLength": 20, "pattern": API_VERSION.pattern})]
ApiMajor = Annotated[str, Field(max_length=20), AfterValidator(_api_major),
                     WithJsonSchema({"type": "string", "maxLength": 20, "pattern": API_MAJOR.pattern})]
TRACK_SCHEMA: dict[str, Any] = {
    "type": "string", "minLength": 1, "maxLength": 100, "pattern": TRACK_NAME.pattern,
    "not": {"anyOf": [{"pattern": r"\.\."}, {"pattern": r"[./]$"}, {"pattern": r"\.lock$"}]}}
TrackName = Annotated[str, Field(max_length=100), AfterValidator(_track_name), WithJsonSchema(TRACK_SCHEMA)]
# Values per environment, keyed by the environment's name.
PerEnvironment = Annotated[dict[Name, str], WithJsonSchema({"type": "object", "propertyNames": NAME_SCHEMA,
                                                             "additionalProperties": {"type": "string"}})]


class Track(Strict):
    """A deployment track: builds of one branch, serving one API version."""

    name: TrackName = Field(description="the git branch this track builds")
    version: ApiVersion = Field(default="1.0", description="API version MAJOR.MINOR; routes carry v<MAJOR>, and the "
                                "newest minor version of a major serves it")
    autoDeploy: bool = Field(default=False, description="deploy every succeeded build of this track to the "
                             "pipeline's first environment")


class Source(Strict):
    repository: str | None = Field(default=None, description="git URL, or a path on the control plane's machine")
    branch: str | None = Field(default=None, max_length=250)
    ref: str | None = Field(default=None, max_length=250, description="tag or commit, instead of a branch")
    path: RelativePath = Field(default=".", description="sub-path of the component inside the repository")


class Build(Strict):
    mode: BuildMode = "auto"
    dockerfile: RelativePath | None = None
    command: str | None = Field(default=None, max_length=4000, description="explicit build command")
    run: str | None = Field(default=None, max_length=4000, description="explicit start command")
    language: str | None = Field(default=None, max_length=40)
    languageVersion: str | None = Field(default=None, max_length=40)
    test: str | None = Field(default=None, max_length=4000,
                             description="unit-test command, run during the build with dependencies installed")
    timeoutSeconds: int | None = Field(default=None, ge=5, le=86400,
                                       description="build timeout (the control plane's default when unset)")
    autoBuild: bool = Field(default=False, description="build on every git push")


class Endpoint(Strict):
    name: Name
    displayName: str | None = Field(default=None, max_length=200)
    port: int = Field(ge=1, le=65535)
    type: EndpointType = "REST"
    basePath: BasePath = "/"
    visibility: list[Visibility] = Field(default_factory=lambda: list[Visibility](["Project"]), min_length=1,
                                         json_schema_extra={"uniqueItems": True})
    contract: RelativePath | None = Field(default=None, description="OpenAPI / GraphQL SDL file in the source")


class ConnectionEnv(Strict):
    from_: ConnectionValue = Field(alias="from")
    to: EnvName


class Dependency(Strict):
    name: Name
    component: Name | None = Field(default=None, description="target component (with project: another project)")
    project: Name | None = None
    endpoint: Name | None = None
    version: ApiMajor | None = Field(default=None, description="the target's API major version (e.g. v1); default: "
                                     "the version of the target's default track")
    url: AbsoluteUrl | None = Field(default=None, max_length=2000, description="external URL instead of a component")
    env: list[ConnectionEnv] = Field(default_factory=list, description="values injected as env variables")


class EnvVar(Strict):
    name: EnvName
    value: str | None = Field(default=None, max_length=65536)
    secret: bool = False
    environments: PerEnvironment = Field(default_factory=dict, description="per-environment values")


class ConfigFile(Strict):
    name: Name
    mountPath: AbsolutePath
    content: str | None = Field(default=None, max_length=1_048_576)
    secret: bool = False
    environments: PerEnvironment = Field(default_factory=dict)


class Configuration(Strict):
    env: list[EnvVar] = Field(default_factory=list)
    files: list[ConfigFile] = Field(default_factory=list)


class Schedule(Strict):
    cron: Cron = Field(description="five fields, or six with seconds last (e.g. '* * * * * */10')")
    timezone: TimeZone = "UTC"
    concurrencyPolicy: Literal["Forbid", "Allow"] = Field(
        default="Forbid", description="Forbid: skip a run while the previous one still runs; Allow: overlap")


class Probe(Strict):
    path: str | None = Field(default=None, max_length=2000,
                             description="HTTP GET path (a 2xx or 3xx answer passes); without it, a TCP connect")
    port: int | None = Field(default=None, ge=1, le=65535, description="default: the replica's port")
    initialDelaySeconds: float = Field(default=0, ge=0, le=3600)
    periodSeconds: float = Field(default=1, gt=0, le=3600)
    timeoutSeconds: float = Field(default=1, gt=0, le=600)
    failureThreshold: int = Field(default=3, ge=1, le=100)


class Health(Strict):
    readiness: Probe | None = Field(default=None, description="when a replica gets traffic (default: TCP connect)")
    liveness: Probe | None = Field(default=None, description="when a replica is restarted (default: never)")
    gracePeriodSeconds: float = Field(default=10, ge=0, le=3600, description="SIGTERM to SIGKILL")


class Resources(Strict):
    cpu: CpuQuantity | None = Field(default=None, description="e.g. 500m or 2")
    memory: MemoryQuantity | None = Field(default=None, description="e.g. 256Mi or 1Gi")


class Proxy(Strict):
    type: EndpointType = "REST"
    upstream: str | None = Field(default=None, max_length=2000)
    schemaFilePath: RelativePath | None = None
    docPath: RelativePath | None = None
    thumbnailPath: RelativePath | None = None
    visibility: list[Visibility] = Field(default_factory=lambda: list[Visibility](["Public"]), min_length=1,
                                         json_schema_extra={"uniqueItems": True})


class ComponentSpec(Strict):
    type: ComponentType = "service"
    displayName: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    source: Source = Field(default_factory=Source)
    build: Build = Field(default_factory=Build)
    endpoints: list[Endpoint] = Field(default_factory=list)
    dependencies: list[Dependency] = Field(default_factory=list)
    configuration: Configuration = Field(default_factory=Configuration)
    schedule: Schedule | None = None
    replicas: int = Field(default=1, ge=0, le=100)
    scaling: Scaling | None = Field(default=None, description="the replica count follows the load, within these "
                                    "bounds (docs/scaling.md); default: scaled to zero when idle outside production "
                                    "(a service, web-app or webhook with HTTP endpoints and replicas 1)")
    resources: Resources = Field(default_factory=Resources)
    health: Health | None = None
    proxy: Proxy | None = None
    tracks: list[Track] = Field(default_factory=list, description="deployment tracks; without any, one track (the "
                                "source branch, or 'default') serving version 1.0")

    def problems(self) -> list[FieldProblem]:
        """Cross-field rules, each reported at the exact path it concerns."""
        out: list[FieldProblem] = []

        def add(path: str, problem: str) -> None:
            out.append(FieldProblem(path, problem))

        if self.source.branch and self.source.ref:
            add("source.ref", "give a branch or a ref, not both")
        if self.build.mode == "command" and not (self.build.command or self.build.run):
            add("build.command", "build mode 'command' needs a build command or a run command")
        if self.build.dockerfile and self.build.mode not in ("dockerfile", "auto"):
            add("build.dockerfile",
                f"a Dockerfile is only used with build mode 'dockerfile' (mode is '{self.build.mode}')")

        if self.type == "scheduled-task" and self.schedule is None:
            add("schedule", "a scheduled-task needs a schedule (cron)")
        if self.type != "scheduled-task" and self.schedule is not None:
            add("schedule", f"only scheduled-task components take a schedule (type is '{self.type}')")
        if self.type in TASK_TYPES and self.health is not None:
            add("health", f"a {self.type} runs to completion and takes no health checks")
        for name in ("readiness", "liveness"):
            probe = getattr(self.health, name) if self.health else None
            if probe and probe.path is not None and not probe.path.startswith("/"):
                add(f"health.{name}.path", f"'{probe.path}' must start with '/'")
        if self.type in TASK_TYPES and self.endpoints:
            add("endpoints", f"a {self.type} runs to completion and exposes no endpoints")
        if self.type == "api-proxy" and self.proxy is None:
            add("proxy", "an api-proxy component needs a proxy section")
        if self.type != "api-proxy" and self.proxy is not None:
            add("proxy", f"only api-proxy components take a proxy section (type is '{self.type}')")

        _duplicates(out, "endpoints", [e.name for e in self.endpoints], "name")
        _duplicates(out, "endpoints", [f"{e.port}{e.basePath}" for e in self.endpoints], "port",
                    "another endpoint already serves this port and base path")
        for i, ep in enumerate(self.endpoints):
            _duplicates(out, f"endpoints[{i}].visibility", list(ep.visibility), None)
            if ep.type not in HTTP_ENDPOINTS and ep.basePath != "/":
                add(f"endpoints[{i}].basePath", f"a {ep.type} endpoint has no base path")

        _duplicates(out, "dependencies", [d.name for d in self.dependencies], "name")
        for i, dep in enumerate(self.dependencies):
            if bool(dep.component) == bool(dep.url):
                add(f"dependencies[{i}]", "give either a component (with its endpoint) or an external url")
            if dep.url and (dep.project or dep.endpoint):
                add(f"dependencies[{i}].url", "an external url dependency takes no project or endpoint")
            _duplicates(out, f"dependencies[{i}].env", [e.to for e in dep.env], "to")

        injected = [e.name for e in self.configuration.env] + [e.to for d in self.dependencies for e in d.env]
        _duplicates(out, "configuration.env", [e.name for e in self.configuration.env], "name")
        for i, dep in enumerate(self.dependencies):
            for j, e in enumerate(dep.env):
                if injected.count(e.to) > 1 and e.to in {v.name for v in self.configuration.env}:
                    add(f"dependencies[{i}].env[{j}].to", f"'{e.to}' is also set in configuration.env")
        _duplicates(out, "configuration.files", [f.name for f in self.configuration.files], "name")
        _duplicates(out, "configuration.files", [f.mountPath for f in self.configuration.files], "mountPath")

        _duplicates(out, "tracks", [t.name for t in self.tracks], "name")

        if self.scaling is not None:
            out += scaling_rules.problems(self.model_dump(mode="json", include={"type", "endpoints", "scaling"}))
        return out

    @staticmethod
    def raw_problems(raw: Any) -> list[FieldProblem]:
        """The duplicate-name rules on a spec that failed structural validation, so that they are
        reported together with the structural problems rather than only once those are fixed."""
        out: list[FieldProblem] = []
        if not isinstance(raw, dict):
            return out
        given = raw.get("configuration")
        configuration: dict[str, Any] = given if isinstance(given, dict) else {}
        for base, items, fields in (("endpoints", raw.get("endpoints"), ("name",)),
                                    ("dependencies", raw.get("dependencies"), ("name",)),
                                    ("configuration.env", configuration.get("env"), ("name",)),
                                    ("configuration.files", configuration.get("files"), ("name", "mountPath"))):
            if not isinstance(items, list):
                continue
            for name in fields:
                # Values that are not strings are structural problems already; they never count as duplicates.
                values = [item.get(name) if isinstance(item, dict) and isinstance(item.get(name), str) else object()
                          for item in items]
                _duplicates(out, base, values, name)
        return out

    def environment_names(self) -> set[str]:
        """Every environment named in per-environment configuration values."""
        names: set[str] = set()
        items: list[EnvVar | ConfigFile] = [*self.configuration.env, *self.configuration.files]
        for item in items:
            names.update(item.environments)
        if self.scaling is not None:
            names.update(self.scaling.environments)
        return names


def _duplicates(out: list[FieldProblem], base: str, values: list[Any], field: str | None,
                problem: str | None = None) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            path = f"{base}[{i}].{field}" if field else f"{base}[{i}]"
            out.append(FieldProblem(path, problem or f"'{value}' is used more than once"))
        seen.add(value)
