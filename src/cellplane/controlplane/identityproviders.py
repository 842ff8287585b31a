"""Organizations' OpenID Connect providers (single sign-on): what they are, and what a sign-in through one does.

A provider is an organization's row in ``identity_providers``: issuer, client id, the client secret sealed with the
key ring (AES-256-GCM, associated data ``identity-provider:<org>/<name>``, re-encrypted by ``admin rotate-key``;
never returned: views say ``clientSecretSet``), scopes, the claim holding the user's groups, the groups' roles and
whether a first sign-in creates the user.

A sign-in (``sign_in``, called by the console's flow once the ID token is verified) finds the user linked to the
provider's subject (``user_identities``), or creates one (``create_users``) named after ``preferred_username`` or
the email's local part, made a DNS label and unique (never an existing user's name: a provider cannot take over a
local account); then the role bindings the provider gave that user are replaced by those its groups map to now
(``role_bindings.provider_id``), so a group removed at the provider is a role removed at the next sign-in. Bindings
granted by hand are never touched. Cost: a few indexed reads and writes in the caller's transaction.

The OpenID Connect protocol itself (discovery, PKCE, the code exchange, the ID token's checks) is the console's
(``cellplane.console.sso``); this module holds no network code.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cellplane.controlplane import audit
from cellplane.controlplane.identity import binding_of
from cellplane.controlplane.keyring import KeyRing
from cellplane.controlplane.rbac import ROLE_NAMES
from cellplane.errors import ConflictError, FieldProblem, ForbiddenError, InvalidError, NotFoundError
from cellplane.model import dns_label_problem
from cellplane.store.tables import (
    IdentityProviderRow,
    ResourceRow,
    RoleBindingRow,
    SessionRow,
    UserIdentityRow,
    UserRow,
    now,
)

DEFAULT_SCOPES = ("openid", "email", "profile")
DEFAULT_GROUPS_CLAIM = "groups"
LOOPBACK = re.compile(r"localhost|127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|::1")
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,100}$")  # RFC 6749's scope-token
MAX_GROUP_ROLES = 200


@dataclass(frozen=True)
class GroupRole:
    """Members of ``group`` at the provider hold ``role`` on the organization, or on one project or environment."""

    group: str
    role: str
    project: str = ""
    environment: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"group": self.group, "role": self.role, **({"project": self.project} if self.project else {}),
                **({"environment": self.environment} if self.environment else {})}


@dataclass
class ProviderSpec:
    """What a PUT says of a provider. ``client_secret`` None keeps the stored one (a new provider: none, a public
    client that proves itself with PKCE alone); ``""`` removes it."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: list[str] = field(default_factory=lambda: list(DEFAULT_SCOPES))
    groups_claim: str = DEFAULT_GROUPS_CLAIM
    group_roles: list[GroupRole] = field(default_factory=list)
    create_users: bool = False
    disabled: bool = False


def secret_context(org: str, name: str) -> str:
    return f"identity-provider:{org}/{name}"


def session_provider(row: IdentityProviderRow) -> str:
    """What a console session records of the provider that signed it in."""
    return f"oidc:{row.organization}/{row.name}"


# -- validation -----------------------------------------------------------------------------------------------------


def issuer_problem(issuer: str) -> str | None:
    """Why ``issuer`` cannot be an issuer: https, or http on a loopback address only; no query, fragment or
    credentials (OpenID Connect Discovery 1.0, section 4). The API's schema states the same rule as a pattern."""
    try:
        parts = urlsplit(issuer)
    except ValueError as e:
        return f"'{issuer}' is not a URL ({e})"
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        return f"'{issuer}' is not an https URL"
    if parts.query or parts.fragment or parts.username or parts.password or "?" in issuer or "#" in issuer:
        return "an issuer has no query, fragment or credentials"
    if parts.scheme == "http" and not LOOPBACK.fullmatch(host):
        return "must be https (plain http only on a loopback address: localhost, 127.x.x.x or [::1])"
    return None


def check(s: Session, org: str, name: str, spec: ProviderSpec) -> None:
    """Every problem of ``spec``, with its field path, at once (``InvalidError``); references must resolve."""
    problems: list[FieldProblem] = []
    name_problem = dns_label_problem(name)
    if name_problem:
        problems.append(FieldProblem("path.name", name_problem))
    problem = issuer_problem(spec.issuer)
    if problem:
        problems.append(FieldProblem("issuer", problem))
    if not spec.client_id:
        problems.append(FieldProblem("clientId", "must not be empty"))
    if "openid" not in spec.scopes:
        problems.append(FieldProblem("scopes", "must include 'openid'"))
    for i, scope in enumerate(spec.scopes):
        if not SCOPE_TOKEN.fullmatch(scope):
            problems.append(FieldProblem(f"scopes[{i}]", "a scope is printable ASCII without spaces, '\"' or '\\'"))
    if not spec.groups_claim:
        problems.append(FieldProblem("groupsClaim", "must not be empty"))
    for i, mapping in enumerate(spec.group_roles):
        at = f"groupRoles[{i}]"
        if not mapping.group:
            problems.append(FieldProblem(f"{at}.group", "must not be empty"))
        if mapping.role not in ROLE_NAMES:
            problems.append(FieldProblem(f"{at}.role", f"'{mapping.role}' is not a role; use one of "
                                         f"{', '.join(ROLE_NAMES)}"))
        if mapping.project and mapping.environment:
            problems.append(FieldProblem(f"{at}.environment",
                                         "a binding is scoped to a project or an environment, not both"))
        for kind, value, key in (("Project", mapping.project, "project"),
                                 ("Environment", mapping.environment, "environment")):
            if value and not _exists(s, kind, org, value):
                problems.append(FieldProblem(f"{at}.{key}", f"{kind.lower()} '{value}' not found in organization "
                                             f"'{org}'"))
    if problems:
        raise InvalidError(f"identity provider '{name}' is not valid", problems)


def _exists(s: Session, kind: str, org: str, name: str) -> bool:
    return s.scalar(select(ResourceRow.id).where(ResourceRow.kind == kind, ResourceRow.organization == org,
                                                 ResourceRow.name == name)) is not None


# -- storage --------------------------------------------------------------------------------------------------------


def find(s: Session, org: str, name: str) -> IdentityProviderRow | None:
    return s.scalar(select(IdentityProviderRow).where(IdentityProviderRow.organization == org,
                                                      IdentityProviderRow.name == name))


def get(s: Session, org: str, name: str) -> IdentityProviderRow:
    row = find(s, org, name)
    if row is None:
        raise NotFoundError(f"identity provider '{name}' not found in organization '{org}'")
    return row


def list_rows(s: Session, org: str | None = None) -> list[IdentityProviderRow]:
    """An organization's providers by name (None: every organization's, by organization and name)."""
    q = select(IdentityProviderRow).order_by(IdentityProviderRow.organization, IdentityProviderRow.name)
    if org is not None:
        q = q.where(IdentityProviderRow.organization == org)
    return list(s.scalars(q))


def put(s: Session, keyring: KeyRing, org: str, name: str, spec: ProviderSpec) -> tuple[IdentityProviderRow, bool]:
    """Create or replace the provider; returns it and whether it was created. The caller checked ``spec``."""
    row = find(s, org, name)
    created = row is None
    if row is None:
        row = IdentityProviderRow(organization=org, name=name, created_at=now())
        s.add(row)
    row.issuer = spec.issuer  # as the provider spells it: its discovery document and ID tokens must match it exactly
    row.client_id = spec.client_id
    if spec.client_secret is not None:
        row.client_secret = keyring.encrypt(spec.client_secret, secret_context(org, name)) if spec.client_secret \
            else None
    row.scopes = list(dict.fromkeys(spec.scopes))
    row.groups_claim = spec.groups_claim
    row.group_roles = [m.as_json() for m in spec.group_roles]
    row.create_users = spec.create_users
    if spec.disabled and not row.disabled and not created:
        end_sessions(s, row)
    row.disabled = spec.disabled
    row.updated_at = now()
    s.flush()
    return row, created


def end_sessions(s: Session, row: IdentityProviderRow) -> None:
    """End the console sessions the provider started (refused from their next request: a session is read at each)."""
    s.execute(delete(SessionRow).where(SessionRow.provider == session_provider(row)))


def delete_provider(s: Session, row: IdentityProviderRow) -> None:
    """Delete the provider, the links of its subjects to users, the role bindings it gave and the console sessions
    it started (refused from the next request: sessions are read at each one); the users stay."""
    _forget_rows(s, [row.id])


def forget(s: Session, org: str) -> None:
    """Delete an organization's providers and what they made (its deletion: a later organization of the same
    name must not inherit them)."""
    _forget_rows(s, list(s.scalars(select(IdentityProviderRow.id).where(IdentityProviderRow.organization == org))))


def _forget_rows(s: Session, ids: Sequence[int]) -> None:
    if not ids:
        return
    started = [session_provider(r) for r in s.scalars(select(IdentityProviderRow).where(
        IdentityProviderRow.id.in_(ids)))]
    s.execute(delete(SessionRow).where(SessionRow.provider.in_(started)))
    s.execute(delete(RoleBindingRow).where(RoleBindingRow.provider_id.in_(ids)))
    s.execute(delete(UserIdentityRow).where(UserIdentityRow.provider_id.in_(ids)))
    s.execute(delete(IdentityProviderRow).where(IdentityProviderRow.id.in_(ids)))


def client_secret(keyring: KeyRing, row: IdentityProviderRow) -> str | None:
    """The client secret in plaintext, for the code exchange only (None: a public client)."""
    if row.client_secret is None:
        return None
    return keyring.decrypt(row.client_secret, secret_context(row.organization, row.name))


def rotate(s: Session, keyring: KeyRing, budget: int) -> int:
    """Re-encrypt client secrets held under an older key, at most ``budget``; returns how many."""
    done = 0
    for row in s.scalars(select(IdentityProviderRow).order_by(IdentityProviderRow.id)).all():
        if done >= budget:
            break
        if row.client_secret is not None and keyring.key_id_of(row.client_secret) != keyring.primary_id:
            ctx = secret_context(row.organization, row.name)
            row.client_secret = keyring.encrypt(keyring.decrypt(row.client_secret, ctx), ctx)
            done += 1
    return done


def view(row: IdentityProviderRow) -> dict[str, Any]:
    """What the API shows: everything but the client secret, of which only whether one is set."""
    return {"name": row.name, "organization": row.organization, "issuer": row.issuer, "clientId": row.client_id,
            "clientSecretSet": row.client_secret is not None, "scopes": list(row.scopes),
            "groupsClaim": row.groups_claim, "groupRoles": list(row.group_roles), "createUsers": row.create_users,
            "disabled": row.disabled,
            "createdAt": row.created_at.isoformat(), "updatedAt": row.updated_at.isoformat()}


# -- links of accounts to users -------------------------------------------------------------------------------------


def links(s: Session, row: IdentityProviderRow) -> list[dict[str, Any]]:
    """The provider's accounts linked to users, by user name: ``{user, subject, createdAt, lastSignInAt}``."""
    found = s.execute(select(UserIdentityRow, UserRow.name).join(UserRow, UserRow.id == UserIdentityRow.user_id)
                      .where(UserIdentityRow.provider_id == row.id).order_by(UserRow.name, UserIdentityRow.subject))
    return [{"user": name, "subject": link.subject, "createdAt": link.created_at.isoformat(),
             "lastSignInAt": link.last_sign_in_at.isoformat() if link.last_sign_in_at else None}
            for link, name in found]


def link(s: Session, row: IdentityProviderRow, user_name: str, subject: str, by_superuser: bool) -> bool:
    """Link the provider's account ``subject`` to the existing user (for providers that create no users, or to
    keep a local user's name and roles); returns whether the link is new (False: it was there already).

    An organization admin may link only users whose roles are all in this organization: a link lets whoever holds
    the account sign in as the user, so linking a platform administrator, or a user with roles elsewhere, would
    hand out more than the organization has; a platform administrator may link anyone. One account per user and
    provider, one user per account."""
    user = s.scalar(select(UserRow).where(UserRow.name == user_name))
    if user is None:
        raise NotFoundError(f"user '{user_name}' not found", [FieldProblem("user", "no such user")])
    if not by_superuser:
        elsewhere = s.scalar(select(RoleBindingRow.organization).where(
            RoleBindingRow.user_id == user.id, RoleBindingRow.organization != row.organization).limit(1))
        if user.superuser or elsewhere is not None:
            why = "is a platform administrator" if user.superuser else f"holds roles in organization '{elsewhere}'"
            raise ForbiddenError(f"user '{user_name}' {why}: only a platform administrator may link it to an "
                                 f"account of {row.organization}/{row.name}")
    held = s.scalar(select(UserIdentityRow).where(UserIdentityRow.provider_id == row.id,
                                                  UserIdentityRow.subject == subject))
    if held is not None:
        if held.user_id == user.id:
            return False
        other = s.get(UserRow, held.user_id)
        raise ConflictError(f"account '{subject}' of {row.name} is linked to user '{other.name if other else '?'}' "
                            f"already; unlink it first", [FieldProblem("subject", "linked to another user")])
    mine = s.scalar(select(UserIdentityRow.subject).where(UserIdentityRow.provider_id == row.id,
                                                          UserIdentityRow.user_id == user.id))
    if mine is not None:
        raise ConflictError(f"user '{user_name}' is linked to account '{mine}' of {row.name} already; unlink it "
                            "first", [FieldProblem("user", "linked to another account")])
    s.add(UserIdentityRow(provider_id=row.id, subject=subject, user_id=user.id, created_at=now()))
    s.flush()
    return True


def unlink(s: Session, row: IdentityProviderRow, user_name: str) -> str:
    """Remove the user's link to the provider, the role bindings the provider gave the user and the console
    sessions the provider started for the user; returns the subject that was linked."""
    user = s.scalar(select(UserRow).where(UserRow.name == user_name))
    held = None if user is None else s.scalar(select(UserIdentityRow).where(
        UserIdentityRow.provider_id == row.id, UserIdentityRow.user_id == user.id))
    if user is None or held is None:
        raise NotFoundError(f"user '{user_name}' is not linked to an account of {row.organization}/{row.name}")
    subject = held.subject
    s.execute(delete(RoleBindingRow).where(RoleBindingRow.provider_id == row.id, RoleBindingRow.user_id == user.id))
    s.execute(delete(SessionRow).where(SessionRow.provider == session_provider(row), SessionRow.user_id == user.id))
    s.delete(held)
    s.flush()
    return subject


# -- signing in -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    user: UserRow
    created: bool
    roles: list[str]  # the bindings the provider's groups gave, described ("viewer on organization 'acme'")
    skipped: list[str]  # mappings of the user's groups that could not be granted (their project is gone)


class SignInRefused(ForbiddenError):
    """A verified account that may not sign in (no linked user and no user creation, a disabled user)."""


def groups_of(claims: dict[str, Any], claim: str) -> list[str]:
    """The groups in ``claims[claim]``: a list of names, or one name; anything else is no group."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str)]
    return []


def user_name_for(claims: dict[str, Any]) -> str:
    """A DNS label from ``preferred_username``, else the email, else ``name`` (of an email, its local part), else
    ``user``."""
    for candidate in (claims.get("preferred_username"), claims.get("email"), claims.get("name")):
        if isinstance(candidate, str):
            candidate = candidate.split("@")[0]  # an email (Entra's preferred_username is one): its local part
            label = re.sub(r"[^a-z0-9-]+", "-", candidate.lower()).strip("-")
            label = re.sub(r"-{2,}", "-", label)[:55].strip("-")
            if label:
                return label
    return "user"


def _unique_name(s: Session, base: str) -> str:
    taken = set(s.scalars(select(UserRow.name).where(UserRow.name.like(f"{base}%"))))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def sign_in(s: Session, row: IdentityProviderRow, subject: str, claims: dict[str, Any]) -> SignedIn:
    """The user the provider's verified ``subject`` signs in as, created when the provider may create users, with
    the provider's role bindings replaced by those of its groups now; audited (``user.sign-in``)."""
    where = f"{row.organization}/{row.name}"
    if row.disabled:
        raise SignInRefused(f"{row.name} is disabled: sign in another way, or ask an administrator of the "
                            "organization")
    link = s.scalar(select(UserIdentityRow).where(UserIdentityRow.provider_id == row.id,
                                                  UserIdentityRow.subject == subject))
    created = False
    if link is not None:
        user = s.get(UserRow, link.user_id)
        assert user is not None  # the link goes with its user (ON DELETE CASCADE)
    elif row.create_users:
        email = claims.get("email")
        user = UserRow(name=_unique_name(s, user_name_for(claims)),
                       email=email[:254] if isinstance(email, str) and "@" in email else None, superuser=False)
        s.add(user)
        s.flush()
        link = UserIdentityRow(provider_id=row.id, subject=subject, user_id=user.id)
        s.add(link)
        created = True
    else:
        raise SignInRefused(f"no Cellplane user is linked to this account of {row.name}, and {row.name} does not "
                            "create users: ask an administrator of the organization")
    if user.disabled:
        raise SignInRefused(f"user '{user.name}' is disabled")
    link.last_sign_in_at = now()
    roles, skipped = _sync_bindings(s, row, user, groups_of(claims, row.groups_claim))
    audit.record(s, user.name, "user.sign-in", "succeeded", "User", row.organization, "", user.name,
                 f"through identity provider {where}" + (" (user created)" if created else "")
                 + (f"; roles: {', '.join(roles)}" if roles else "; no role from its groups")
                 + (f"; not granted: {', '.join(skipped)}" if skipped else ""))
    s.flush()
    return SignedIn(user, created, roles, skipped)


def _sync_bindings(s: Session, row: IdentityProviderRow, user: UserRow, groups: list[str]
                   ) -> tuple[list[str], list[str]]:
    s.execute(delete(RoleBindingRow).where(RoleBindingRow.provider_id == row.id, RoleBindingRow.user_id == user.id))
    s.flush()
    wanted: dict[tuple[str, str, str], None] = {}
    skipped = []
    member = set(groups)
    for mapping in row.group_roles:
        if mapping.get("group") not in member:
            continue
        project, environment = mapping.get("project") or "", mapping.get("environment") or ""
        gone = [f"{kind.lower()} '{value}'" for kind, value in (("Project", project), ("Environment", environment))
                if value and not _exists(s, kind, row.organization, value)]
        if gone or mapping.get("role") not in ROLE_NAMES:
            why = f"{', '.join(gone)} gone" if gone else "no such role"
            skipped.append(f"{mapping.get('role')} for group '{mapping.get('group')}' ({why})")
            continue
        wanted[(mapping["role"], project, environment)] = None
    roles = []
    for role, project, environment in wanted:
        held = s.scalar(select(RoleBindingRow).where(
            RoleBindingRow.user_id == user.id, RoleBindingRow.role == role,
            RoleBindingRow.organization == row.organization, RoleBindingRow.project == project,
            RoleBindingRow.environment == environment))
        binding = held
        if held is None:  # granted by hand already: kept as it is (and not the provider's to remove)
            binding = RoleBindingRow(id=secrets.token_hex(6), user_id=user.id, role=role,
                                     organization=row.organization, project=project, environment=environment,
                                     provider_id=row.id)
            s.add(binding)
        assert binding is not None
        roles.append(binding_of(binding).describe())
    s.flush()
    return roles, skipped
