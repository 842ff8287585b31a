"""Sealing secrets to a data plane: only the holder of the data plane's private key can open them.

The control plane decrypts a secret with its key ring and seals it to the agent's X25519 public key:
an ephemeral key pair, ECDH, HKDF-SHA256 and AES-256-GCM, with the secret's place (``environment/
project/component/name``) as associated data, so a sealed value cannot be moved to another place.
The agent keeps desired state on disk sealed and opens values only when it starts a process.

Format: ``v1.<base64url ephemeral public key>.<base64url nonce || ciphertext>``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cellplane.errors import CellplaneError
from cellplane.privatefiles import write_private

VERSION = "v1"
_INFO = b"cellplane-sealed-v1"


class SealError(CellplaneError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="sealed-value", status=422)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=ephemeral + recipient, info=_INFO).derive(shared)


def public_key_text(private: X25519PrivateKey) -> str:
    return _b64(_raw_public(private.public_key()))


def parse_public_key(text: str) -> X25519PublicKey:
    try:
        raw = _unb64(text)
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        return X25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as e:
        raise SealError(f"not an X25519 public key (base64url of 32 bytes): {e}") from None


def seal(public_key: str | X25519PublicKey, plaintext: str, context: str) -> str:
    recipient = parse_public_key(public_key) if isinstance(public_key, str) else public_key
    ephemeral = X25519PrivateKey.generate()
    eph_raw, rec_raw = _raw_public(ephemeral.public_key()), _raw_public(recipient)
    key = _key(ephemeral.exchange(recipient), eph_raw, rec_raw)
    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
    return f"{VERSION}.{_b64(eph_raw)}.{_b64(nonce + ct)}"


def open_sealed(private: X25519PrivateKey, sealed: str, context: str) -> str:
    try:
        version, eph_text, body_text = sealed.split(".")
        if version != VERSION:
            raise ValueError(f"unknown version '{version}'")
        eph_raw, body = _unb64(eph_text), _unb64(body_text)
        ephemeral = X25519PublicKey.from_public_bytes(eph_raw)
        key = _key(private.exchange(ephemeral), eph_raw, _raw_public(private.public_key()))
        return AESGCM(key).decrypt(body[:12], body[12:], context.encode()).decode()
    except InvalidTag:
        raise SealError(f"the sealed value for '{context}' was not sealed to this data plane's key, "
                        "or belongs elsewhere") from None
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise SealError(f"the sealed value for '{context}' is malformed: {e}") from None


def load_or_create_private(path: Path) -> X25519PrivateKey:
    """The data plane's private key, created on first use (mode 0600)."""

    if path.exists():
        return X25519PrivateKey.from_private_bytes(_unb64(path.read_text().strip()))
    key = X25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    write_private(path, _b64(raw) + "\n")
    return key
