"""The store: SQLAlchemy 2 tables on SQLite (default) or PostgreSQL, migrated by Alembic."""

from cellplane.store.db import (
    Store,
    WriteNeeded,
    current_revision,
    head_revision,
    in_chunks,
    make_engine,
    migrate,
    rowcount,
    sqlite_url,
)

__all__ = ["Store", "WriteNeeded", "current_revision", "head_revision", "in_chunks", "make_engine", "migrate",
           "rowcount", "sqlite_url"]
