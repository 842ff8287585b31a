"""OpenChoreo's workload descriptor, the ``workload.yaml`` a repository keeps beside a component's source, as a partial
Cellplane Component spec (endpoints, connections, configuration).

The descriptor spells a Workload's parts at the top level (``endpoints`` as a list with names,
``configurations.env[].name``, ``dependencies.endpoints``); OpenChoreo's CLI reads it leniently (unknown keys are
ignored), so unknown keys are warnings here, while a value of the wrong shape, a missing endpoint name, type or
port, or an unknown type or visibility fails the import, every problem listed as ``workload.yaml: <key path>``.
Pure: text in, spec out; cost linear in the file's size (at most 1 MiB, as for Choreo's descriptors).
"""

from __future__ import annotations

from typing import Any

import yaml

from cellplane import yamlload
from cellplane.choreo import ChoreoImport
from cellplane.choreo.walker import kind_of
from cellplane.errors import FieldProblem, InvalidError
from cellplane.model.document import validate_spec
from cellplane.openchoreo.reader import Reader, written_at
from cellplane.openchoreo.workload import Parts, dependencies, endpoint, env_var, file_var

WORKLOAD_YAML = "workload.yaml"
API_VERSIONS = ("openchoreo.dev/v1alpha1",)


def import_workload_yaml(text: str, file: str = WORKLOAD_YAML) -> ChoreoImport:
    """Map a workload descriptor's text onto a partial Component spec. Raises ``InvalidError`` only."""
    data = _load(file, text)
    r = Reader(0, strict=False)
    if data is None:
        return ChoreoImport(file, {}, [f"{file}: the file is empty, nothing to import"])
    if not isinstance(data, dict):
        raise InvalidError(f"{file} is not a valid OpenChoreo workload descriptor",
                           [FieldProblem(file, f"expected a mapping at the top level, got {kind_of(data)}")])
    parts = read_descriptor(r, data)
    if r.problems:
        raise InvalidError(f"{file} is not a valid OpenChoreo workload descriptor",
                           [FieldProblem(f"{file}: {p.field}", p.problem) for p in r.problems])
    spec = parts.spec()
    _, problems = validate_spec("Component", spec)
    if problems:
        located = []
        for p in problems:
            _, where = written_at(r.origins, p.field) or (0, p.field)
            located.append(FieldProblem(f"{file}: {where}", p.problem))
        raise InvalidError(f"{file} could not be mapped onto a valid Component spec", located)
    return ChoreoImport(file, spec, [f"{file}: {w}" for w in r.all_warnings()])


def read_descriptor(r: Reader, data: dict[Any, Any]) -> Parts:
    r.fields(data, "", ("apiVersion", "kind", "metadata", "endpoints", "dependencies", "configurations",
                        "connections"))
    if "connections" in data:
        r.warn("connections", "the draft descriptor's spelling is not read: declare connections as "
               "dependencies.endpoints[] {component, name, visibility, envBindings}")
    version = data.get("apiVersion")
    if version is not None and version not in API_VERSIONS:
        r.warn("apiVersion", f"'{str(version)[:60]}' is not a version this reads ({', '.join(API_VERSIONS)}); read "
               "as the newest")
    if data.get("kind") not in (None, "WorkloadDescriptor"):
        r.warn("kind", f"'{str(data['kind'])[:60]}' in a workload descriptor: read as a descriptor (top-level "
               "endpoints, dependencies, configurations)")
    metadata = r.mapping(data.get("metadata"), "metadata")
    if metadata is not None:
        r.fields(metadata, "metadata", ("name",))
        if metadata.get("name") is not None:
            r.warn("metadata.name", "the component's name is the one it is created with; ignored")
    parts = Parts()
    for path, raw in r.items(data.get("endpoints"), "endpoints"):
        item = r.mapping(raw, path, required=True)
        if item is None:
            continue
        name = r.text(item.get("name"), f"{path}.name", required=True)
        endpoint(r, parts, name, item, path, schema_file=True)
    dependencies(r, parts, data.get("dependencies"), "dependencies")
    configurations = r.mapping(data.get("configurations"), "configurations") or {}
    r.fields(configurations, "configurations", ("env", "files"))
    for path, raw in r.items(configurations.get("env"), "configurations.env"):
        env_var(r, parts, raw, path, "name")
    for path, raw in r.items(configurations.get("files"), "configurations.files"):
        file_var(r, parts, raw, path, "name")
    return parts


def _load(file: str, text: str) -> Any:
    try:
        return yamlload.load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{file}: line {mark.line + 1}" if mark else file
        raise InvalidError(f"{file} is not valid YAML", [FieldProblem(where, e.problem or "invalid YAML")]) from None
    except (RecursionError, ValueError, yaml.YAMLError) as e:
        raise InvalidError(f"{file} is not valid YAML", [FieldProblem(file, f"cannot be read: {str(e)[:200]}")]) \
            from None
