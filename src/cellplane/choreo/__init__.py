"""Choreo compatibility: read a repository's ``.choreo/`` descriptors as a Cellplane Component spec.

``import_choreo`` is pure (file texts in, partial spec out); ``read_descriptor_files`` and
``import_directory`` do the careful reading from a checkout.
"""

from cellplane.choreo.descriptors import (
    DESCRIPTOR_FILES,
    ChoreoImport,
    import_choreo,
    import_directory,
    read_descriptor_files,
)

__all__ = ["DESCRIPTOR_FILES", "ChoreoImport", "import_choreo", "import_directory", "read_descriptor_files"]
