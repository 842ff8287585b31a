"""Key material kept in the data directory: the secrets key ring and the token digest key.

Both are files of mode 0600 created on first start, or come from the environment
(``CELLPLANE_MASTER_KEY``, ``CELLPLANE_TOKEN_KEY``) so that several control-plane replicas
can share them.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cellplane.privatefiles import write_private


def new_key() -> bytes:
    return secrets.token_bytes(32)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_key(text: str) -> bytes:
    text = text.strip()
    key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(key) != 32:
        raise ValueError("a key must be 32 bytes, base64url-encoded")
    return key


def load_or_create_token_key(data_dir: Path) -> bytes:
    env = os.environ.get("CELLPLANE_TOKEN_KEY")
    if env:
        return decode_key(env)
    path = data_dir / "token.key"
    if path.exists():
        return decode_key(path.read_text())
    key = new_key()
    write_private(path, encode_key(key) + "\n")
    return key
