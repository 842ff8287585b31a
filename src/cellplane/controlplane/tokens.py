"""API tokens: random, shown once, stored only as HMAC-SHA256 digests (fast to check, useless if leaked)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "cpt_"


def new_token() -> tuple[str, str]:
    """A fresh (token id, token). The id is public; the token is the secret."""
    token_id = secrets.token_hex(6)
    return token_id, f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def digest(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(PREFIX) and 20 < len(value) < 200
