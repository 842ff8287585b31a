"""Console sessions: a random session token in an HttpOnly cookie, only its keyed digest in the ``sessions`` table.

A session ends when its user signs out (the row is deleted), at its absolute expiry (``absolute`` after sign-in), or
when it has not been used for ``idle``; a disabled user's sessions stop at once (the user is read with the session).
Each lookup is one indexed read (the session, its user, the user's role bindings), in a worker thread; the last use
is written at most every ``touch`` seconds, so a page costs a write only now and then.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from cellplane.controlplane.identity import binding_of
from cellplane.controlplane.rbac import Principal
from cellplane.store import Store
from cellplane.store.tables import RoleBindingRow, SessionRow, UserRow, now

COOKIE = "cellplane_session"
PREFIX = "cps_"


@dataclass(frozen=True)
class SessionSettings:
    idle: float = 30 * 60.0  # seconds without a request before a session ends
    absolute: float = 12 * 3600.0  # seconds after sign-in when a session ends, used or not

    @property
    def touch(self) -> float:
        return min(60.0, self.idle / 10)

    @classmethod
    def from_env(cls) -> SessionSettings:
        """CELLPLANE_CONSOLE_IDLE_SECONDS and CELLPLANE_CONSOLE_SESSION_SECONDS override the defaults."""
        return cls(float(os.environ.get("CELLPLANE_CONSOLE_IDLE_SECONDS", cls.idle)),
                   float(os.environ.get("CELLPLANE_CONSOLE_SESSION_SECONDS", cls.absolute)))


def digest(key: bytes, token: str) -> str:
    return hmac.new(key, ("session:" + token).encode(), hashlib.sha256).hexdigest()


def looks_like_session(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX) and 20 < len(value) < 200


def csrf_token(key: bytes, session_token: str) -> str:
    """The CSRF token of a session: derived from it, so nothing more is stored, and useless without the cookie."""
    return hmac.new(key, ("csrf:" + session_token).encode(), hashlib.sha256).hexdigest()


def start(store: Store, key: bytes, user_id: int, settings: SessionSettings, provider: str | None = None) -> str:
    """A new session for the user; returns its token (the cookie's value), shown once and never stored."""
    token = PREFIX + secrets.token_urlsafe(32)
    at = now()
    with store.transaction() as s:
        s.add(SessionRow(id=digest(key, token), user_id=user_id, created_at=at, last_seen_at=at,
                         expires_at=at + timedelta(seconds=settings.absolute), provider=provider))
    return token


def end(store: Store, key: bytes, token: str) -> str | None:
    """End the session; returns the provider that started it (``oidc:<org>/<name>``), None for a password's."""
    with store.transaction() as s:
        row = s.get(SessionRow, digest(key, token))
        if row is None:
            return None
        provider = row.provider
        s.delete(row)
        return provider


def principal(store: Store, key: bytes, token: str | None, settings: SessionSettings) -> Principal | None:
    """The signed-in user of a session token (None: no such session, expired, or its user disabled)."""
    if not looks_like_session(token):
        return None
    assert token is not None
    sid = digest(key, token)
    at = now()
    with store.read() as s:
        row = s.get(SessionRow, sid)
        if row is None:
            return None
        user = s.get(UserRow, row.user_id)
        expired = row.expires_at < at or (at - row.last_seen_at).total_seconds() > settings.idle
        if user is None or user.disabled or expired:
            stale = True
            who = None
        else:
            stale = (at - row.last_seen_at).total_seconds() > settings.touch
            bindings = [binding_of(b) for b in s.scalars(select(RoleBindingRow).where(
                RoleBindingRow.user_id == user.id))]
            who = Principal(user=user.name, superuser=user.superuser, bindings=bindings)
    if who is None:
        if row is not None and stale:
            with store.transaction() as s:
                s.execute(delete(SessionRow).where(SessionRow.id == sid))
        return None
    if stale:
        with store.transaction() as s:
            touched = s.get(SessionRow, sid)
            if touched is not None:
                touched.last_seen_at = at
    return who
