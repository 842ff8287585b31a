"""The control plane's in-memory caches, through real HTTP: verified tokens (``identity.Authenticator``) and data
planes' desired states (``desired.DesiredStateCache``). What they keep must never outlive what it was read from: a
change made through the control plane takes effect at once, a token expires on time, and a change made by another
replica (here: another process writing the database) within the cache's time limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import delete, update

from buildkit import APPS, BuildServer, component, failed_why, upload, wait
from cellplane.controlplane.identity import Authenticator
from cellplane.sealing import public_key_text
from cellplane.store import Store, sqlite_url
from cellplane.store.tables import TokenRow, now
from liveserver import LiveServer, doc, start_server

ORG = "/organizations/default"


def new_user(admin: httpx.Client, server: LiveServer, name: str) -> tuple[httpx.Client, str]:
    """A user without roles, its client and its token id."""
    assert admin.post("/users", json={"name": name}).status_code == 201
    r = admin.post(f"/users/{name}/tokens", json={"name": "main"})
    assert r.status_code == 201, r.text
    return server.client(r.json()["token"]), r.json()["id"]


def until(check: Callable[[], bool], seconds: float) -> float:
    """Seconds until ``check()`` is true (it must become true within ``seconds``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


def register(c: httpx.Client, name: str, bind: bool) -> None:
    r = c.put(f"{ORG}/dataplanes/{name}/agent", json={
        "agentId": f"agent-{name}", "publicKey": public_key_text(X25519PrivateKey.generate()), "bindUnbound": bind})
    assert r.status_code == 200, r.text


def desired(c: httpx.Client, plane: str = "local", **params: Any) -> httpx.Response:
    return c.get(f"{ORG}/dataplanes/{plane}/desired-state", params={"wait": 0, **params}, timeout=90)


@pytest.fixture(scope="module")
def server(build_server: BuildServer) -> LiveServer:
    return build_server.server


@pytest.fixture
def other_replica(server: LiveServer) -> Iterator[Store]:
    """The control plane's database, opened by this process: writes the control plane does not see happen."""
    store = Store(sqlite_url(server.data_dir))
    try:
        yield store
    finally:
        store.dispose()


# -- verified tokens ------------------------------------------------------------------------------------------------


def test_a_removed_role_binding_takes_effect_at_once(server: LiveServer) -> None:
    admin = server.client()
    assert admin.post(f"{ORG}/projects", json={"metadata": {"name": "kept"}}).status_code == 201
    c, _ = new_user(admin, server, "binding-holder")
    assert c.get(f"{ORG}/projects/kept").status_code == 403
    r = admin.post(f"{ORG}/rolebindings", json={"user": "binding-holder", "role": "viewer", "project": "kept"})
    assert r.status_code == 201, r.text
    binding = r.json()["id"]
    for _ in range(3):  # granted: seen at once, and kept
        assert c.get(f"{ORG}/projects/kept").status_code == 200
    assert admin.delete(f"{ORG}/rolebindings/{binding}").status_code == 200
    r = c.get(f"{ORG}/projects/kept")
    assert r.status_code == 403, r.text
    assert c.get("/whoami").json()["roles"] == []


def test_a_token_expires_on_time_although_it_is_kept(server: LiveServer, other_replica: Store) -> None:
    admin = server.client()
    c, token_id = new_user(admin, server, "short-lived")
    expires = now() + timedelta(seconds=2)
    with other_replica.transaction() as s:  # the API gives whole days; set a closer expiry before the first use
        s.execute(update(TokenRow).where(TokenRow.id == token_id).values(expires_at=expires))
    answers: list[tuple[float, int]] = []
    while not answers or answers[-1][1] == 200:
        r = c.get("/whoami")
        answers.append(((now() - expires).total_seconds(), r.status_code))
        assert len(answers) < 2000 and answers[-1][0] < 5, "the token was not refused after it expired"
        time.sleep(0.02)
    late, status = answers[-1]
    assert status == 401 and "expired" in r.json()["error"]["message"]
    assert all(at < 0.05 for at, code in answers if code == 200), "answered after the token expired"
    assert late < 0.5, f"refused {late:.2f} s after the token expired"
    assert len(answers) > 10  # it was used (and kept) before it expired


def test_a_token_revoked_by_another_replica_is_refused_within_the_time_limit(server: LiveServer,
                                                                            other_replica: Store) -> None:
    admin = server.client()
    c, token_id = new_user(admin, server, "revoked-elsewhere")
    assert c.get("/whoami").status_code == 200  # kept now
    with other_replica.transaction() as s:
        s.execute(delete(TokenRow).where(TokenRow.id == token_id))
    took = until(lambda: c.get("/whoami").status_code == 401, Authenticator.TTL + 2)
    assert took <= Authenticator.TTL + 1


# -- desired states -------------------------------------------------------------------------------------------------


def test_desired_state_follows_what_it_was_computed_from(server: LiveServer) -> None:
    c = server.client()
    register(c, "local", bind=True)
    component(c, "cached", "caller", {"type": "service",
                                      "endpoints": [{"name": "api", "port": 8080, "visibility": ["Public"]}],
                                      "dependencies": [{"name": "dep", "component": "later"}]})
    info = wait(c, upload(c, "cached", "caller", APPS / "static-site"))
    assert info["state"] == "succeeded", failed_why(c, info)
    r = c.post(f"{ORG}/projects/cached/components/caller/deployments", json={"environment": "development"})
    assert r.status_code == 201, r.text

    def caller(state: dict[str, Any]) -> dict[str, Any]:
        return next(d for d in state["deployments"] if (d["project"], d["component"]) == ("cached", "caller"))

    first = desired(c).json()
    assert caller(first)["blocked"] == "dependency 'dep': component cached/later does not exist"
    assert desired(c).json()["revision"] == first["revision"]

    # a write it does not depend on (a component of another project) leaves it as it is
    assert c.post("/apply", json={"documents": [doc("Project", "elsewhere", organization="default"),
                                                doc("Component", "other", organization="default",
                                                    project="elsewhere")]}).status_code == 200
    assert desired(c).json()["revision"] == first["revision"]

    # the component its connection names, created later: seen at once
    assert c.post("/apply", json={"documents": [doc("Component", "later", {"type": "service", "endpoints": [
        {"name": "api", "port": 8080}]}, organization="default", project="cached")]}).status_code == 200
    second = desired(c).json()
    assert second["revision"] != first["revision"]
    assert caller(second)["blocked"] == "dependency 'dep': component cached/later is not deployed in development"

    # undeployed: gone at once
    assert c.delete(f"{ORG}/projects/cached/components/caller/deployments/development").status_code == 200
    third = desired(c).json()
    assert [d for d in third["deployments"] if d["project"] == "cached"] == []


def test_a_deleted_data_plane_has_no_desired_state(server: LiveServer) -> None:
    c = server.client()
    register(c, "spare", bind=False)
    assert desired(c, "spare").status_code == 200
    assert desired(c, "spare").status_code == 200  # kept now
    assert c.delete(f"{ORG}/dataplanes/spare").status_code == 200
    r = desired(c, "spare")
    assert r.status_code == 404, r.text


# -- replicas on PostgreSQL -----------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_replicas_see_each_others_changes_within_the_time_limits(tmp_path: Path, postgres_url: str) -> None:
    import base64
    import os

    key = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    env = {"CELLPLANE_MASTER_KEY": f"k1:{key}", "CELLPLANE_TOKEN_KEY": key}
    first = start_server(tmp_path / "a", postgres_url, env=env)
    second = start_server(tmp_path / "b", postgres_url, env=env)
    try:
        a, b = first.client(first.admin_token), second.client(first.admin_token)
        register(a, "local", bind=True)
        # a user's token, used (and kept) on both replicas, revoked through one of them
        user, token_id = new_user(a, first, "roaming")
        token = user.headers["Authorization"]
        on_b = second.client(token.removeprefix("Bearer "))
        assert user.get("/whoami").status_code == 200 and on_b.get("/whoami").status_code == 200
        assert a.delete(f"/tokens/{token_id}").status_code == 200
        assert user.get("/whoami").status_code == 401  # at once where it was revoked
        until(lambda: on_b.get("/whoami").status_code == 401, Authenticator.TTL + 2)

        # a desired state kept by one replica, changed through the other: a long-poll there answers soon
        before = desired(b).json()
        assert a.post("/apply", json={"documents": [doc("Environment", "qa", {"dataPlane": "local"},
                                                        organization="default")]}).status_code == 200
        started = time.monotonic()
        after = desired(b, since=before["revision"], wait=20).json()
        assert "qa" in [e["name"] for e in after["environments"]]
        assert time.monotonic() - started < 5
    finally:
        first.stop()
        second.stop()
