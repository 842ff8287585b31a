"""Users, API tokens and role bindings, and turning a bearer token into a Principal."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.controlplane import tokens
from cellplane.controlplane.rbac import ROLE_NAMES, Binding, Principal
from cellplane.errors import ConflictError, FieldProblem, InvalidError, NotFoundError, UnauthorizedError
from cellplane.model import KINDS, dns_label_problem
from cellplane.store.tables import ResourceRow, RoleBindingRow, TokenRow, UserRow, now


def check_name(value: str, field: str) -> None:
    problem = dns_label_problem(value)
    if problem:
        raise InvalidError(f"{field} is not valid", [FieldProblem(field, problem)])


def get_user(s: Session, name: str) -> UserRow:
    user = s.scalar(select(UserRow).where(UserRow.name == name))
    if user is None:
        raise NotFoundError(f"user '{name}' not found")
    return user


def create_user(s: Session, name: str, email: str | None = None, superuser: bool = False) -> UserRow:
    check_name(name, "name")
    if s.scalar(select(UserRow).where(UserRow.name == name)) is not None:
        raise ConflictError(f"user '{name}' already exists", [FieldProblem("name", "already exists")],
                            code="already-exists")
    user = UserRow(name=name, email=email, superuser=superuser)
    s.add(user)
    s.flush()
    return user


def issue_token(s: Session, key: bytes, user: UserRow, name: str = "default",
                expires_at: datetime | None = None) -> tuple[TokenRow, str]:
    """A new token for ``user``. The plaintext is returned once and never stored."""
    check_name(name, "name")
    token_id, token = tokens.new_token()
    row = TokenRow(id=token_id, user_id=user.id, name=name, digest=tokens.digest(key, token), expires_at=expires_at)
    s.add(row)
    s.flush()
    return row, token


def token_view(row: TokenRow, user: str) -> dict[str, Any]:
    return {"id": row.id, "user": user, "name": row.name, "createdAt": row.created_at.isoformat(),
            "expiresAt": row.expires_at.isoformat() if row.expires_at else None,
            "lastUsedAt": row.last_used_at.isoformat() if row.last_used_at else None}


def user_view(user: UserRow) -> dict[str, Any]:
    return {"name": user.name, "email": user.email, "superuser": user.superuser, "disabled": user.disabled,
            "createdAt": user.created_at.isoformat()}


def authenticate(s: Session, key: bytes, token: str | None) -> Principal:
    if not token or not tokens.looks_like_token(token):
        raise UnauthorizedError()
    row = s.scalar(select(TokenRow).where(TokenRow.digest == tokens.digest(key, token)))
    if row is None:
        raise UnauthorizedError("the API token is not valid (revoked, or never issued)")
    if row.expires_at is not None and row.expires_at < now():
        raise UnauthorizedError("the API token has expired")
    user = s.get(UserRow, row.user_id)
    if user is None or user.disabled:
        raise UnauthorizedError("the token's user is disabled")
    bindings = [binding_of(b) for b in s.scalars(select(RoleBindingRow).where(RoleBindingRow.user_id == user.id))]
    return Principal(user=user.name, superuser=user.superuser, bindings=bindings)


def binding_of(row: RoleBindingRow) -> Binding:
    return Binding(row.id, row.role, row.organization, row.project, row.environment)


def grant(s: Session, user: UserRow, role: str, organization: str, project: str = "",
          environment: str = "") -> RoleBindingRow:
    problems = []
    if role not in ROLE_NAMES:
        problems.append(FieldProblem("role", f"'{role}' is not a role; use one of {', '.join(ROLE_NAMES)}"))
    if project and environment:
        problems.append(FieldProblem("environment", "a binding is scoped to a project or an environment, not both"))
    if problems:
        raise InvalidError("the role binding is not valid", problems)
    for kind, name, org_scoped in (("Organization", organization, False), ("Project", project, True),
                                   ("Environment", environment, True)):
        if not name:
            continue
        q = select(ResourceRow.id).where(ResourceRow.kind == kind, ResourceRow.name == name,
                                         ResourceRow.organization == (organization if org_scoped else ""))
        if s.scalar(q) is None:
            raise NotFoundError(f"{kind.lower()} '{name}' not found",
                                [FieldProblem(KINDS[kind].singular if kind != "Organization" else "organization",
                                              "no such " + kind.lower())])
    existing = s.scalar(select(RoleBindingRow).where(
        RoleBindingRow.user_id == user.id, RoleBindingRow.role == role, RoleBindingRow.organization == organization,
        RoleBindingRow.project == project, RoleBindingRow.environment == environment))
    if existing is not None:
        return existing
    row = RoleBindingRow(id=secrets.token_hex(6), user_id=user.id, role=role, organization=organization,
                         project=project, environment=environment)
    s.add(row)
    s.flush()
    return row


def binding_view(row: RoleBindingRow, user: str) -> dict[str, Any]:
    return {"id": row.id, "user": user, "role": row.role, "organization": row.organization,
            "project": row.project or None, "environment": row.environment or None,
            "createdAt": row.created_at.isoformat()}
