"""What this process committed, for in-memory caches to know when they are stale.

Every transaction of a ``Store`` notes what it writes: the tables its statements change and, for rows of the
tables in ``KEYED`` changed through the ORM (added, modified or deleted objects), which rows. After the commit
(never before: a reader that saw the new counter must also see the new data) ``Changes.committed`` gives
the transaction a sequence number. A cache remembers the sequence number it read *before* it read the
database, and asks ``since`` whether anything it depends on was written since.

Only this process's writes are seen here: another control-plane replica on the same PostgreSQL database
writes unseen, so caches also expire after a short time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# Rows of these tables are told apart by a key (see ``row_key``); writes to other tables count for the table.
KEYED = {"resources": ("kind", "organization", "project", "name")}
# Columns no cache is computed from: a row update (or UPDATE statement) that sets only these is no change. A
# deployment's observed status, which its data plane reports every few seconds, is shown but never kept.
VOLATILE = {"deployments": frozenset({"status", "observed_at"})}
HISTORY = 20_000  # keyed row changes kept; a cache older than that is stale


def row_key(table: str, obj: Any) -> tuple[Any, ...] | None:
    columns = KEYED.get(table)
    return None if columns is None else tuple(getattr(obj, c) for c in columns)


@dataclass
class Written:
    """What one transaction wrote so far: tables written as a whole, and keyed rows."""

    tables: set[str] = field(default_factory=set)
    rows: set[tuple[str, tuple[Any, ...]]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.tables or self.rows)


class Changes:
    """Sequence numbers of committed writes: per table, and a bounded history of keyed rows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seq = 0
        self._tables: dict[str, int] = {}
        self._rows: deque[tuple[int, str, tuple[Any, ...]]] = deque()
        self._floor = 0  # history before this sequence number was dropped

    def committed(self, written: Written) -> None:
        if not written:
            return
        with self._lock:
            self.seq += 1
            for table in written.tables:
                self._tables[table] = self.seq
            for table, key in written.rows:
                self._tables.setdefault(table, 0)
                self._rows.append((self.seq, table, key))
            while len(self._rows) > HISTORY:
                self._floor = self._rows.popleft()[0]

    def since(self, seq: int, tables: Iterable[str],
              rows: Callable[[str, tuple[Any, ...]], bool] | None = None) -> bool:
        """Whether a commit after ``seq`` wrote one of ``tables`` as a whole, or a keyed row for which ``rows``
        (table, key) is true (without ``rows``: any row of a keyed table among ``tables``)."""
        tables = tuple(tables)
        if rows is None:
            keyed = {t for t in tables if t in KEYED}
            if not keyed:
                return any(self._tables.get(t, 0) > seq for t in tables)
            rows = lambda table, _key: table in keyed  # noqa: E731
        with self._lock:
            if any(self._tables.get(t, 0) > seq for t in tables):
                return True
            if seq < self._floor:
                return True
            for at, table, key in reversed(self._rows):
                if at <= seq:
                    break
                if rows(table, key):
                    return True
        return False
