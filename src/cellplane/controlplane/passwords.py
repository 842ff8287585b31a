"""Users' passwords: argon2id through argon2-cffi (its PasswordHasher defaults: 64 MiB, 3 passes, a random salt).

A hash costs about 50 ms of CPU and 64 MiB of memory, on purpose: only sign-in and a change of password pay it.
Passwords are never logged, stored or returned; only their encoded hash is kept (users.password_hash).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 1000  # argon2 takes any length; this bounds the work one request can ask for

_hasher = PasswordHasher()
# Verified against when the user does not exist or has no password, so that a wrong name costs as long as a wrong
# password (no user enumeration by timing). Made on first use (a hash costs what a sign-in does).
_dummy: list[str] = []


def problem(password: str) -> str | None:
    """Why ``password`` may not be set (None: it may)."""
    if len(password) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(encoded: str | None, password: str) -> bool:
    """Whether ``password`` matches ``encoded`` (None: no password set; the same work is done, and False)."""
    if len(password) > MAX_LENGTH:
        return False
    if not _dummy:
        _dummy.append(_hasher.hash("not a password of anyone's"))
    try:
        return _hasher.verify(encoded or _dummy[0], password) and encoded is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
