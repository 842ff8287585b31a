"""A machine's local copy of artifacts: fetched once by digest, verified, unpacked read-only.

Data planes and ``cellplane artifact run`` keep artifacts here. A tree is used only once its digest
has been checked against the bytes received, so a corrupted or substituted download never runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from cellplane.build import archive
from cellplane.digests import PREFIX, sha256_file, valid
from cellplane.errors import CellplaneError
from cellplane.runtime.materialize import COMPLETE, locked, readable


class LocalArtifacts:
    def __init__(self, root: Path) -> None:
        self.root = root / "artifacts"

    def path(self, digest: str) -> Path:
        if not valid(digest):
            raise CellplaneError(f"'{digest}' is not a sha256 digest (sha256:<64 hex digits>)", code="invalid",
                                 status=422)
        return self.root / digest.removeprefix(PREFIX)

    def ensure(self, digest: str, fetch: Callable[[Path], None]) -> Path:
        """The unpacked tree of ``digest``; ``fetch(dest)`` downloads the .tar.gz when it is not here yet."""
        tree = self.path(digest)
        if (tree / COMPLETE).exists():
            return readable(tree)
        with locked(tree):
            if (tree / COMPLETE).exists():
                return readable(tree)
            shutil.rmtree(tree, ignore_errors=True)
            download = tree.with_name(tree.name + ".tar.gz")
            try:
                fetch(download)
                got = sha256_file(download)
                if got != digest:
                    raise CellplaneError(f"artifact {digest} failed verification: its bytes hash to {got}",
                                         code="corrupt", status=502)
                archive.unpack(download, tree, archive.UploadLimits(max_compressed=1 << 34, max_unpacked=1 << 36))
            except BaseException:
                shutil.rmtree(tree, ignore_errors=True)
                raise
            finally:
                download.unlink(missing_ok=True)
            (tree / COMPLETE).touch()
            readable(tree)  # workloads of their own users read it (`cellplane.dataplane.sandbox`)
        return tree
