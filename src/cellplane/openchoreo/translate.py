"""The documents of one apply request with OpenChoreo's among them: each ``openchoreo.dev/v1alpha1`` document made a
``cellplane.dev/v1alpha1`` one, Workloads merged into their Components, the others passed on as they are.

A Workload is not a resource of its own in Cellplane: what it says (endpoints, connections, env, files, start
command) is part of its Component's spec, so it is merged into the Component of the same request that owns it, or,
when the request has none, into the stored one (``Translation.pending``: the caller looks it up, as OpenChoreo's
builds apply a new Workload to a Component that exists; ``with_workload`` merges). A ReleaseBinding is a deploy
request the caller makes once the documents are stored (``Translation.bindings``); a SecretReference and the kinds
with no equivalent make nothing but a warning (``Translation.notes``).
Problems are reported at ``documents[i].<path as written>``; ``Translation.locate`` takes a problem that the
Cellplane document made from it has (found when it is validated or stored) back to where its value was written.
Pure and linear in the request's size: one pass to map, one to merge.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cellplane import API_VERSION
from cellplane.errors import CellplaneError, FieldProblem, join_path
from cellplane.openchoreo.actions import NO_EQUIVALENT, Binding, no_equivalent, release_binding, secret_reference
from cellplane.openchoreo.component import component_spec
from cellplane.openchoreo.meta import read_metadata
from cellplane.openchoreo.platform import (
    dataplane_hint,
    dataplane_spec,
    environment_spec,
    organization_spec,
    pipeline_spec,
    project_spec,
)
from cellplane.openchoreo.reader import Reader, written_at
from cellplane.openchoreo.workload import Parts, workload_spec

GROUP = "openchoreo.dev/"
OPENCHOREO_API_VERSION = "openchoreo.dev/v1alpha1"
_SpecMapper = Callable[[Reader, dict[Any, Any], dict[str, str]], dict[str, Any]]
PLATFORM_KINDS: dict[str, _SpecMapper] = {
    "Organization": organization_spec,
    "DataPlane": lambda r, spec, _: dataplane_spec(r, spec),
    "Environment": environment_spec,
    "DeploymentPipeline": pipeline_spec,
    "Project": project_spec,
}
KINDS = (*PLATFORM_KINDS, "Component", "Workload")
# Kinds read that make no Cellplane document: a deploy request, and a warning naming what to set.
REQUESTS = ("ReleaseBinding", "SecretReference")


def is_openchoreo(raw: Any) -> bool:
    """Whether a raw document claims to be OpenChoreo's (its apiVersion is in the ``openchoreo.dev`` group)."""
    return isinstance(raw, dict) and isinstance(raw.get("apiVersion"), str) and raw["apiVersion"].startswith(GROUP)


@dataclass
class Mapped:
    """A Cellplane document made from OpenChoreo's: its warnings, and where each of its fields came from."""

    warnings: list[str] = field(default_factory=list)
    origins: dict[str, tuple[int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingWorkload:
    """A Workload whose Component is not in the request: it applies to the stored one, if there is one."""

    index: int
    organization: str | None  # its namespace; None: the request's organization
    project: str
    component: str
    spec: dict[str, Any]  # the Component spec fields it sets


@dataclass
class Translation:
    documents: list[tuple[int, Any]]  # (index in the request, a cellplane.dev document or what was given)
    mapped: dict[int, Mapped]
    problems: list[FieldProblem]  # at documents[i].<path as written>
    pending: list[PendingWorkload] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)  # ReleaseBindings: deploys, after the documents are stored
    skipped: list[int] = field(default_factory=list)  # documents that make nothing: their warnings are notes()

    def with_workload(self, workload: PendingWorkload, stored: dict[str, Any] | None) -> None:
        """Add the stored Component document ``stored`` with ``workload``'s fields in its spec, as the Workload's
        document; None (no such Component) is a problem at the Workload's owner."""
        if stored is None:
            self.problems.append(FieldProblem(
                f"documents[{workload.index}].spec.owner.componentName",
                f"no Component '{workload.component}' of project '{workload.project}' in this apply or stored: "
                "apply the Workload together with its Component, or after it"))
            return
        spec = copy.deepcopy(stored.get("spec") or {})
        _merge(spec, workload.spec)
        document = {"apiVersion": API_VERSION, "kind": "Component", "metadata": stored["metadata"], "spec": spec}
        self.documents.append((workload.index, document))

    def warnings(self, index: int) -> list[str]:
        return list(self.mapped[index].warnings) if index in self.mapped else []

    def notes(self) -> list[str]:
        """The warnings of the documents that make nothing (a SecretReference, a kind with no equivalent), one line
        each, prefixed ``documents[i]: ``."""
        return [f"documents[{i}]: {w}" for i in self.skipped for w in self.warnings(i)]

    def locate(self, index: int, error: CellplaneError) -> list[FieldProblem]:
        """``error``'s problems with document ``index``, each at ``documents[j].<path>`` where it was written."""
        details = error.details or [FieldProblem("", error.message)]
        mapped = self.mapped.get(index)
        out = []
        for d in details:
            j, path = index, d.field
            if mapped is not None:
                j, path = written_at(mapped.origins, d.field) or (index, d.field)
            out.append(FieldProblem(join_path(f"documents[{j}]", path), d.problem))
        return out


def translate(raws: list[Any]) -> Translation:
    """Map the OpenChoreo documents among ``raws``; the others are passed on untouched."""
    out: list[tuple[int, Any]] = []
    mapped: dict[int, Mapped] = {}
    problems: list[FieldProblem] = []
    workloads: list[tuple[Reader, Parts, dict[str, str], str | None]] = []
    components: dict[tuple[str | None, str, str], tuple[int, dict[str, Any]]] = {}
    bindings: list[Binding] = []
    skipped: list[int] = []
    for i, raw in enumerate(raws):
        if not is_openchoreo(raw):
            out.append((i, raw))
            continue
        r = Reader(i)
        document = _map_one(r, raw, workloads, bindings)
        if raw.get("kind") == "SecretReference" or raw.get("kind") in NO_EQUIVALENT:
            skipped.append(i)
        if document is not None and document["kind"] == "Component":
            meta = document["metadata"]
            components[(meta.get("organization"), meta.get("project") or "", meta.get("name") or "")] = (i, document)
        if r.problems:
            problems.extend(FieldProblem(join_path(f"documents[{i}]", p.field), p.problem) for p in r.problems)
        elif document is not None:
            out.append((i, document))
        mapped[i] = Mapped(r.all_warnings(), r.origins)
    merged: set[tuple[str | None, str, str]] = set()
    pending = []
    for r, parts, owner, namespace in workloads:
        key = (namespace, owner.get("projectName", ""), owner.get("componentName", ""))
        if r.problems or not key[1] or not key[2]:
            continue  # the request fails: nothing to merge
        if key in merged:
            problems.append(FieldProblem(f"documents[{r.index}].spec.owner.componentName",
                                         f"Component '{key[2]}' has another Workload in this apply"))
            continue
        merged.add(key)
        target = components.get(key)
        if target is None:
            pending.append(PendingWorkload(r.index, namespace, key[1], key[2], parts.spec()))
            continue
        index, component = target
        _merge(component["spec"], parts.spec())
        mapped[index].warnings += mapped[r.index].warnings
        mapped[index].origins.update(r.origins)
    return Translation(out, mapped, problems, pending, bindings, skipped)


def _map_one(r: Reader, raw: dict[Any, Any], workloads: list[tuple[Reader, Parts, dict[str, str], str | None]],
             bindings: list[Binding]) -> dict[str, Any] | None:
    r.fields(raw, "", ("apiVersion", "kind", "metadata", "spec", "status"))
    if raw["apiVersion"] != OPENCHOREO_API_VERSION:
        r.fail("apiVersion", f"'{raw['apiVersion'][:80]}' is not supported (OpenChoreo documents: "
                             f"'{OPENCHOREO_API_VERSION}')")
        return None
    kind = raw.get("kind")
    if isinstance(kind, str) and kind in NO_EQUIVALENT:
        metadata = raw.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        no_equivalent(r, kind, str(name)[:63] if name is not None else None)
        return None
    if not isinstance(kind, str) or (kind not in KINDS and kind not in REQUESTS):
        known = (*KINDS, *REQUESTS, *NO_EQUIVALENT)
        close = difflib.get_close_matches(str(kind), known, n=1) if isinstance(kind, str) else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        r.fail("kind", f"'{str(kind)[:60]}' is not an OpenChoreo kind{hint}; the kinds Cellplane maps are "
                       f"{', '.join((*KINDS, *REQUESTS))}")
        return None
    meta = read_metadata(r, raw.get("metadata"), namespaced=kind != "Organization")
    spec = r.mapping(raw.get("spec"), "spec") or {}
    if kind == "SecretReference":
        secret_reference(r, spec, meta.name)
        return None
    if kind == "ReleaseBinding":
        binding = release_binding(r, spec, meta.name or "", meta.metadata.get("organization"))
        if binding is not None and not r.problems:
            bindings.append(binding)
        return None
    if kind == "Workload":
        r.label = f"Workload '{meta.name}'"
        parts, owner = workload_spec(r, spec)
        workloads.append((r, parts, owner, meta.metadata.get("organization")))
        return None
    if kind == "Component":
        cellplane_spec, project = component_spec(r, spec, meta.titles())
        metadata = {**meta.metadata, "project": project}
        r.origin("metadata.project", "spec.owner.projectName")
        return _document("Component", metadata, cellplane_spec)
    document = _document(kind, meta.metadata, PLATFORM_KINDS[kind](r, spec, meta.titles()))
    if kind == "DataPlane":
        dataplane_hint(r, meta.name or "NAME")
    return document


def _document(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _merge(spec: dict[str, Any], workload: dict[str, Any]) -> None:
    """A Workload's fields into its Component's spec (they share only ``build``, each setting its own keys)."""
    for key, value in workload.items():
        if key == "build":
            spec.setdefault("build", {}).update(value)
        else:
            spec[key] = value


