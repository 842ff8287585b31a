"""Routes for users, API tokens, role bindings, audit events and key rotation."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy import select

from cellplane.console import passwords
from cellplane.controlplane import audit, identity, resources, rotation
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.declare import (
    PLATFORM,
    Call,
    Rule,
    Scope,
    Subject,
    administrator,
    anyone,
    looked_up,
    reads,
    requires,
)
from cellplane.controlplane.api.deps import NamePath, require_superuser
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.rbac import ROLE_NAMES, Principal, Target
from cellplane.errors import ForbiddenError, NotFoundError
from cellplane.model import KINDS
from cellplane.store.tables import RoleBindingRow, TokenRow, UserRow, now

router = api_router()


class NewUser(schemas.JsonBody):
    model_config = ConfigDict(extra="forbid")
    name: schemas.NameText = Field(max_length=63)
    email: str | None = Field(default=None, max_length=254)
    superuser: bool = False


class NewToken(schemas.JsonBody):
    model_config = ConfigDict(extra="forbid")
    name: schemas.NameText = Field(default="default", max_length=63)
    expiresInDays: int | None = Field(default=None, ge=1, le=3650)


class NewBinding(BaseModel):
    # A binding is scoped to a project or to an environment, not both (``identity.grant`` checks it).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"not": {
        "required": ["project", "environment"],
        "properties": {"project": {"type": "string", "minLength": 1},
                       "environment": {"type": "string", "minLength": 1}}}})
    user: str = Field(max_length=63)
    role: Annotated[str, WithJsonSchema({"type": "string", "enum": list(ROLE_NAMES)})] = Field(max_length=20)
    project: str | None = Field(default=None, max_length=63)
    environment: str | None = Field(default=None, max_length=63)


@router.read("/whoami", anyone("who it is, and its roles"), PLATFORM, session=None, tags=["users"],
             response_model=schemas.WhoAmI, response_model_exclude_unset=True)
def whoami(c: Call[None]) -> dict[str, Any]:
    who = c.who
    return {"user": who.user, "superuser": who.superuser,
            "roles": [{"role": b.role, "organization": b.organization, "project": b.project or None,
                       "environment": b.environment or None} for b in who.bindings]}


@router.read("/users", anyone("itself (a platform administrator: every user)"), PLATFORM, tags=["users"],
             response_model=schemas.UserList, response_model_exclude_unset=True)
def list_users(c: Call[None]) -> dict[str, Any]:
    q = select(UserRow).order_by(UserRow.name)
    if not c.who.superuser:
        q = q.where(UserRow.name == c.who.user)
    return {"items": [identity.user_view(u) for u in c.session.scalars(q)]}


def _is_some_admin(who: Principal) -> bool:
    return who.superuser or any(b.role == "admin" and not b.project and not b.environment for b in who.bindings)


def _user_maker(c: Call[NewUser], _: Target) -> None:
    if not _is_some_admin(c.who):
        raise ForbiddenError("permission 'users:create' is required: an organization admin or a platform "
                             "administrator may create users")
    if c.body.superuser:
        require_superuser(c.who, "create platform administrators")


@router.mutation("POST", "/users", Rule("users:create", _user_maker), PLATFORM, action="user.create",
                 subject=Subject("User", lambda c: c.body.name), body=NewUser,
                 tags=["users"], status_code=201, response_model=schemas.User, response_model_exclude_unset=True)
def create_user(c: Call[NewUser]) -> dict[str, Any]:
    body = c.body
    return identity.user_view(identity.create_user(c.session, body.name, body.email, body.superuser))


def _self_or_superuser(who: Principal, user: str) -> None:
    if who.user != user and not who.superuser:
        raise ForbiddenError(f"only '{user}' or a platform administrator may manage the tokens of '{user}'")


def _not_an_agent(who: Principal) -> None:
    if who.agent:
        raise ForbiddenError("a data plane's agent token cannot make tokens: an admin makes them with "
                             "POST /organizations/{org}/dataplanes/{name}/tokens")


def _token_maker(c: Call[Any], _: Target) -> None:
    _self_or_superuser(c.who, c["user"])
    _not_an_agent(c.who)


THE_USER = Rule("the user themself or a platform administrator", lambda c, _: _self_or_superuser(c.who, c["user"]))


@router.mutation("POST", "/users/{user}/tokens", Rule("the user themself (not an agent) or a platform administrator",
                                                       _token_maker), PLATFORM,
                 action="token.create", subject=Subject("User", "user"), message=lambda c: f"token '{c.body.name}'",
                 body=NewToken, tags=["users"], status_code=201, response_model=schemas.NewTokenIssued,
                 response_model_exclude_unset=True)
def create_token(c: Call[NewToken], user: NamePath) -> dict[str, Any]:
    body = c.body
    row = identity.get_user(c.session, user)
    expires = now() + timedelta(days=body.expiresInDays) if body.expiresInDays else None
    token_row, token = identity.issue_token(c.session, c.platform.token_key, row, body.name, expires)
    return {**identity.token_view(token_row, user), "token": token}


class NewPassword(schemas.JsonBody):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=passwords.MIN_LENGTH, max_length=passwords.MAX_LENGTH,
                          description="at least 12 characters; never returned or logged")
    currentPassword: str | None = Field(default=None, max_length=1000,
                                        description="the user's current password, when users set their own")


def _password_setter(c: Call[Any], _: Target) -> None:
    if c.who.user != c["user"] and not c.who.superuser:
        raise ForbiddenError(f"only '{c['user']}' or a platform administrator may set the password of '{c['user']}'")
    _not_an_agent(c.who)


@router.mutation("PUT", "/users/{user}/password", Rule("the user themself (with the current password) or a platform "
                                                       "administrator", _password_setter), PLATFORM,
                 action="user.password", subject=Subject("User", "user"), message=lambda c: "password set",
                 body=NewPassword, tags=["users"], response_model=schemas.User, response_model_exclude_unset=True)
def set_password(c: Call[NewPassword], user: NamePath) -> dict[str, Any]:
    """Sets a user's console password (argon2id; about 50 ms of CPU). Users setting their own give the current one
    when they have one; a platform administrator sets anyone's (their own too) without it."""
    row = identity.get_user(c.session, user)
    identity.set_password(c.session, row, c.body.password, c.body.currentPassword,
                          need_current=c.who.user == user and not c.who.superuser and row.password_hash is not None)
    return identity.user_view(row)


@router.read("/users/{user}/tokens", THE_USER, PLATFORM, tags=["users"], response_model=schemas.TokenList,
             response_model_exclude_unset=True)
def list_tokens(c: Call[None], user: NamePath) -> dict[str, Any]:
    s = c.session
    row = identity.get_user(s, user)
    tokens = s.scalars(select(TokenRow).where(TokenRow.user_id == row.id).order_by(TokenRow.created_at))
    return {"items": [identity.token_view(t, user) for t in tokens]}


def _token(c: Call[Any], _: str) -> Target:
    c.row = c.session.get(TokenRow, c["token_id"])
    return Target("")


def _token_holder(c: Call[Any], _: Target) -> None:
    """One's own token, or a platform administrator; another's is not found (its id says nothing)."""
    user = c.session.get(UserRow, c.row.user_id) if c.row else None
    if c.row is None or user is None or (user.name != c.who.user and not c.who.superuser):
        raise NotFoundError(f"token '{c['token_id']}' not found")


@router.mutation("DELETE", "/tokens/{token_id}", Rule("the token's user or a platform administrator", _token_holder),
                 looked_up("the token", _token), action="token.revoke", subject=Subject("Token", "token_id"),
                 tags=["users"], response_model=schemas.Deleted, response_model_exclude_unset=True)
def revoke_token(c: Call[None], token_id: NamePath) -> dict[str, Any]:
    c.session.delete(c.row)
    return {"deleted": token_id}


def _organization(c: Call[Any], _: str) -> Target:
    """The organization, which must exist (a 404 before the permission)."""
    resources.get(c.session, resources.Scope(KINDS["Organization"]), c["org"])
    return Target(c["org"])


@router.read("/organizations/{org}/rolebindings", reads("rolebindings:list"),
             looked_up("organization (found first)", _organization), tags=["rolebindings"],
             response_model=schemas.RoleBindingList, response_model_exclude_unset=True)
def list_bindings(c: Call[None], org: NamePath) -> dict[str, Any]:
    who = c.who
    rows = c.session.execute(select(RoleBindingRow, UserRow.name).join(UserRow, UserRow.id == RoleBindingRow.user_id)
                             .where(RoleBindingRow.organization == org)
                             .order_by(UserRow.name, RoleBindingRow.role, RoleBindingRow.project))
    # Who holds what is itself information: a project member sees the project's bindings and their own.
    return {"items": [identity.binding_view(b, name) for b, name in rows
                      if name == who.user or who.can(c.permission, Target(org, b.project, b.environment))]}


def _grant_message(c: Call[NewBinding]) -> str:
    body = c.body
    scope = body.project or body.environment or ""
    return f"{body.role} for {body.user}" + (f" on {scope}" if scope else "")


def _granted_where(c: Call[NewBinding], _: str) -> Target:
    return Target(c["org"], c.body.project or "", c.body.environment or "")


@router.mutation("POST", "/organizations/{org}/rolebindings", requires("rolebindings:create"),
                 Scope("the binding's project or environment (body)", _granted_where),
                 action="rolebinding.create", body=NewBinding, message=_grant_message,
                 subject=Subject("RoleBinding", lambda c: c.body.user, project=lambda c: c.body.project or ""),
                 tags=["rolebindings"], status_code=201, response_model=schemas.RoleBinding,
                 response_model_exclude_unset=True)
def create_binding(c: Call[NewBinding], org: NamePath) -> dict[str, Any]:
    body = c.body
    user = identity.get_user(c.session, body.user)
    row = identity.grant(c.session, user, body.role, org, body.project or "", body.environment or "")
    return identity.binding_view(row, user.name)


def _binding(c: Call[Any], _: str) -> Target:
    row = c.row = c.session.get(RoleBindingRow, c["binding_id"])
    if row is None or row.organization != c["org"]:
        raise NotFoundError(f"role binding '{c['binding_id']}' not found in organization '{c['org']}'")
    return Target(row.organization, row.project, row.environment)


@router.mutation("DELETE", "/organizations/{org}/rolebindings/{binding_id}", requires("rolebindings:delete"),
                 looked_up("the binding's project or environment", _binding), action="rolebinding.delete",
                 subject=Subject("RoleBinding", "binding_id", project=""), tags=["rolebindings"],
                 response_model=schemas.Deleted, response_model_exclude_unset=True)
def delete_binding(c: Call[None], org: NamePath, binding_id: NamePath) -> dict[str, Any]:
    c.session.delete(c.row)
    return {"deleted": binding_id}


@router.read("/audit", anyone("its own events, and those of organizations where it holds audit:read", "audit:read"),
             PLATFORM, tags=["audit"], response_model=schemas.AuditList, response_model_exclude_unset=True)
def list_audit(c: Call[None], organization: str | None = Query(None, max_length=63),
               actor: str | None = Query(None, max_length=63), kind: str | None = Query(None, max_length=40),
               limit: int = Query(100, ge=1, le=1000),
               before: int | None = Query(None, ge=1, le=2**31 - 1, description="events older than this id")
               ) -> dict[str, Any]:
    """Newest first. Administrators see their organizations' events; everyone sees their own."""
    who = c.who
    visible = None if who.superuser else {b.organization for b in who.bindings
                                          if who.can(c.permission, Target(b.organization))}
    rows = audit.list_events(c.session, who, limit, before, organization, actor, kind, visible)
    return {"items": [audit.view(r) for r in rows],
            "metadata": {"before": rows[-1].id if len(rows) == limit else None}}


@router.mutation("POST", "/admin/rotate-key", administrator("rotate the master key"), PLATFORM,
                 action="admin.rotate-key", tags=["admin"], response_model=schemas.KeyRotation,
                 response_model_exclude_unset=True)
def rotate_key(c: Call[None]) -> dict[str, Any]:
    """Re-encrypt every secret under a new master key, in small transactions, while serving."""
    p = c.platform  # the audited unit of work's session stays idle while the batches below run
    new_id = p.keyring.begin_rotation()
    total = 0
    while True:
        with p.store.transaction() as s:
            done = rotation.rotate_all(s, p.keyring)
        total += done
        if done == 0:
            break
    dropped = p.keyring.finish_rotation()
    c.work.message = f"new key {new_id}, {total} secrets re-encrypted"
    return {"keyId": new_id, "reencrypted": total, "retiredKeys": dropped}
