"""Creating a component from its source: the repository's ``.choreo/`` descriptors, or OpenChoreo's
``workload.yaml``, become its spec."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from cellplane import API_VERSION
from cellplane.controlplane import lifecycle, resources
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.declare import PROJECT, Call, Subject, requires
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.sources import checkout
from cellplane.errors import CellplaneError
from cellplane.model import ComponentSpec, parse_document
from cellplane.model.meta import LABELS_SCHEMA, NAME_SCHEMA
from cellplane.openchoreo.repository import import_source, import_source_directory
from cellplane.sourcetree import subdirectory

router = api_router(tags=["components"])
# The owners become the new component's metadata: names, as the document's validation checks them.
OwnerPath = Annotated[str, PathParam(min_length=1, max_length=63, json_schema_extra=NAME_SCHEMA,
                                     description="a name (DNS-1123 label)")]


class ImportSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repository: str = Field(min_length=1, max_length=2000)
    branch: str | None = Field(default=None, max_length=250)
    ref: str | None = Field(default=None, max_length=250)
    path: str = Field(default=".", max_length=1000)


class ComponentImport(schemas.JsonBody):
    model_config = ConfigDict(extra="forbid")
    name: schemas.NameText = Field(max_length=63)
    source: ImportSource
    files: dict[str, str] | None = Field(
        default=None, description="descriptor files read by the client ({'.choreo/component.yaml': text}, or "
        "{'workload.yaml': text}); "
        "when absent the control plane reads them from the source")
    spec: schemas.documented(ComponentSpec) = Field(  # type: ignore[valid-type]
        default_factory=dict, description="spec fields that override the descriptors")
    labels: Annotated[dict[str, str], WithJsonSchema(LABELS_SCHEMA)] = Field(default_factory=dict)
    dryRun: bool = False


@router.mutation("POST", "/organizations/{org}/projects/{project}/component-imports", requires("components:create"),
                 PROJECT, action="create", subject=Subject("Component", lambda c: c.body.name), body=ComponentImport,
                 message=lambda c: f"from {c.body.source.repository}", dry_run=lambda c: c.body.dryRun,
                 status_code=201, response_model=None,
                 responses={201: {"model": schemas.ComponentImportResult, "description": "the component as stored"}})
def import_component(c: Call[ComponentImport], org: OwnerPath, project: OwnerPath) -> dict[str, Any]:
    """Create a component whose endpoints, connections and configuration come from its source."""
    s, body, work = c.session, c.body, c.work
    if body.files is None:
        with checkout(body.source.repository, body.source.branch, body.source.ref) as root:
            found = import_source_directory(subdirectory(root, body.source.path))
    else:
        found = import_source(body.files)
    # Precedence, lowest first: what the descriptors say (component-config's build), the request's source,
    # the request's spec.source. Anything but a mapping is left for the spec's validation to report.
    source = {**found.spec.get("source", {}), **body.source.model_dump(exclude_none=True)}
    given = body.spec.get("source", {})
    spec = {**found.spec, **body.spec, "source": {**source, **given} if isinstance(given, dict) else given}
    raw = {"apiVersion": API_VERSION, "kind": "Component",
           "metadata": {"name": body.name, "organization": org, "project": project, "labels": body.labels},
           "spec": spec}
    try:
        doc = parse_document(raw)
    except CellplaneError as e:
        if found.descriptor:
            e.message += f" (mapped from {found.descriptor})"
        raise
    doc.warnings = found.warnings
    place = resources.Scope(doc.info, org, project)
    lifecycle.create(s, doc, place, c.platform.keyring, c.who.user)
    work.message += f" ({found.descriptor or 'no descriptor'})"
    return {"component": resources.to_document(resources.get(s, place, doc.name)), "descriptor": found.descriptor,
            "warnings": found.warnings, "dryRun": body.dryRun}
