"""The control plane's process-wide state: store, keys, and first-start bootstrap."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cellplane import API_VERSION
from cellplane.controlplane import desired, identity, lifecycle, resources
from cellplane.controlplane.keyring import KeyRing
from cellplane.controlplane.keys import load_or_create_token_key
from cellplane.controlplane.telemetry.logs import LogStore, SqlLogStore
from cellplane.controlplane.telemetry.traces import OtlpExport
from cellplane.datadir import make_private
from cellplane.model import parse_document
from cellplane.privatefiles import write_private
from cellplane.store import Store, sqlite_url
from cellplane.store.tables import UserRow

log = logging.getLogger("cellplane.controlplane")
DEFAULT_ORG = "default"
ADMIN_USER = "admin"


class Platform:
    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.data_dir = data_dir
        make_private(data_dir, "the control plane's data directory")
        self.store = Store(database_url or sqlite_url(data_dir))
        self.store.migrate()
        self.keyring = KeyRing.load_or_create(data_dir)
        self.token_key = load_or_create_token_key(data_dir)
        self.authenticate = identity.Authenticator(self.store, self.token_key)
        # Desired states of data planes, kept until what they depend on changes. On PostgreSQL other replicas may
        # change it unseen: kept for a second, as often as a waiting long-poll looked before there was a cache.
        self.desired = desired.DesiredStateCache(self.store, self.keyring,
                                                 ttl=1.0 if self.store.backend == "postgresql" else 10.0)
        self.admin_token_path = data_dir / "admin.token"
        self.created_admin = self._bootstrap()
        self.logs: LogStore = SqlLogStore(self.store)
        self.otlp: OtlpExport | None = None  # set when the operator gives a collector

    def _bootstrap(self) -> bool:
        """On first start: the default organization, and an admin whose token goes to admin.token (0600)."""
        try:
            with self.store.transaction() as s:
                org = parse_document({"apiVersion": API_VERSION, "kind": "Organization",
                                      "metadata": {"name": DEFAULT_ORG}, "spec": {"displayName": "Default"}})
                scope = resources.Scope(org.info)
                if resources.find(s, scope, DEFAULT_ORG) is None:
                    lifecycle.apply(s, org, scope, self.keyring, "system")
                if s.scalar(select(func.count()).select_from(UserRow)):
                    return False
                admin = identity.create_user(s, ADMIN_USER, superuser=True)
                _, token = identity.issue_token(s, self.token_key, admin, "bootstrap")
                write_private(self.admin_token_path, token + "\n")
                return True
        except IntegrityError:  # another replica bootstrapped the same database first
            log.info("bootstrap done by another control-plane replica")
            return False

    def close(self) -> None:
        if self.otlp is not None:
            self.otlp.close()
        self.store.dispose()
