"""Roles, permissions and scopes.

A permission reads ``<resource>:<verb>`` (``components:create``, ``config:write``). A role is a
set of permission patterns. A role binding grants a role on an organization, or narrows it to
one project or one environment of that organization. A binding applies to a target when it is
at the same place or above it; an environment-scoped binding also lets its holder get and list
the organization's resources (the projects it works in: one cannot deploy what one cannot see),
but reads configuration (``config:read``) only in its own environment, and never the audit log.

Runtime output and build output are narrower still (``ENVIRONMENT_BOUND``): an environment-scoped binding reads
logs, access lines, metrics, traces, deployments (their state, messages and replicas), endpoints, task runs and
alert rules (their state and firings) of its own environment only, and no build, build log or artifact at all,
since those belong to a project and to no environment. A list that spans environments shows such a binding its
own environment's items (``Principal.environments``) rather than failing whole.

A data plane's agent holds role ``dataplane-agent``, bound to its organization and to that one data plane (the
binding's ``dataplane``): it may act as that data plane's agent (``dataplanes:agent``: register, pull its desired
state and the artifacts in it, report status, logs and telemetry) and nothing else. Such a binding is made with the
agent's token (``POST .../dataplanes/{name}/tokens``), never granted to a person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

ROLES: dict[str, tuple[str, ...]] = {
    "viewer": ("*:get", "*:list", "config:read"),
    "developer": (
        "*:get", "*:list", "config:read", "config:write",
        "projects:create", "projects:update",
        "components:create", "components:update", "components:delete",
        "builds:create", "builds:cancel",
        "endpoints:invoke",  # the console's try-it: requests sent to a deployed endpoint through the control plane
        "deployments:create", "deployments:delete", "runs:create", "previews:create", "previews:delete",
        "alerts:create", "alerts:update", "alerts:delete",
    ),
    "approver": ("*:get", "*:list", "config:read", "deployments:approve"),
    "admin": ("*",),
    "dataplane-agent": ("dataplanes:agent",),
}
AGENT_ROLE = "dataplane-agent"
AGENT_PERMISSION = "dataplanes:agent"
AGENT_PREFIX = "dataplane:"  # the names of the users data planes' agents act as (no person's: those are DNS labels)
ROLE_NAMES = tuple(r for r in ROLES if r != AGENT_ROLE)  # the roles granted to users through role bindings
READ_VERBS = ("get", "list")  # what an environment-scoped binding may do outside its environment
# Resources an environment-scoped binding never reads outside its environment. Logs (and access lines), metrics
# and traces are recorded in one environment; deployments (state, messages, replicas), their endpoints (state,
# URLs), task runs (state, exit code, message) and alert rules (state, value, firings) are one environment's
# runtime output: another's are not its holder's to read. Builds and artifacts (a project's source code and how it
# was built) are in no environment (their targets name none): such a binding never reads them; it deploys a
# build it is given, or the latest, without reading the build itself (and promotes from an environment it does
# not read: the release moves, the caller sees only what it made in its own environment).
ENVIRONMENT_BOUND = ("logs", "metrics", "traces", "builds", "artifacts",
                     "deployments", "endpoints", "runs", "alerts")


@dataclass(frozen=True)
class Target:
    """Where an action happens."""

    organization: str
    project: str = ""
    environment: str = ""
    dataplane: str = ""  # the data plane an agent's call is about

    def describe(self) -> str:
        where = f"organization '{self.organization}'"
        if self.project:
            where = f"project '{self.organization}/{self.project}'"
        if self.environment:
            where += f", environment '{self.environment}'"
        if self.dataplane:
            where = f"data plane '{self.organization}/{self.dataplane}'"
        return where


@dataclass(frozen=True)
class Binding:
    id: str
    role: str
    organization: str
    project: str = ""
    environment: str = ""
    dataplane: str = ""  # set on (and only on) a dataplane-agent binding

    def describe(self) -> str:
        return f"{self.role} on " + Target(self.organization, self.project, self.environment,
                                           self.dataplane).describe()

    def covers(self, permission: str, target: Target) -> bool:
        if self.organization != target.organization:
            return False
        if self.role == AGENT_ROLE and (not self.dataplane or self.dataplane != target.dataplane):
            return False
        if not any(fnmatchcase(permission, p) for p in ROLES.get(self.role, ())):
            return False
        if self.project and self.project != target.project:
            return False
        if self.environment and self.environment != target.environment:
            resource, _, verb = permission.rpartition(":")
            return verb in READ_VERBS and resource not in ENVIRONMENT_BOUND
        return True


@dataclass
class Principal:
    user: str
    superuser: bool = False
    bindings: list[Binding] = field(default_factory=list)

    def can(self, permission: str, target: Target) -> bool:
        return self.superuser or any(b.covers(permission, target) for b in self.bindings)

    def environments(self, permission: str, target: Target) -> frozenset[str] | None:
        """Where in ``target`` (a project) the principal may ``permission``: None for every environment, else the
        environments of its environment-scoped bindings that allow it (perhaps none). A project's lists that span
        environments filter with it (lists across projects check each item with ``can``); no query."""
        if self.can(permission, target):
            return None
        return frozenset(b.environment for b in self.bindings if b.environment and b.covers(
            permission, Target(target.organization, target.project, b.environment)))

    @property
    def agent(self) -> bool:
        """A data plane's agent, not a person."""
        return self.user.startswith(AGENT_PREFIX) and not self.superuser

    def member_of(self, organization: str) -> bool:
        """Whether one reads the organization's own resources; a data plane's agent does not."""
        return self.superuser or any(b.organization == organization and b.role != AGENT_ROLE for b in self.bindings)

    def sees_project(self, organization: str, project: str) -> bool:
        """Whether any binding lets this principal read inside the project."""
        return self.can("projects:get", Target(organization, project)) or any(
            b.organization == organization and b.project == project for b in self.bindings
        )
