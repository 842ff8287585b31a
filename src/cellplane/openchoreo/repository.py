"""The descriptor a component's source carries, Choreo's or OpenChoreo's, read as a partial Component spec.

A source may carry Choreo's ``.choreo/`` descriptors or OpenChoreo's ``workload.yaml`` (beside the component's
code, where OpenChoreo's build looks for it); one is read, Choreo's first when both are there (the other is
ignored with a warning). Files are read as Choreo's are (``choreo.files``): a repository is untrusted input, so a
symlink out of it, anything over 1 MiB, not a regular file or not UTF-8 is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cellplane.choreo import DESCRIPTOR_FILES, ChoreoImport, import_choreo, import_directory
from cellplane.choreo.files import read_files
from cellplane.errors import FieldProblem, InvalidError
from cellplane.openchoreo.descriptor import WORKLOAD_YAML, import_workload_yaml

SOURCE_DESCRIPTORS = (*DESCRIPTOR_FILES, WORKLOAD_YAML)  # in the order they are preferred


def read_source_descriptors(directory: Path) -> dict[str, str]:
    """The descriptor files present under ``directory`` (``{relative path: text}``); refused ones are skipped."""
    files, _ = read_files(Path(directory), SOURCE_DESCRIPTORS)
    return files


def import_source(files: Mapping[str, str]) -> ChoreoImport:
    """The spec the preferred descriptor among ``files`` gives (keys: paths in ``SOURCE_DESCRIPTORS``). Pure."""
    choreo = {rel: text for rel, text in files.items() if rel in DESCRIPTOR_FILES}
    if choreo:
        result = import_choreo(choreo)
        if WORKLOAD_YAML in files:
            result.warnings.append(f"{WORKLOAD_YAML}: ignored, {result.descriptor} takes precedence")
        return result
    if WORKLOAD_YAML in files:
        return import_workload_yaml(files[WORKLOAD_YAML])
    return ChoreoImport(None, {}, [])


def import_source_directory(directory: Path) -> ChoreoImport:
    """``import_source`` on the descriptors under ``directory``; a refused file that would be read is an error."""
    directory = Path(directory)
    if any(os.path.lexists(directory / rel) for rel in DESCRIPTOR_FILES):
        result = import_directory(directory)
        if os.path.lexists(directory / WORKLOAD_YAML):
            result.warnings.append(f"{WORKLOAD_YAML}: ignored, {result.descriptor} takes precedence")
        return result
    files, refused = read_files(directory, (WORKLOAD_YAML,))
    for rel, reason in refused.items():
        raise InvalidError(f"{rel} cannot be imported", [FieldProblem(rel, reason)])
    return import_source(files)
