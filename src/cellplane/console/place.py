"""Which component, and which of its organization's environments, a component page is about.

``place(v, org, project, component, env)`` reads the component (``GET .../components/{c}``), the organization's
environments and the component's deployments through the in-process API (three requests, made together), and picks the
environment: the one asked for, else the first one the component is deployed in, else the first one. The Test,
Observe, Configuration and Connections pages share it, with their tab bar (``component/_tabs_observe.html``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cellplane.console.apicall import ApiProblem
from cellplane.console.viewer import Viewer


@dataclass
class Place:
    org: str
    project: str
    component: str
    spec: dict[str, Any]
    environments: list[str]
    environment: str
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)  # by environment

    @property
    def api(self) -> str:
        """The component's path below /api/v1."""
        return f"/organizations/{self.org}/projects/{self.project}/components/{self.component}"

    @property
    def url(self) -> str:
        """The component's console URL."""
        return f"/console/orgs/{self.org}/projects/{self.project}/components/{self.component}"

    @property
    def deployment(self) -> dict[str, Any] | None:
        return self.deployments.get(self.environment)

    def breadcrumbs(self, page: str) -> list[tuple[str, str]]:
        return [(self.org, f"/console/orgs/{self.org}"),
                (self.project, f"/console/orgs/{self.org}/projects/{self.project}"),
                (self.component, self.url), (page, "")]


async def place(v: Viewer, org: str, project: str, component: str, env: str | None) -> Place:
    """The component and the chosen environment; ApiProblem when the API refuses or does not know them."""
    base = f"/organizations/{org}/projects/{project}/components/{component}"
    answers: tuple[Any, ...] = await asyncio.gather(
        v.api.get(base), v.api.get(f"/organizations/{org}/environments"), v.api.get(base + "/deployments"),
        return_exceptions=True)
    found, environments, deployed = answers
    for answer in (found, environments):
        if isinstance(answer, BaseException):
            raise answer
    if isinstance(deployed, ApiProblem):  # a role without deployments:read still sees the rest
        deployed = {}
    elif isinstance(deployed, BaseException):
        raise deployed
    names = [e["metadata"]["name"] for e in environments["items"]]
    deployments = {d["environment"]: d for d in deployed.get("items", [])}
    first = next((n for n in names if n in deployments), names[0] if names else "")
    chosen = env if env and env in names else first
    return Place(org, project, component, found.get("spec") or {}, names, chosen, deployments)
