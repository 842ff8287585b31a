"""Choreo compatibility: read a repository's ``.choreo/`` descriptors as a Cellplane Component spec.

``import_choreo`` is pure (file texts in, partial spec out); ``read_descriptor_files`` and
``import_directory`` do the careful reading from a checkout.

Modules: ``files`` (which files, read safely), ``importer`` (precedence and the entry points),
``component_yaml`` and ``legacy`` (one reader per file format), ``endpoints`` and ``connections``
(the pieces they share), ``refs`` (connection targets), ``parts`` (assembling the spec) and
``walker`` (problems, warnings and value helpers).
"""

from cellplane.choreo.files import DESCRIPTOR_FILES, read_descriptor_files
from cellplane.choreo.importer import ChoreoImport, import_choreo, import_directory

__all__ = ["DESCRIPTOR_FILES", "ChoreoImport", "import_choreo", "import_directory", "read_descriptor_files"]
