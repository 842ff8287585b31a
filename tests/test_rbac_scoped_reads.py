"""Telemetry and build output are read only as far as a role binding reaches (docs/security.md, "Roles and scopes").

A real control plane holds real telemetry, reported through the data-plane API as an agent reports it, in two
environments and two projects, and real builds of both projects. A developer bound to environment ``staging``
reads staging's logs and the staging hops of a trace, nothing of ``development``, and no build or artifact; a
developer bound to project ``alpha`` reads alpha's builds and artifacts, and of a trace only alpha's hops.
(`tests/test_rbac.py` holds the same rule as a table of permission checks; here the data is really there.)
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.sealing import public_key_text
from liveserver import LiveServer, doc

ORG = "scoped"
BASE = f"/organizations/{ORG}"
PLANE = f"{BASE}/dataplanes/local"
PROJECTS = ("alpha", "beta")
TERMINAL = ("succeeded", "failed", "cancelled", "timed-out")


@pytest.fixture(scope="module")
def live_server(shared_live_server: LiveServer) -> LiveServer:
    """This module's names are its own (its organization, its users): it shares the session's control plane."""
    return shared_live_server


def _user(admin: httpx.Client, server: LiveServer, name: str, role: str, **scope: str) -> httpx.Client:
    assert admin.post("/users", json={"name": name}).status_code == 201
    r = admin.post(f"{BASE}/rolebindings", json={"user": name, "role": role, **scope})
    assert r.status_code == 201, r.text
    r = admin.post(f"/users/{name}/tokens", json={"name": "reads"})
    assert r.status_code == 201, r.text
    return server.client(r.json()["token"])


def _site(text: str) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        page = f"<h1>{text}</h1>\n".encode()
        info = tarfile.TarInfo("index.html")
        info.size = len(page)
        tar.addfile(info, io.BytesIO(page))
    return data.getvalue()


def _built(admin: httpx.Client, project: str) -> dict[str, Any]:
    r = admin.post(f"{BASE}/projects/{project}/components/api/builds", content=_site(f"the source of {project}"),
                   headers={"Content-Type": "application/gzip"})
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 300
    while (info := admin.get(f"{BASE}/builds/{r.json()['id']}").json())["state"] not in TERMINAL:
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    assert info["state"] == "succeeded" and info["artifact"], info
    return info


def _span(trace: str, project: str, environment: str, name: str, at: datetime) -> dict[str, Any]:
    return {"traceId": trace, "spanId": secrets.token_hex(8), "environment": environment, "project": project,
            "component": "api", "endpoint": "api", "listener": "external", "name": name, "start": at.isoformat(),
            "durationMs": 1.0, "status": 200}


@pytest.fixture(scope="module")
def world(live_server: LiveServer) -> dict[str, Any]:
    admin = live_server.client()
    docs = [doc("Organization", ORG),
            *(doc("Project", p, organization=ORG) for p in PROJECTS),
            *(doc("Component", "api", organization=ORG, project=p) for p in PROJECTS)]
    assert admin.post("/apply", json={"documents": docs}).status_code == 200
    r = admin.put(f"{PLANE}/agent", json={"agentId": "agent-local", "bindUnbound": True,
                                          "publicKey": public_key_text(X25519PrivateKey.generate())})
    assert r.status_code == 200, r.text
    now = datetime.now(UTC) - timedelta(seconds=5)
    lines = [{"environment": env, "project": "alpha", "component": "api", "replica": 0, "stream": "stdout",
              "at": now.isoformat(), "line": f"a line in {env}"} for env in ("staging", "development")]
    assert admin.post(f"{PLANE}/logs", json={"lines": lines}).json() == {"accepted": 2}
    crossing, development = secrets.token_hex(16), secrets.token_hex(16)
    spans = [_span(crossing, "alpha", "staging", "alpha in staging", now),
             _span(crossing, "beta", "staging", "beta in staging", now + timedelta(milliseconds=1)),
             _span(crossing, "alpha", "development", "alpha in development", now + timedelta(milliseconds=2)),
             _span(development, "alpha", "development", "only development", now)]
    assert admin.post(f"{PLANE}/spans", json={"spans": spans}).json() == {"accepted": 4}
    builds = {p: _built(admin, p) for p in PROJECTS}
    clients = {
        "organization": _user(admin, live_server, "org-viewer", "viewer"),
        "alpha": _user(admin, live_server, "alpha-developer", "developer", project="alpha"),
        "staging": _user(admin, live_server, "staging-developer", "developer", environment="staging"),
    }
    return {"clients": clients, "crossing": crossing, "development": development, "builds": builds}


def _hops(c: httpx.Client, trace: str) -> list[str] | int:
    r = c.get(f"{BASE}/traces/{trace}")
    return [s["name"] for s in r.json()["spans"]] if r.status_code == 200 else r.status_code


def test_a_trace_shows_each_caller_only_the_hops_its_binding_reaches(world: dict[str, Any]) -> None:
    c, crossing = world["clients"], world["crossing"]
    assert _hops(c["organization"], crossing) == ["alpha in staging", "beta in staging", "alpha in development"]
    assert _hops(c["alpha"], crossing) == ["alpha in staging", "alpha in development"]
    assert _hops(c["staging"], crossing) == ["alpha in staging", "beta in staging"]
    # a trace only in development does not exist for the staging developer, by its id or by a prefix of it
    assert _hops(c["staging"], world["development"]) == 404
    assert _hops(c["staging"], world["development"][:8]) == 404
    assert _hops(c["alpha"], world["development"]) == ["only development"]
    # a component's traces list filters the same way
    r = c["staging"].get(f"{BASE}/projects/alpha/components/api/traces", params={"environment": "staging"})
    assert r.status_code == 200, r.text
    assert [[s["name"] for s in t["spans"]] for t in r.json()["items"]] == [["alpha in staging", "beta in staging"]]


def test_an_environment_binding_reads_the_logs_of_its_environment_only(world: dict[str, Any]) -> None:
    logs = f"{BASE}/projects/alpha/components/api/logs"
    staging = world["clients"]["staging"]
    r = staging.get(logs, params={"environment": "staging"})
    assert [x["line"] for x in r.json()["items"]] == ["a line in staging"]
    for path in ("logs", "access-logs", "metrics", "traces"):
        r = staging.get(f"{BASE}/projects/alpha/components/api/{path}", params={"environment": "development"})
        assert r.status_code == 403, (path, r.text)
        assert "environment 'development'" in r.json()["error"]["message"]
    r = world["clients"]["alpha"].get(logs, params={"environment": "development"})
    assert [x["line"] for x in r.json()["items"]] == ["a line in development"]


def test_builds_and_artifacts_are_read_within_their_project_only(world: dict[str, Any]) -> None:
    builds, c = world["builds"], world["clients"]
    alpha, beta = builds["alpha"], builds["beta"]
    assert alpha["artifact"] != beta["artifact"]

    def artifact(client: httpx.Client, project: str, digest: str) -> httpx.Response:
        return client.get(f"{BASE}/projects/{project}/artifacts/{digest}")

    # the project's developer downloads its own project's source, and nothing of the other project's
    r = artifact(c["alpha"], "alpha", alpha["artifact"])
    assert r.status_code == 200 and r.headers["X-Cellplane-Digest"] == alpha["artifact"]
    assert artifact(c["alpha"], "beta", beta["artifact"]).status_code == 403
    assert artifact(c["alpha"], "alpha", beta["artifact"]).status_code == 404  # not under its own project either
    assert c["alpha"].get(f"{BASE}/builds/{beta['id']}").status_code == 403
    assert c["alpha"].get(f"{BASE}/builds/{beta['id']}/logs").status_code == 403
    assert c["alpha"].get(f"{BASE}/builds/{alpha['id']}/logs").json()["items"]
    # the staging developer reads no build, build log or artifact of any project
    for project in PROJECTS:
        for path in (f"builds/{builds[project]['id']}", f"builds/{builds[project]['id']}/logs",
                     f"projects/{project}/components/api/builds",
                     f"projects/{project}/artifacts/{builds[project]['artifact']}",
                     f"projects/{project}/artifacts/{builds[project]['artifact']}/manifest"):
            r = c["staging"].get(f"{BASE}/{path}")
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"]["code"] == "forbidden"
    # an organization's viewer reads both
    for project in PROJECTS:
        assert artifact(c["organization"], project, builds[project]["artifact"]).status_code == 200
