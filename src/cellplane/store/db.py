"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from cellplane.errors import InvalidError

MIGRATIONS = Path(__file__).parent / "migrations"
SUPPORTED = ("sqlite", "postgresql")
MIGRATION_LOCK = 0x63656C6C  # any constant shared by every replica ("cell")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'cellplane.db'}"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise InvalidError(f"database URL '{url}' is not valid: {e}") from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise InvalidError(f"database '{backend}' is not supported; use sqlite:///PATH or postgresql+psycopg://...")
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy, not pysqlite, open transactions, and take the write lock at BEGIN so that
        # concurrent writers queue on busy_timeout instead of failing on lock upgrade.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # Several processes opening a new database at once race to switch it to WAL; the loser gets "database is
    # locked" at once, without the busy handler: retry until the winner is done.
    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _alembic_config(connection) -> Config:  # type: ignore[no-untyped-def]
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade (or downgrade, for a revision behind the current one) the schema.

    Control-plane replicas sharing a PostgreSQL database may start together: an advisory lock held for
    the migration's transaction makes the others wait, then find the schema current. (SQLite's
    BEGIN IMMEDIATE serialises them already.)
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg = _alembic_config(conn)
        current = MigrationContext.configure(conn).get_current_revision()
        script = ScriptDirectory.from_config(cfg)
        if revision in ("head", "heads") or current is None:
            command.upgrade(cfg, revision)
            return
        ancestors = {rev.revision for rev in script.iterate_revisions(current, "base")}
        if revision == "base" or revision in ancestors:
            command.downgrade(cfg, revision)
        else:
            command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


class Store:
    """An engine and its session factory. Every unit of work is one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    def migrate(self, revision: str = "head") -> None:
        migrate(self.engine, revision)

    @contextmanager
    def transaction(self, dry_run: bool = False) -> Iterator[Session]:
        """A session whose work commits on success and rolls back entirely on any error (or a dry run)."""
        session = self._sessions()
        try:
            yield session
            if dry_run:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
