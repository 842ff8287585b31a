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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cellplane import yamlload
from cellplane.choreo.component_yaml import read_component_yaml
from cellplane.choreo.files import COMPONENT_CONFIG_YAML, COMPONENT_YAML, DESCRIPTOR_FILES, ENDPOINTS_YAML, read_files
from cellplane.choreo.legacy import read_component_config_yaml, read_endpoints_yaml
from cellplane.choreo.parts import Parts
from cellplane.choreo.walker import Walker, kind_of, show
from cellplane.errors import FieldProblem, InvalidError
from cellplane.model.document import validate_spec

_READERS: dict[str, Callable[[Walker, dict[Any, Any]], Parts]] = {
    COMPONENT_YAML: read_component_yaml,
    COMPONENT_CONFIG_YAML: read_component_config_yaml,
    ENDPOINTS_YAML: read_endpoints_yaml,
}


@dataclass
class ChoreoImport:
    """What a repository's Choreo descriptors say, as a partial Component spec.

    ``descriptor`` is the file that was read (None when there is none, and then ``spec`` is empty);
    ``spec`` is JSON-ready and valid on its own; ``warnings`` list what was adjusted or left out.
    """

    descriptor: str | None
    spec: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


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
    walker = Walker(chosen)
    if data is None:
        walker.warn("", "the file is empty, nothing to import")
        parts = Parts()
    elif isinstance(data, dict):
        parts = _READERS[chosen](walker, data)
    else:
        raise InvalidError(f"{chosen} is not a valid Choreo descriptor",
                           [FieldProblem(chosen, f"expected a mapping at the top level, got {kind_of(data)}")])
    if walker.problems:
        raise InvalidError(f"{chosen} is not a valid Choreo descriptor", walker.problems)
    spec = parts.assemble(walker)
    _check(chosen, spec)
    return ChoreoImport(chosen, spec, ignored + walker.all_warnings())


def import_directory(directory: Path) -> ChoreoImport:
    """``import_choreo`` on the descriptors found under ``directory``.

    A refused file that Choreo would have used is an error, because falling back to a
    lower-precedence file would silently import a different component; a refused file that would
    have been ignored anyway is only a warning.
    """
    files, refused = read_files(Path(directory))
    for rel, reason in refused.items():
        if not any(f in files for f in DESCRIPTOR_FILES[: DESCRIPTOR_FILES.index(rel)]):
            raise InvalidError(f"{rel} cannot be imported", [FieldProblem(rel, reason)])
    result = import_choreo(files)
    result.warnings[:0] = [f"{rel}: {reason}; ignored" for rel, reason in refused.items()]
    return result


def _load_yaml(file: str, text: str) -> Any:
    try:
        return yamlload.load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{file}: line {mark.line + 1}" if mark else file
        column = f" (column {mark.column + 1})" if mark else ""
        problem = f"{e.problem or e.context or 'invalid YAML'}{column}"
        raise InvalidError(f"{file} is not valid YAML", [FieldProblem(where, problem)]) from None
    except RecursionError:
        raise InvalidError(f"{file} is not valid YAML", [FieldProblem(file, "nested too deeply")]) from None
    except Exception as e:  # PyYAML lets some constructor errors escape as ValueError and the like
        unreadable = FieldProblem(file, f"cannot be read: {show(e, 200)}")
        raise InvalidError(f"{file} is not valid YAML", [unreadable]) from None


def _check(file: str, spec: dict[str, Any]) -> None:
    """Last line of defence: the mapping is meant to always produce a valid spec."""
    _, problems = validate_spec("Component", spec)
    if problems:
        details = [FieldProblem(f"{file} -> {p.field}", p.problem) for p in problems]
        raise InvalidError(f"{file} could not be mapped onto a valid Component spec", details)
