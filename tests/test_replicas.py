"""Several control-plane replicas on one PostgreSQL database, started at the same moment."""

from __future__ import annotations

import base64
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from buildkit import APPS, component, upload, wait
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


def test_a_build_queued_on_one_replica_is_run_by_another_and_served_by_both(
        tmp_path: Path, postgres_url: str, build_cache: Path) -> None:
    env = {"CELLPLANE_MASTER_KEY": f"k1:{_key()}", "CELLPLANE_TOKEN_KEY": _key(),
           "CELLPLANE_CACHE_DIR": str(build_cache)}
    builder = start_server(tmp_path / "builder", postgres_url, env=env)
    front = start_server(tmp_path / "front", postgres_url, env={**env, "CELLPLANE_BUILD_WORKERS": "0"})
    try:
        token = builder.admin_token or front.admin_token
        b, f = builder.client(token), front.client(token)
        component(f, "cells", "site", {"type": "web-app"})
        queued = upload(f, "cells", "site", APPS / "static-site")  # uploaded to the replica that does not build
        info = wait(f, queued)
        assert info["state"] == "succeeded", info["error"]
        assert info["steps"] and all(s["state"] in ("succeeded", "skipped") for s in info["steps"])
        artifact = f"/organizations/default/projects/cells/artifacts/{info['artifact']}"
        for client in (b, f):
            body = client.get(artifact).content
            assert "sha256:" + hashlib.sha256(body).hexdigest() == info["artifact"]
        logs = f.get(f"/organizations/default/builds/{info['id']}/logs").json()["items"]
        assert any("artifact sha256:" in line["line"] for line in logs)
    finally:
        builder.stop()
        front.stop()
