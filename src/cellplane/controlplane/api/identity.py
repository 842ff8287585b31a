"""Routes for users, API tokens, role bindings, audit events and key rotation."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy import select

from cellplane.controlplane import audit, identity, rotation
from cellplane.controlplane import resources as store
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.deps import Caller, NamePath, Work, audited, platform, require, require_superuser
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


@router.get("/whoami", tags=["users"], response_model=schemas.WhoAmI, response_model_exclude_unset=True)
def whoami(who: Principal = Caller) -> dict[str, Any]:
    return {"user": who.user, "superuser": who.superuser,
            "roles": [{"role": b.role, "organization": b.organization, "project": b.project or None,
                       "environment": b.environment or None} for b in who.bindings]}


@router.get("/users", tags=["users"], response_model=schemas.UserList, response_model_exclude_unset=True)
def list_users(request: Request, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with p.store.transaction() as s:
        q = select(UserRow).order_by(UserRow.name)
        if not who.superuser:
            q = q.where(UserRow.name == who.user)
        return {"items": [identity.user_view(u) for u in s.scalars(q)]}


def _is_some_admin(who: Principal) -> bool:
    return who.superuser or any(b.role == "admin" and not b.project and not b.environment for b in who.bindings)


@router.post("/users", tags=["users"], status_code=201, response_model=schemas.User, response_model_exclude_unset=True)
def create_user(request: Request, body: NewUser, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with audited(p, who, Work("user.create", "User", name=body.name)) as s:
        if not _is_some_admin(who):
            raise ForbiddenError("permission 'users:create' is required: an organization admin or a platform "
                                 "administrator may create users")
        if body.superuser:
            require_superuser(who, "create platform administrators")
        return identity.user_view(identity.create_user(s, body.name, body.email, body.superuser))


def _self_or_superuser(who: Principal, user: str) -> None:
    if who.user != user and not who.superuser:
        raise ForbiddenError(f"only '{user}' or a platform administrator may manage the tokens of '{user}'")


def _not_an_agent(who: Principal) -> None:
    if who.agent:
        raise ForbiddenError("a data plane's agent token cannot make tokens: an admin makes them with "
                             "POST /organizations/{org}/dataplanes/{name}/tokens")


@router.post("/users/{user}/tokens", tags=["users"], status_code=201, response_model=schemas.NewTokenIssued,
             response_model_exclude_unset=True)
def create_token(request: Request, user: NamePath, body: NewToken, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with audited(p, who, Work("token.create", "User", name=user, message=f"token '{body.name}'")) as s:
        _self_or_superuser(who, user)
        _not_an_agent(who)
        row = identity.get_user(s, user)
        expires = now() + timedelta(days=body.expiresInDays) if body.expiresInDays else None
        token_row, token = identity.issue_token(s, p.token_key, row, body.name, expires)
        return {**identity.token_view(token_row, user), "token": token}


@router.get("/users/{user}/tokens", tags=["users"], response_model=schemas.TokenList, response_model_exclude_unset=True)
def list_tokens(request: Request, user: NamePath, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with p.store.transaction() as s:
        _self_or_superuser(who, user)
        row = identity.get_user(s, user)
        tokens = s.scalars(select(TokenRow).where(TokenRow.user_id == row.id).order_by(TokenRow.created_at))
        return {"items": [identity.token_view(t, user) for t in tokens]}


@router.delete("/tokens/{token_id}", tags=["users"], response_model=schemas.Deleted, response_model_exclude_unset=True)
def revoke_token(request: Request, token_id: NamePath, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with audited(p, who, Work("token.revoke", "Token", name=token_id)) as s:
        row = s.get(TokenRow, token_id)
        user = s.get(UserRow, row.user_id) if row else None
        if row is None or user is None or (user.name != who.user and not who.superuser):
            raise NotFoundError(f"token '{token_id}' not found")
        s.delete(row)
        return {"deleted": token_id}


@router.get("/organizations/{org}/rolebindings", tags=["rolebindings"], response_model=schemas.RoleBindingList,
            response_model_exclude_unset=True)
def list_bindings(request: Request, org: NamePath, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with p.store.transaction() as s:
        store.get(s, store.Scope(KINDS["Organization"]), org)
        if not who.member_of(org):
            require(who, "rolebindings:list", Target(org))
        rows = s.execute(select(RoleBindingRow, UserRow.name).join(UserRow, UserRow.id == RoleBindingRow.user_id)
                         .where(RoleBindingRow.organization == org)
                         .order_by(UserRow.name, RoleBindingRow.role, RoleBindingRow.project))
        # Who holds what is itself information: a project member sees the project's bindings and their own.
        return {"items": [identity.binding_view(b, name) for b, name in rows
                          if name == who.user or who.can("rolebindings:list", Target(org, b.project, b.environment))]}


@router.post("/organizations/{org}/rolebindings", tags=["rolebindings"], status_code=201,
             response_model=schemas.RoleBinding, response_model_exclude_unset=True)
def create_binding(request: Request, org: NamePath, body: NewBinding, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    scope = body.project or body.environment or ""
    work = Work("rolebinding.create", "RoleBinding", org, body.project or "", body.user,
                f"{body.role} for {body.user}" + (f" on {scope}" if scope else ""))
    with audited(p, who, work) as s:
        require(who, "rolebindings:create", Target(org, body.project or "", body.environment or ""))
        user = identity.get_user(s, body.user)
        row = identity.grant(s, user, body.role, org, body.project or "", body.environment or "")
        return identity.binding_view(row, user.name)


@router.delete("/organizations/{org}/rolebindings/{binding_id}", tags=["rolebindings"], response_model=schemas.Deleted,
               response_model_exclude_unset=True)
def delete_binding(request: Request, org: NamePath, binding_id: NamePath, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with audited(p, who, Work("rolebinding.delete", "RoleBinding", org, name=binding_id)) as s:
        row = s.get(RoleBindingRow, binding_id)
        if row is None or row.organization != org:
            raise NotFoundError(f"role binding '{binding_id}' not found in organization '{org}'")
        require(who, "rolebindings:delete", Target(org, row.project, row.environment))
        s.delete(row)
        return {"deleted": binding_id}


@router.get("/audit", tags=["audit"], response_model=schemas.AuditList, response_model_exclude_unset=True)
def list_audit(request: Request, who: Principal = Caller,
               organization: str | None = Query(None, max_length=63),
               actor: str | None = Query(None, max_length=63), kind: str | None = Query(None, max_length=40),
               limit: int = Query(100, ge=1, le=1000),
               before: int | None = Query(None, ge=1, le=2**31 - 1, description="events older than this id")
               ) -> dict[str, Any]:
    """Newest first. Administrators see their organizations' events; everyone sees their own."""
    p = platform(request)
    visible = None if who.superuser else {b.organization for b in who.bindings
                                          if who.can("audit:read", Target(b.organization))}
    with p.store.transaction() as s:
        rows = audit.list_events(s, who, limit, before, organization, actor, kind, visible)
        return {"items": [audit.view(r) for r in rows],
                "metadata": {"before": rows[-1].id if len(rows) == limit else None}}


@router.post("/admin/rotate-key", tags=["admin"], response_model=schemas.KeyRotation, response_model_exclude_unset=True)
def rotate_key(request: Request, who: Principal = Caller) -> dict[str, Any]:
    """Re-encrypt every secret under a new master key, in small transactions, while serving."""
    p = platform(request)
    work = Work("admin.rotate-key")
    with audited(p, who, work):  # the audit session stays idle while the batches below run
        require_superuser(who, "rotate the master key")
        new_id = p.keyring.begin_rotation()
        total = 0
        while True:
            with p.store.transaction() as s:
                done = rotation.rotate_all(s, p.keyring)
            total += done
            if done == 0:
                break
        dropped = p.keyring.finish_rotation()
        work.message = f"new key {new_id}, {total} secrets re-encrypted"
    return {"keyId": new_id, "reencrypted": total, "retiredKeys": dropped}
