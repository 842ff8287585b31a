"""The URL scheme of deployed endpoints (docs/dataplane.md, "URL scheme"), shared by both planes.

The control plane prints endpoint URLs with it, the agent writes ``ServiceURL`` into connections with it and the
gateway keys its route table by it, so all three agree by construction. Cost: one string format.
"""

from __future__ import annotations


def route_prefix(project: str, component: str, version: str, base_path: str = "/") -> str:
    """The path under which a listener serves an endpoint (docs/dataplane.md, "URL scheme")."""
    return f"/{project}/{component}/{version}" + (base_path if base_path != "/" else "")
