"""Roles, permissions and scopes.

A permission reads ``<resource>:<verb>`` (``components:create``, ``config:write``). A role is a
set of permission patterns. A role binding grants a role on an organization, or narrows it to
one project or one environment of that organization. A binding applies to a target when it is
at the same place or above it; an environment-scoped binding also lets its holder get and list
the organization's resources (the projects it works in: one cannot deploy what one cannot see),
but reads configuration (``config:read``) only in its own environment, and never the audit log.
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
        "deployments:create", "deployments:delete", "runs:create", "previews:create", "previews:delete",
        "alerts:create", "alerts:update", "alerts:delete",
    ),
    "approver": ("*:get", "*:list", "config:read", "deployments:approve"),
    "admin": ("*",),
}
ROLE_NAMES = tuple(ROLES)
READ_VERBS = ("get", "list")  # what an environment-scoped binding may do outside its environment


@dataclass(frozen=True)
class Target:
    """Where an action happens."""

    organization: str
    project: str = ""
    environment: str = ""

    def describe(self) -> str:
        where = f"organization '{self.organization}'"
        if self.project:
            where = f"project '{self.organization}/{self.project}'"
        if self.environment:
            where += f", environment '{self.environment}'"
        return where


@dataclass(frozen=True)
class Binding:
    id: str
    role: str
    organization: str
    project: str = ""
    environment: str = ""

    def describe(self) -> str:
        return f"{self.role} on " + Target(self.organization, self.project, self.environment).describe()

    def covers(self, permission: str, target: Target) -> bool:
        if self.organization != target.organization:
            return False
        if not any(fnmatchcase(permission, p) for p in ROLES.get(self.role, ())):
            return False
        if self.project and self.project != target.project:
            return False
        if self.environment and self.environment != target.environment:
            return permission.rsplit(":", 1)[-1] in READ_VERBS
        return True


@dataclass
class Principal:
    user: str
    superuser: bool = False
    bindings: list[Binding] = field(default_factory=list)

    def can(self, permission: str, target: Target) -> bool:
        return self.superuser or any(b.covers(permission, target) for b in self.bindings)

    def member_of(self, organization: str) -> bool:
        return self.superuser or any(b.organization == organization for b in self.bindings)

    def sees_project(self, organization: str, project: str) -> bool:
        """Whether any binding lets this principal read inside the project."""
        return self.can("projects:get", Target(organization, project)) or any(
            b.organization == organization and b.project == project for b in self.bindings
        )
