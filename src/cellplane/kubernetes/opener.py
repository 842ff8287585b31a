"""What opens a deployment's sealed values for the renderer, and fingerprints configuration without leaking it.

The renderer never holds the data plane's key itself: it is handed an ``Opener``. ``KeyOpener`` is the agent's
(``cellplane.sealing.open_sealed`` with the data plane's X25519 key). The fingerprint is an HMAC-SHA256 under a
key derived from that private key, so the checksum annotation on a pod template (which anyone allowed to read
Deployments sees) says whether configuration changed without giving a dictionary attack on a weak secret
anything to test guesses against. Cost: one HMAC per deployment.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.sealing import open_sealed


class Opener(Protocol):
    def open(self, sealed: str, place: str) -> str:
        """The plaintext of a value sealed to this data plane for ``place`` (``environment/project/component/
        name``); ``cellplane.sealing.SealError`` when it is not one."""
        ...

    def fingerprint(self, data: bytes) -> str:
        """A keyed digest (hex) of ``data``: equal for equal data, useless to anyone without the key."""
        ...


@dataclass(frozen=True)
class KeyOpener:
    """The agent's opener: the data plane's private key."""

    key: X25519PrivateKey
    _mac_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        raw = self.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
        object.__setattr__(self, "_mac_key", hashlib.sha256(b"cellplane-kubernetes-fingerprint\x00" + raw).digest())

    def open(self, sealed: str, place: str) -> str:
        return open_sealed(self.key, sealed, place)

    def fingerprint(self, data: bytes) -> str:
        return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()
