"""A fake data-plane agent over plain HTTP (the calls of docs/dataplane.md, with its own X25519 key), for tests of the
control plane's side of the agent API: it registers, reads the desired state, reports status, log lines and task
runs as a test tells it to. Also the gateways a status report names, and a build of a fixture app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.sealing import open_sealed, public_key_text
from dataplanekit import build_app


@dataclass
class Agent:
    """A fake data-plane agent: the calls of docs/dataplane.md, with its own X25519 key."""

    client: httpx.Client
    org: str = "default"
    name: str = "local"
    agent_id: str = "agent-1"
    key: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)

    @property
    def base(self) -> str:
        return f"/organizations/{self.org}/dataplanes/{self.name}"

    def register(self, bind: bool = True) -> dict[str, Any]:
        r = self.client.put(self.base + "/agent", json={"agentId": self.agent_id, "version": "0.0-test",
                                                         "hostname": "testhost", "publicKey": public_key_text(self.key),
                                                         "bindUnbound": bind})
        assert r.status_code == 200, r.text
        return r.json()

    def desired_response(self, **params: Any) -> httpx.Response:
        r = self.client.get(self.base + "/desired-state", params={"wait": 0, **params}, timeout=90)
        assert r.status_code == 200, r.text
        return r

    def desired(self, **params: Any) -> dict[str, Any]:
        return self.desired_response(**params).json()

    def status(self, deployments_: list[dict[str, Any]], gateways: dict[str, Any] | None = None) -> httpx.Response:
        return self.client.put(self.base + "/status", json={"agentId": self.agent_id, "revision": None,
                                                            "gateways": gateways or {}, "deployments": deployments_})

    def logs(self, lines: list[dict[str, Any]]) -> httpx.Response:
        return self.client.post(self.base + "/logs", json={"lines": lines})

    def runs(self, runs: list[dict[str, Any]]) -> httpx.Response:
        return self.client.post(self.base + "/task-runs", json={"runs": runs})

    def open(self, sealed: str, context: str) -> str:
        return open_sealed(self.key, sealed, context)


def gateways(env: str = "development", port: int = 8800, projects: tuple[str, ...] = ()) -> dict[str, Any]:
    """One environment's gateways as a status report names them: external on ``port``, internal on the next, then
    one cell gateway per project."""
    return {env: {"external": f"http://127.0.0.1:{port}", "internal": f"http://127.0.0.1:{port + 1}",
                  "cells": {p: f"http://127.0.0.1:{port + 2 + i}" for i, p in enumerate(projects)}}}


def build(c: httpx.Client, project: str, name: str, spec: dict[str, Any], app: str = "static-site") -> dict[str, Any]:
    """Apply a component and build it from a fixture app (a static site by default); returns the succeeded build."""
    return build_app(c, project, name, spec, app)
