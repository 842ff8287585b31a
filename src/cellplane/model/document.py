"""The document envelope (apiVersion / kind / metadata / spec / status) and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from cellplane import API_VERSION
from cellplane.errors import FieldProblem, InvalidError, join_path, loc_to_path
from cellplane.model.component import ComponentSpec
from cellplane.model.kinds import (
    DataPlaneSpec,
    DeploymentPipelineSpec,
    EnvironmentSpec,
    OrganizationSpec,
    ProjectSpec,
)
from cellplane.model.meta import Metadata, drop_none

Scope = Literal["cluster", "organization", "project"]


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    scope: Scope
    spec: type[BaseModel]
    order: int  # apply order: owners before what they own

    @property
    def singular(self) -> str:
        return self.kind.lower()


KINDS: dict[str, KindInfo] = {
    k.kind: k
    for k in [
        KindInfo("Organization", "organizations", "cluster", OrganizationSpec, 0),
        KindInfo("DataPlane", "dataplanes", "organization", DataPlaneSpec, 1),
        KindInfo("Environment", "environments", "organization", EnvironmentSpec, 2),
        KindInfo("DeploymentPipeline", "deploymentpipelines", "organization", DeploymentPipelineSpec, 3),
        KindInfo("Project", "projects", "organization", ProjectSpec, 4),
        KindInfo("Component", "components", "project", ComponentSpec, 5),
    ]
}
BY_PLURAL: dict[str, KindInfo] = {k.plural: k for k in KINDS.values()}


def kind_info(word: str) -> KindInfo | None:
    """Find a kind by name, plural or singular, case-insensitively (``component``, ``Components``)."""
    w = word.lower()
    for info in KINDS.values():
        if w in (info.kind.lower(), info.plural):
            return info
    aliases = {"org": "Organization", "orgs": "Organization", "env": "Environment", "envs": "Environment",
               "pipeline": "DeploymentPipeline", "pipelines": "DeploymentPipeline", "dp": "DataPlane"}
    return KINDS.get(aliases.get(w, ""))


@dataclass
class Document:
    """A validated resource document."""

    kind: str
    metadata: Metadata
    spec: BaseModel
    warnings: list[str] = field(default_factory=list)

    @property
    def info(self) -> KindInfo:
        return KINDS[self.kind]

    @property
    def name(self) -> str:
        return self.metadata.name

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = drop_none(self.spec.model_dump(mode="json", by_alias=True))
        return spec


_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required",
}


def problems_from(error: ValidationError, prefix: str = "") -> list[FieldProblem]:
    out = []
    for e in error.errors(include_url=False):
        msg = _MESSAGES.get(e["type"], e["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(FieldProblem(join_path(prefix, loc_to_path(e["loc"])), msg))
    return out


def validate_spec(kind: str, spec: Any) -> tuple[BaseModel | None, list[FieldProblem]]:
    """Validate a spec alone; cross-field problems are added when the structure is sound."""
    model = KINDS[kind].spec
    try:
        parsed = model.model_validate(spec if spec is not None else {})
    except ValidationError as e:
        raw_rules = getattr(model, "raw_problems", None)
        extra_raw = [FieldProblem(join_path("spec", p.field), p.problem) for p in raw_rules(spec)] if raw_rules else []
        return None, problems_from(e, "spec") + extra_raw
    extra = getattr(parsed, "problems", None)
    problems = [FieldProblem(join_path("spec", p.field), p.problem) for p in extra()] if extra else []
    return parsed, problems


def parse_document(raw: Any) -> Document:
    """Validate one raw document; every problem is reported at once, as field paths."""
    if not isinstance(raw, dict):
        raise InvalidError("a document must be a mapping with apiVersion, kind, metadata and spec",
                           [FieldProblem("", f"expected a mapping, got {type(raw).__name__}")])
    problems: list[FieldProblem] = []
    for key in raw:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            problems.append(FieldProblem(str(key), "unknown field"))
    api_version = raw.get("apiVersion")
    if api_version is None:
        problems.append(FieldProblem("apiVersion", f"required (use '{API_VERSION}')"))
    elif api_version != API_VERSION:
        problems.append(FieldProblem("apiVersion", f"'{api_version}' is not supported (use '{API_VERSION}')"))
    kind = raw.get("kind")
    if kind is None:
        problems.append(FieldProblem("kind", "required"))
    elif not isinstance(kind, str):
        problems.append(FieldProblem("kind", f"must be a string: one of {', '.join(KINDS)}"))
        kind = None
    elif kind not in KINDS:
        problems.append(FieldProblem("kind", f"'{kind}' is not a kind; use one of {', '.join(KINDS)}"))

    metadata: Metadata | None = None
    try:
        metadata = Metadata.model_validate(raw.get("metadata"))
    except ValidationError as e:
        problems.extend(problems_from(e, "metadata"))

    spec = None
    if kind in KINDS:
        spec, spec_problems = validate_spec(kind, raw.get("spec"))
        problems.extend(spec_problems)
        if metadata is not None:
            scope = KINDS[kind].scope
            if scope != "project" and metadata.project is not None:
                problems.append(FieldProblem("metadata.project", f"a {kind} does not belong to a project"))
            if scope == "cluster" and metadata.organization is not None:
                problems.append(FieldProblem("metadata.organization", "an Organization has no owning organization"))

    if problems or metadata is None or spec is None or kind is None:
        name = raw.get("metadata", {}).get("name") if isinstance(raw.get("metadata"), dict) else None
        what = f"{kind or 'document'}" + (f" '{name}'" if isinstance(name, str) else "")
        raise InvalidError(f"{what} is not valid", problems)
    return Document(kind=kind, metadata=metadata, spec=spec)
