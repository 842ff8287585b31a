"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, CursorResult, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, sessionmaker

from cellplane.errors import InvalidError
from cellplane.store.changes import VOLATILE, Changes, Written, row_key
from cellplane.store.tables import Base

MIGRATIONS = Path(__file__).parent / "migrations"
SUPPORTED = ("sqlite", "postgresql")
MIGRATION_LOCK = 0x63656C6C  # any constant shared by every replica ("cell")
READ_ONLY = "cellplane_read_only"  # execution option of the engine behind read transactions
LOCK_WAIT = 30.0  # seconds a SQLite writer waits for this process's other writers (as busy_timeout)
T = TypeVar("T")


IN_CHUNK = 500  # values per IN (...) list: well under SQLite's default bound of 999 parameters per statement


def rowcount(result: object) -> int:
    """The rows an UPDATE or DELETE matched. ``Session.execute`` is typed to return a ``Result``; for those
    statements it is a ``CursorResult``, which counts them (no query: the driver's count)."""
    return cast(CursorResult[Any], result).rowcount


def in_chunks(values: Sequence[T], size: int = IN_CHUNK) -> list[Sequence[T]]:
    """``values`` in slices of at most ``size``, for one ``IN (...)`` query each."""
    return [values[i:i + size] for i in range(0, len(values), size)]


class WriteNeeded(RuntimeError):
    """A read transaction was about to write. ``Store.run`` runs the work again in a write transaction; elsewhere
    it is a bug: the work should have used ``Store.transaction``."""


def _json_dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # what orjson does not take (integers beyond 64 bits) the standard library may
        return json.dumps(value)


# JSON columns (specs, statuses, documents) are read on nearly every request: orjson decodes them in a fraction of
# the standard library's time.
JSON_CODEC: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


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
        # A pooled connection for every thread that may hold a transaction at once (the API's worker threads,
        # asyncio's default executor, build workers): beyond pool_size, connections are opened and closed per
        # checkout, each paying for its pragmas.
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=32,
                               max_overflow=32, **JSON_CODEC)
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy, not pysqlite, open transactions. A writer takes the write lock at BEGIN so that concurrent
        # writers queue on busy_timeout instead of failing on lock upgrade; a read transaction (``Store.read``)
        # begins deferred and, in WAL mode, reads a snapshot beside the writer without waiting for it.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20, **JSON_CODEC)


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
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


def _alembic_config(connection: Connection) -> Config:
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


def _cascades() -> dict[str, set[str]]:
    """Tables whose rows the database deletes with a row of another table (ON DELETE CASCADE): table -> them."""
    out: dict[str, set[str]] = {}
    for table in Base.metadata.tables.values():
        for fk in table.foreign_keys:
            if (fk.ondelete or "").upper() == "CASCADE":
                out.setdefault(fk.column.table.name, set()).add(table.name)
    return out


CASCADES = _cascades()


def _written(session: Session) -> Written | None:
    return session.info.get("written")


def _note_flush(session: Session, _flush: UOWTransaction) -> None:
    """After a flush (before its commit): the rows it added, changed or deleted."""
    written = _written(session)
    if written is None:
        return
    changed = [(obj, False) for obj in session.new]
    changed += [(obj, False) for obj in session.dirty if _modified(obj)]
    changed += [(obj, True) for obj in session.deleted]
    for obj, deleted in changed:
        table = getattr(obj, "__tablename__", None)
        if table is None:
            continue
        key = row_key(table, obj)
        if key is None:
            written.tables.add(table)
        else:
            written.rows.add((table, key))
        if deleted:
            written.tables.update(CASCADES.get(table, ()))


def _modified(obj: Any) -> bool:
    """Whether an updated object changed a column that is not ``VOLATILE``."""
    volatile = VOLATILE.get(getattr(obj, "__tablename__", ""), frozenset())
    state = inspect(obj)
    return any(attr.history.has_changes() for attr in state.attrs if attr.key not in volatile)


def _refuse_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    if session.info.get("read_only") and (session.new or session.dirty or session.deleted):
        raise WriteNeeded("a read transaction cannot store changes")


def _note_statement(state: ORMExecuteState) -> None:
    """An INSERT, UPDATE or DELETE statement (not the ORM's flush): its table, as a whole."""
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    if state.session.info.get("read_only"):
        raise WriteNeeded("a read transaction cannot run an INSERT, UPDATE or DELETE")
    written = _written(state.session)
    if written is not None:
        statement: Any = state.statement
        table = statement.table.name
        volatile = VOLATILE.get(table)
        if state.is_update and volatile:
            # the columns its SET names (none known, e.g. an UPDATE from a list of parameters: a change)
            keys = {getattr(c, "key", c) for c in getattr(statement, "_values", None) or ()}
            if keys and keys <= volatile:
                return
        written.tables.add(table)
        written.tables.update(CASCADES.get(table, ()))


class Store:
    """An engine and its session factories. Every unit of work is one transaction: a write transaction
    (``transaction``), or a read transaction (``read``) that stores nothing and, on SQLite, waits for no writer.

    On SQLite this process's writers queue on a lock of their own before ``BEGIN IMMEDIATE``: a writer waiting
    in SQLite's busy handler polls with sleeps of up to 100 ms, so queueing there leaves the lock idle between
    writers. (Other processes' writers are still waited for by busy_timeout.)
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.changes = Changes()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        for factory in (self._sessions, self._readers):
            event.listen(factory, "before_flush", _refuse_flush)
            event.listen(factory, "after_flush", _note_flush)
            event.listen(factory, "do_orm_execute", _note_statement)
        self._write_lock = threading.RLock() if self.backend == "sqlite" else None

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    def migrate(self, revision: str = "head") -> None:
        migrate(self.engine, revision)

    @contextmanager
    def transaction(self, dry_run: bool = False) -> Iterator[Session]:
        """A session whose work commits on success and rolls back entirely on any error (or a dry run)."""
        locked = self._write_lock is not None and self._write_lock.acquire(timeout=LOCK_WAIT)
        try:
            written = Written()
            session = self._sessions(info={"written": written})
            try:
                yield session
                if dry_run:
                    session.rollback()
                else:
                    session.commit()
                    self.changes.committed(written)
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        finally:
            if locked:
                self._write_lock.release()  # type: ignore[union-attr]

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session that only reads: anything it would store raises ``WriteNeeded``. On SQLite it begins deferred
        and reads a consistent snapshot while writers go on."""
        session = self._readers(info={"read_only": True})
        try:
            yield session
        finally:
            session.close()  # ends the transaction (the pool rolls its connection back); objects keep their values

    def run(self, work: Callable[[Session], T]) -> T:
        """``work`` in a read transaction, or, when it turns out to need writing, again in a write transaction."""
        try:
            with self.read() as s:
                return work(s)
        except WriteNeeded:
            pass
        with self.transaction() as s:
            return work(s)

    def dispose(self) -> None:
        self.engine.dispose()
