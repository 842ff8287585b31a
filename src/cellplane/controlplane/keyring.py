"""Encryption of secret configuration values at rest (AES-256-GCM).

A ciphertext reads ``v1:<key id>:<base64(nonce + ciphertext)>``. The key id lets a key ring hold
several keys during a rotation: new values use the primary key, old ones still decrypt, and
``rotate`` re-encrypts them. The associated data binds each ciphertext to where it is stored, so
a value copied to another component or key does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cellplane.controlplane.keys import decode_key, encode_key, new_key
from cellplane.errors import CellplaneError, ConflictError
from cellplane.privatefiles import write_private

MASK = "********"


class KeyRing:
    """Keys by id; the first is the primary. Thread-safe: rotation swaps keys under a lock."""

    def __init__(self, keys: list[tuple[str, bytes]], path: Path | None) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._keys = list(keys)
        self._path = path
        self._lock = threading.Lock()

    @classmethod
    def load_or_create(cls, data_dir: Path) -> KeyRing:
        env = os.environ.get("CELLPLANE_MASTER_KEY")
        if env:
            return cls(_parse(env), None)
        path = data_dir / "master.key"
        if path.exists():
            return cls(_parse(path.read_text()), path)
        ring = cls([(secrets.token_hex(4), new_key())], path)
        ring._save()
        return ring

    @property
    def primary_id(self) -> str:
        return self._keys[0][0]

    @property
    def key_ids(self) -> list[str]:
        return [k for k, _ in self._keys]

    @property
    def from_environment(self) -> bool:
        return self._path is None

    def encrypt(self, plaintext: str, context: str) -> str:
        key_id, key = self._keys[0]
        nonce = secrets.token_bytes(12)
        blob = nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
        return f"v1:{key_id}:{base64.b64encode(blob).decode()}"

    def decrypt(self, ciphertext: str, context: str) -> str:
        try:
            version, key_id, b64 = ciphertext.split(":", 2)
            key = dict(self._keys)[key_id]
            blob = base64.b64decode(b64)
            if version != "v1":
                raise ValueError(version)
            return AESGCM(key).decrypt(blob[:12], blob[12:], context.encode()).decode()
        except (ValueError, KeyError, InvalidTag) as e:
            raise CellplaneError("a stored secret cannot be decrypted with the current key ring",
                                 code="secret-undecryptable", status=500) from e

    def key_id_of(self, ciphertext: str) -> str:
        return ciphertext.split(":", 2)[1]

    def begin_rotation(self) -> str:
        """Add a new primary key (old keys still decrypt) and persist the ring before any re-encryption."""
        if self.from_environment:
            raise ConflictError(
                "the master key comes from CELLPLANE_MASTER_KEY; rotate it by setting a new key first in that "
                "variable (space-separated 'id:key' pairs, primary first) and restarting",
                code="key-from-environment",
            )
        with self._lock:
            key_id = secrets.token_hex(4)
            self._keys.insert(0, (key_id, new_key()))
            self._save()
            return key_id

    def finish_rotation(self) -> list[str]:
        """Drop every key but the primary, once nothing is encrypted with them any more."""
        with self._lock:
            dropped = [k for k, _ in self._keys[1:]]
            self._keys = self._keys[:1]
            self._save()
            return dropped

    def _save(self) -> None:
        if self._path is not None:
            write_private(self._path, "".join(f"{kid}:{encode_key(k)}\n" for kid, k in self._keys))


def _parse(text: str) -> list[tuple[str, bytes]]:
    keys = []
    for item in text.split():
        if ":" in item:
            key_id, _, encoded = item.partition(":")
        else:  # a bare key, as an operator may set CELLPLANE_MASTER_KEY
            key_id, encoded = "env", item
        keys.append((key_id, decode_key(encoded)))
    if not keys:
        raise ValueError("the master key ring is empty")
    return keys

