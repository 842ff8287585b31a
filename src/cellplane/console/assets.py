"""Where the console's third-party front-end files are: htmx from npm, pinned in tools/console/package.json and
installed by scripts/ensure-console-assets.sh into ``~/.cache/cellplane/console/htmx.org-<version>/`` (never
committed, never loaded from a CDN). ``CELLPLANE_CONSOLE_ASSETS`` names another htmx.min.js. Without it the console
still works (every form is a plain POST that redirects) and its pages say how to install it.
"""

from __future__ import annotations

import os
from pathlib import Path

HTMX_VERSION = "2.0.11"  # as pinned in tools/console/package.json (a test checks they agree)
ENSURE = "scripts/ensure-console-assets.sh"


def htmx_path() -> Path:
    override = os.environ.get("CELLPLANE_CONSOLE_ASSETS")
    if override:
        return Path(override)
    cache = Path(os.environ.get("CELLPLANE_CONSOLE_CACHE") or Path.home() / ".cache" / "cellplane" / "console")
    return cache / f"htmx.org-{HTMX_VERSION}" / "dist" / "htmx.min.js"


def htmx_present() -> bool:
    return htmx_path().is_file()
