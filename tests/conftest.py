"""Shared fixtures: database URLs for the tests, SQLite and a real, throwaway PostgreSQL.

Keep this file small: fixtures for other areas belong in their own modules (registered as
plugins) so that unrelated changes don't collide here.

* ``postgres_server`` (session): one private PostgreSQL server for the whole run, see
  ``tests/pgserver.py``.  Started lazily, only when a test needs it.
* ``postgres_url`` (function): a fresh, empty database on that server.
* ``database_url`` (function, parametrized): the same test once on SQLite, once on PostgreSQL.
  ``-m "not postgres"`` runs the SQLite half only, without starting PostgreSQL.
* ``store`` (function): a migrated, empty store on that URL. The schema is migrated once per session and
  engine (``migrated_sqlite``, ``migrated_postgres_template``) and each test's database is a copy of it:
  running the migrations costs about half a second per database, a copy a few milliseconds. The
  migrations themselves are tested on empty databases (``database_url`` alone) in ``test_store.py``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellplane.store import Store
from pgserver import PostgresServer, find_postgres_bin

# Fixtures of other areas live in their own modules.
pytest_plugins = ["liveserver", "buildkit", "dataplanekit", "registrykit", "kubecluster", "kubeagentkit", "browserkit"]


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


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database file migrated to head, made once per session for ``store`` to copy.

    ``dispose()`` closes the last connection, which checkpoints the WAL into the file and removes it,
    so the one file holds the whole schema.
    """
    path = tmp_path_factory.mktemp("migrated-sqlite") / "cellplane.db"
    s = Store(f"sqlite:///{path}")
    s.migrate()
    s.dispose()
    return path


@pytest.fixture(scope="session")
def migrated_postgres_template(postgres_server: PostgresServer) -> str:
    """The name of a PostgreSQL database migrated to head, made once per session: ``store``'s databases
    are ``CREATE DATABASE ... TEMPLATE`` copies of it (a file copy on the server, no migrations run).

    Nothing stays connected to it (a template must have no sessions while it is copied).
    """
    name = "migrated_template"
    s = Store(postgres_server.create_database(name))
    s.migrate()
    s.dispose()
    return name


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLAlchemy URL of a database, once per backend: empty, or already migrated when the test takes
    ``store`` too (which would migrate it before the test body anyway).

    ``getfixturevalue`` (rather than depending on ``postgres_url`` directly) keeps the SQLite
    variant from starting, or needing, PostgreSQL at all.
    """
    migrated = "store" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "cellplane.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        return f"sqlite:///{path}"
    if not migrated:
        return str(request.getfixturevalue("postgres_url"))
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"test_{uuid.uuid4().hex[:16]}",
                                  template=request.getfixturevalue("migrated_postgres_template"))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated, empty store on each backend (``migrate()`` finds the copied schema at head: a no-op)."""
    s = Store(database_url)
    s.migrate()
    try:
        yield s
    finally:
        s.dispose()
