"""Several control-plane replicas on one PostgreSQL database, started at the same moment."""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from liveserver import LiveServer, doc, start_server

pytestmark = pytest.mark.postgres


def _key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def test_replicas_start_together_and_share_state(tmp_path: Path, postgres_url: str) -> None:
    # Replicas share their keys through the environment, as an operator would configure them.
    env = {"CELLPLANE_MASTER_KEY": f"k1:{_key()}", "CELLPLANE_TOKEN_KEY": _key()}
    with ThreadPoolExecutor(3) as pool:
        servers: list[LiveServer] = list(pool.map(
            lambda name: start_server(tmp_path / name, postgres_url, env=env), ["a", "b", "c"]))
    try:
        tokens = [s.admin_token for s in servers if s.admin_token]
        assert len(tokens) == 1, "exactly one replica bootstraps the admin"
        token = tokens[0]
        a, b, c = (s.client(token) for s in servers)

        # one migration, one default organization, and the admin's token works on every replica
        for client in (a, b, c):
            assert [o["metadata"]["name"] for o in client.get("/organizations").json()["items"]] == ["default"]

        assert a.post("/apply", json={"organization": "default", "documents": [doc("Project", "shop"),
                                                    doc("Component", "api", project="shop")]}).status_code == 200
        assert b.get("/organizations/default/projects/shop/components/api").status_code == 200

        # a secret written through one replica is decrypted by another (same value: no new version)
        path = "/organizations/default/projects/shop/components/api/config/DB_PASSWORD"
        first = a.put(path, json={"value": "s3cret-value", "secret": True}).json()
        again = c.put(path, json={"value": "s3cret-value", "secret": True}).json()
        assert first["changed"] is True and again["changed"] is False and again["value"] == "********"

        # the audit log is one log
        actions = [e["action"] for e in b.get("/audit", params={"limit": 10}).json()["items"]]
        assert actions[:3] == ["config.set", "config.set", "apply"]
    finally:
        for s in servers:
            s.stop()
