"""Users, API tokens and role bindings, and turning a bearer token into a Principal.

Besides people, each data plane's agent is a user: ``dataplane:<organization>:<data plane>`` (a name no person can
have, since people's names are DNS labels), with one binding, role ``dataplane-agent`` on that data plane alone.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cellplane.controlplane import audit, passwords, tokens
from cellplane.controlplane.rbac import AGENT_PREFIX, AGENT_ROLE, ROLE_NAMES, Binding, Principal
from cellplane.errors import ConflictError, FieldProblem, ForbiddenError, InvalidError, NotFoundError, UnauthorizedError
from cellplane.model import KINDS, dns_label_problem
from cellplane.store import Store
from cellplane.store.tables import ResourceRow, RoleBindingRow, SessionRow, TokenRow, UserRow, now

IDENTITY_TABLES = ("users", "tokens", "role_bindings")  # what a verified principal is read from


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


def set_password(s: Session, user: UserRow, password: str, current: str | None, need_current: bool) -> None:
    """Sets ``user``'s password hash (argon2id) and ends the user's console sessions (signed in with the old one).
    ``need_current``: ``current`` must match the password it has."""
    if need_current and not passwords.verify(user.password_hash, current or ""):
        raise ForbiddenError("the current password is not right: users changing their own password give the one "
                             "they have (currentPassword), or a platform administrator sets it",
                             [FieldProblem("currentPassword", "not the current password")])
    problem = passwords.problem(password)
    if problem:
        raise InvalidError("the password is not valid", [FieldProblem("password", problem)])
    user.password_hash = passwords.hash_password(password)
    s.execute(delete(SessionRow).where(SessionRow.user_id == user.id))


def token_view(row: TokenRow, user: str) -> dict[str, Any]:
    return {"id": row.id, "user": user, "name": row.name, "createdAt": row.created_at.isoformat(),
            "expiresAt": row.expires_at.isoformat() if row.expires_at else None,
            "lastUsedAt": row.last_used_at.isoformat() if row.last_used_at else None}


def user_view(user: UserRow) -> dict[str, Any]:
    return {"name": user.name, "email": user.email, "superuser": user.superuser, "disabled": user.disabled,
            "createdAt": user.created_at.isoformat()}


def _well_formed(token: str | None) -> str:
    if not token or not tokens.looks_like_token(token):
        raise UnauthorizedError()
    return token


def _verify(s: Session, digest: str) -> tuple[Principal, datetime | None]:
    """The principal of the token with this digest, and when the token expires."""
    row = s.scalar(select(TokenRow).where(TokenRow.digest == digest))
    if row is None:
        raise UnauthorizedError("the API token is not valid (revoked, or never issued)")
    if _expired(row.expires_at):
        raise UnauthorizedError("the API token has expired")
    user = s.get(UserRow, row.user_id)
    if user is None or user.disabled:
        raise UnauthorizedError("the token's user is disabled")
    bindings = [binding_of(b) for b in s.scalars(select(RoleBindingRow).where(RoleBindingRow.user_id == user.id))]
    return Principal(user=user.name, superuser=user.superuser, bindings=bindings), row.expires_at


def _expired(expires_at: datetime | None) -> bool:
    return expires_at is not None and expires_at < now()


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    expires_at: datetime | None
    seq: int  # the store's change sequence number read before the token was looked up
    at: float  # time.monotonic() of the lookup


class Authenticator:
    """Bearer token -> Principal, with the verified principals of recent tokens kept in memory.

    Authenticating from the database costs a transaction per request. A kept principal is used while all of these
    hold, else the token is looked up again:

    * nothing was written to users, tokens or role bindings through this process since it was looked up (a token
      revoked, a user disabled or a binding removed here takes effect at once);
    * it was looked up less than ``ttl`` seconds ago (another control-plane replica on the same PostgreSQL
      database may have changed them unseen);
    * the token has not expired (its expiry is kept and checked on every request).

    Tokens are kept by their keyed digest (as stored in the database), never in plaintext. Failures are not kept.
    """

    TTL = 5.0
    MAX_ENTRIES = 10_000

    def __init__(self, store: Store, key: bytes, ttl: float = TTL) -> None:
        self.store = store
        self.key = key
        self.ttl = ttl
        self._kept: dict[str, _Verified] = {}
        self._lock = threading.Lock()

    def kept(self, token: str | None) -> Principal | None:
        """The principal of a token verified a moment ago (None: look it up, by calling this object)."""
        if not token or not tokens.looks_like_token(token):
            return None
        kept = self._kept.get(tokens.digest(self.key, token))
        return kept.principal if kept is not None and self._fresh(kept) else None

    def __call__(self, token: str | None) -> Principal:
        digest = tokens.digest(self.key, _well_formed(token))
        kept = self._kept.get(digest)
        if kept is not None and self._fresh(kept):
            return kept.principal
        seq = self.store.changes.seq  # before reading: a change committed meanwhile makes this entry stale
        with self.store.read() as s:
            principal, expires_at = _verify(s, digest)
        with self._lock:
            if len(self._kept) >= self.MAX_ENTRIES:
                self._kept.clear()
            self._kept[digest] = _Verified(principal, expires_at, seq, time.monotonic())
        return principal

    def _fresh(self, kept: _Verified) -> bool:
        return (time.monotonic() - kept.at < self.ttl and not _expired(kept.expires_at)
                and not self.store.changes.since(kept.seq, IDENTITY_TABLES))


def expire_sessions(s: Session, at: datetime) -> int:
    """Delete the console sessions past their absolute expiry (idle ones are refused when used, and are past it
    within the session's length): the retention loop's call, so that the table holds live sessions only."""
    result: Any = s.execute(delete(SessionRow).where(SessionRow.expires_at < at))
    return int(result.rowcount or 0)


def binding_of(row: RoleBindingRow) -> Binding:
    return Binding(row.id, row.role, row.organization, row.project, row.environment, row.dataplane or "")


def grant(s: Session, user: UserRow, role: str, organization: str, project: str = "",
          environment: str = "") -> RoleBindingRow:
    problems = []
    if role == AGENT_ROLE or user.name.startswith(AGENT_PREFIX):
        problems.append(FieldProblem("role" if role == AGENT_ROLE else "user",
                                     "a data plane's agent gets its role with its token (POST "
                                     "/organizations/{org}/dataplanes/{name}/tokens), and no other"))
    elif role not in ROLE_NAMES:
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
            **({"dataplane": row.dataplane} if row.dataplane else {}), "createdAt": row.created_at.isoformat()}


# -- data planes' agents, and the break-glass token -------------------------------------------------------------------


def agent_user_name(org: str, dataplane: str) -> str:
    """The user a data plane's agent acts as (a digest when the plain name would not fit the 63-character column)."""
    name = f"{AGENT_PREFIX}{org}:{dataplane}"
    return name if len(name) <= 63 else AGENT_PREFIX + hashlib.sha256(f"{org}/{dataplane}".encode()).hexdigest()[:48]


def issue_agent_token(s: Session, key: bytes, org: str, dataplane: str, name: str = "agent",
                      expires_at: datetime | None = None) -> tuple[TokenRow, str, UserRow]:
    """A new token for the agent of data plane ``dataplane``: its user and its one binding (role dataplane-agent on
    that data plane) are made on first use. The plaintext is returned once and never stored."""
    user_name = agent_user_name(org, dataplane)
    user = s.scalar(select(UserRow).where(UserRow.name == user_name))
    if user is None:
        user = UserRow(name=user_name, email=None, superuser=False)
        s.add(user)
        s.flush()
    bound = s.scalar(select(RoleBindingRow.id).where(
        RoleBindingRow.user_id == user.id, RoleBindingRow.role == AGENT_ROLE, RoleBindingRow.organization == org,
        RoleBindingRow.dataplane == dataplane))
    if bound is None:
        s.add(RoleBindingRow(id=secrets.token_hex(6), user_id=user.id, role=AGENT_ROLE, organization=org,
                             dataplane=dataplane))
        s.flush()
    row, token = issue_token(s, key, user, name, expires_at)
    return row, token, user


def recover_admin_token(s: Session, key: bytes, user_name: str, actor: str) -> tuple[TokenRow, str, bool]:
    """Break glass: a new token for platform administrator ``user_name`` (created when absent), audited with
    ``actor``. For the operator of the data directory, who holds the database and the token key anyway; never
    reachable through the API. Returns the token row, the token, and whether the user was created."""
    user = s.scalar(select(UserRow).where(UserRow.name == user_name))
    created = user is None
    if user is None:
        user = create_user(s, user_name, superuser=True)
    elif not user.superuser or user.disabled:
        raise InvalidError(f"user '{user_name}' is not an enabled platform administrator; name another user (it is "
                           "created as a platform administrator)",
                           [FieldProblem("user", "not a platform administrator")])
    row, token = issue_token(s, key, user, "recovered")
    audit.record(s, actor, "token.recover", "succeeded", "User", name=user_name,
                 message=f"token {row.id} issued from the data directory" + (" (user created)" if created else ""))
    return row, token, created
