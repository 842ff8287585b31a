"""Shared fixtures: database URLs for the tests, SQLite and a real, throwaway PostgreSQL.

Keep this file small: fixtures for other areas belong in their own modules (registered as
plugins) so that unrelated changes don't collide here.

* ``postgres_server`` (session): one private PostgreSQL server for the whole run, see
  ``tests/pgserver.py``.  Started lazily, only when a test needs it.
* ``postgres_url`` (function): a fresh, empty database on that server.
* ``database_url`` (function, parametrized): the same test once on SQLite, once on PostgreSQL.
  ``-m "not postgres"`` runs the SQLite half only, without starting PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellplane.store import Store
from pgserver import PostgresServer, find_postgres_bin

# Fixtures of other areas live in their own modules.
pytest_plugins = ["liveserver", "buildkit", "dataplanekit"]


def _in_ci() -> bool:
    """CI sets ``CI=true``; treat empty/``0``/``false`` as "not CI" for local overrides."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server shared by the whole test session.

    Missing binaries skip the PostgreSQL tests on a developer machine, but fail them in CI:
    there ``make test`` installs PostgreSQL first, so absence means the setup is broken, and
    a silently skipped half of the suite must not look like a green run.
    """
    if find_postgres_bin() is None:
        message = (
            "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and on PATH); "
            "run `make postgres` to install them"
        )
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of a new, empty database, unique to this test.

    Databases are not dropped afterwards: the whole cluster is deleted when the session ends,
    and CREATE DATABASE (a copy of template1) is cheap enough per test.
    """
    return postgres_server.create_database(f"test_{uuid.uuid4().hex[:16]}")


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLAlchemy URL of an empty database, once per backend.

    ``getfixturevalue`` (rather than depending on ``postgres_url`` directly) keeps the SQLite
    variant from starting, or needing, PostgreSQL at all.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cellplane.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    s = Store(database_url)
    s.migrate()
    try:
        yield s
    finally:
        s.dispose()
