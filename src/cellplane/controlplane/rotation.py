"""Key rotation: re-encrypting every secret held under an older key of the key ring, a batch at a time.

Each table that holds ciphertexts owns a ``rotate(session, keyring, budget)`` that re-encrypts at most ``budget``
of its secrets and says how many it did; ``rotate_all`` spends one batch across them in the order of
``ROTATIONS``. A new kind of secret adds its function there. The caller (``POST /admin/rotate-key``) repeats
batches, one transaction each, until a batch does nothing: then no secret needs the older keys. Cost: a batch
reads every secret row (to compare key ids) and decrypts and encrypts at most ``batch`` of them.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from cellplane.controlplane import config, connections, identityproviders, releases
from cellplane.controlplane.keyring import KeyRing
from cellplane.controlplane.telemetry import alerts

Rotation = Callable[[Session, KeyRing, int], int]

ROTATIONS: tuple[Rotation, ...] = (
    config.rotate,  # configuration secrets
    config.rotate_webhook_secrets,  # git webhook secrets
    connections.rotate,  # the secrets of connections
    releases.rotate,  # the secrets copied into releases
    alerts.rotate,  # the signing secrets of alert webhooks
    identityproviders.rotate,  # the client secrets of organizations' OpenID Connect providers
)


def rotate_all(s: Session, keyring: KeyRing, batch: int = 200) -> int:
    """Re-encrypt one batch of secrets held under an older key; returns how many were done."""
    done = 0
    for rotate in ROTATIONS:
        if done >= batch:
            break
        done += rotate(s, keyring, batch - done)
    s.flush()
    return done
