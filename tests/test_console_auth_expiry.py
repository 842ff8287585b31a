"""Console sessions end: after the idle time of the settings (a tiny one here), at their absolute expiry, at once
when their user is disabled, and when the password changes. A real control plane; the database is changed only
where no API exists (the operator's hand: disabling a user, moving a session's expiry into the past)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from consolekit import ConsoleClient, ConsoleUser, make_user, session_client, sign_in_form
from liveserver import LiveServer, start_server

IDLE = 1.0


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("cp-idle") / "data",
                          env={"CELLPLANE_CONSOLE_IDLE_SECONDS": str(IDLE)})
    try:
        yield server
    finally:
        server.stop()


def _db(server: LiveServer) -> sqlite3.Connection:
    return sqlite3.connect(server.data_dir / "cellplane.db", timeout=10)


def _sessions_of(server: LiveServer, user: str) -> int:
    with _db(server) as db:
        return db.execute("SELECT count(*) FROM sessions JOIN users ON users.id = sessions.user_id "
                          "WHERE users.name = ?", (user,)).fetchone()[0]


def test_a_session_unused_for_the_idle_time_ends(live_server: LiveServer) -> None:
    user = make_user(live_server, "idle-ida", role="viewer")
    client = session_client(live_server, user)  # its last request was a moment ago
    time.sleep(IDLE * 1.5)
    r = client.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in?next=/console/"
    assert _sessions_of(live_server, user.name) == 0  # the expired row is gone


def _move_expiry(server: LiveServer, user: ConsoleUser) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLAlchemy stores it
    with _db(server) as db:
        db.execute("UPDATE sessions SET expires_at = ? WHERE user_id = (SELECT id FROM users WHERE name = ?)",
                   (past, user.name))


def test_a_session_past_its_absolute_expiry_ends_even_while_used(live_server: LiveServer) -> None:
    user = make_user(live_server, "abs-abe", role="viewer")
    client = session_client(live_server, user)
    assert client.get("/console/").status_code == 200
    _move_expiry(live_server, user)
    assert client.get("/console/").status_code == 303


def test_a_disabled_users_session_is_refused_at_once(live_server: LiveServer) -> None:
    user = make_user(live_server, "gone-gus", role="viewer")
    client = session_client(live_server, user)
    assert client.get("/console/").status_code == 200
    with _db(live_server) as db:
        db.execute("UPDATE users SET disabled = 1 WHERE name = ?", (user.name,))
    assert client.get("/console/").status_code == 303
    # and no new session either: the form answers as for a wrong password
    fresh = ConsoleClient(base_url=live_server.url, follow_redirects=False)
    csrf = sign_in_form(fresh)
    r = fresh.post("/console/sign-in", data={"csrf": csrf, "username": user.name, "password": user.password})
    assert r.status_code == 401 and "not right" in r.text


def test_a_new_password_ends_the_users_sessions(live_server: LiveServer) -> None:
    user = make_user(live_server, "reset-rita", role="viewer")
    client = session_client(live_server, user)
    r = live_server.client().put(f"/users/{user.name}/password", json={"password": "a-brand-new-password"})
    assert r.status_code == 200
    assert client.get("/console/").status_code == 303
    assert _sessions_of(live_server, user.name) == 0


def test_the_retention_pass_removes_sessions_past_their_expiry_and_keeps_live_ones(tmp_path: Path) -> None:
    from cellplane.console import sessions
    from cellplane.controlplane.platform import Platform
    from cellplane.controlplane.telemetry.loop import TelemetrySettings, enforce_retention
    from cellplane.store.tables import SessionRow, UserRow

    p = Platform(tmp_path / "data")
    try:
        with p.store.read() as s:
            admin = s.scalar(select(UserRow).where(UserRow.name == "admin"))
            assert admin is not None
            admin_id = admin.id
        gone = sessions.start(p.store, p.token_key, admin_id, sessions.SessionSettings(absolute=-1))
        live = sessions.start(p.store, p.token_key, admin_id, sessions.SessionSettings())
        assert enforce_retention(p, TelemetrySettings())["sessions"] == 1
        with p.store.read() as s:
            assert s.get(SessionRow, sessions.digest(p.token_key, gone)) is None
            assert s.get(SessionRow, sessions.digest(p.token_key, live)) is not None
        assert enforce_retention(p, TelemetrySettings())["sessions"] == 0
    finally:
        p.close()
