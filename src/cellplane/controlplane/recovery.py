"""Break glass: a new platform administrator's token made straight from the control plane's data directory.

``cellplane admin recover-token`` runs this on the control plane's machine when no admin token is left, with no
control plane running: it reads the token key (``CELLPLANE_TOKEN_KEY`` or ``token.key``), migrates the database
like a start would, and issues the token in one audited transaction (``identity.recover_admin_token``). The CLI
reaches the control plane through this one function, so that it knows nothing of identity, keys or the store.
Cost: opening the database once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cellplane.controlplane import identity
from cellplane.controlplane.keys import decode_key
from cellplane.errors import CellplaneError
from cellplane.store import Store, sqlite_url


@dataclass(frozen=True)
class Recovered:
    token_id: str
    token: str
    created: bool  # the user did not exist and was created as a platform administrator


def token_key(data_dir: Path) -> bytes:
    """The key token digests are made with, as the control plane reads it; a ``CellplaneError`` saying why not."""
    key_text = os.environ.get("CELLPLANE_TOKEN_KEY")
    if not key_text:
        try:
            key_text = (data_dir / "token.key").read_text()
        except OSError as e:
            raise CellplaneError(f"{data_dir / 'token.key'}: cannot read the token key ({e.strerror or e}); set "
                                 "CELLPLANE_TOKEN_KEY if the control plane gets it from there") from None
    try:
        return decode_key(key_text)
    except ValueError as e:
        raise CellplaneError(f"the token key is not valid: {e}") from None


def recover_admin_token(data_dir: Path, database_url: str | None, user: str, actor: str) -> Recovered:
    """A new token for platform administrator ``user`` (created when absent), audited with ``actor``."""
    key = token_key(data_dir)
    store = Store(database_url or sqlite_url(data_dir))
    try:
        store.migrate()
        with store.transaction() as s:
            row, secret, created = identity.recover_admin_token(s, key, user, actor)
            return Recovered(row.id, secret, created)
    finally:
        store.dispose()
