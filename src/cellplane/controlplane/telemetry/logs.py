"""Log storage: workload output (stdout, stderr, the data plane's system lines) and gateway access lines.

``LogStore`` is what the API uses; ``SqlLogStore`` keeps lines in the control plane's database. On SQLite a
search uses an FTS5 index with the trigram tokenizer (case-insensitive substring matching, served from the
index for three characters or more); on PostgreSQL it is an ILIKE over one component's lines, which the
per-component bound keeps small. Another backend (OpenSearch) implements the same protocol.

Lines are bounded twice: by count per component and environment (the oldest go first) and by age
(``expire``, called by the retention loop). The count is pruned back to its bound once a tenth of it was added
since the last prune (by this process), not on every batch: finding the bound's line is an index walk of
``bound`` entries, too dear for a batch of a few hundred lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from cellplane.contract.telemetry import AccessLine, LogLineReport
from cellplane.contract.wire import MAX_LOG_LINE
from cellplane.store import Store, rowcount
from cellplane.store.tables import AccessLogRow, WorkloadLogRow

MAX_LOG_LINES = 20_000  # workload lines per (organization, project, component, environment)
MAX_ACCESS_LINES = 20_000  # access lines per (organization, project, component, environment)
MAX_LINE = MAX_LOG_LINE  # characters; longer lines are cut (the contract's limit)

# lines added per (table, organization, project, component, environment) since this process last pruned it
_added: dict[tuple[str, str, str, str, str], int] = {}


@dataclass
class LogQuery:
    """Which lines: one component in one environment, narrowed by the optional filters.

    ``after``: lines after this id, oldest first (following); ``before``: the last ``limit`` lines before it
    (paging back); neither: the last ``limit`` lines.
    """

    organization: str
    project: str
    component: str
    environment: str
    after: int | None = None
    before: int | None = None
    limit: int = 1000
    since: datetime | None = None
    grep: str | None = None
    # workload lines only
    run: str | None = None
    replica: int | None = None
    stream: str | None = None
    # access lines only
    status: tuple[int, int] | None = None  # an inclusive range: (500, 599) for 5xx
    endpoint: str | None = None


@dataclass
class LogPage:
    items: list[dict[str, Any]]
    more: bool  # older matching lines exist before the first item (not answered when following)

    def view(self, after: int | None) -> dict[str, Any]:
        last = self.items[-1]["id"] if self.items else (after if after is not None else -1)
        return {"items": self.items, "next": last, "more": self.more}


class LogStore(Protocol):
    def append(self, organization: str, lines: Sequence[LogLineReport]) -> int: ...

    def append_access(self, organization: str, lines: Sequence[AccessLine]) -> int: ...

    def query(self, q: LogQuery) -> LogPage: ...

    def query_access(self, q: LogQuery) -> LogPage: ...


class SqlLogStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def append(self, organization: str, lines: Sequence[LogLineReport]) -> int:
        with self.store.transaction() as s:
            return add_lines(s, organization, lines)

    def append_access(self, organization: str, lines: Sequence[AccessLine]) -> int:
        with self.store.transaction() as s:
            return add_access(s, organization, lines)

    def query(self, q: LogQuery) -> LogPage:
        with self.store.transaction() as s:
            return page(s, WorkloadLogRow, q, line_view)

    def query_access(self, q: LogQuery) -> LogPage:
        with self.store.transaction() as s:
            return page(s, AccessLogRow, q, access_view)


# -- writing --------------------------------------------------------------------------------------------------------


def add_lines(s: Session, org: str, lines: Sequence[LogLineReport]) -> int:
    """Store validated lines (the contract's ``LogLineReport``), in order, then prune each component's log to its
    bound."""
    if not lines:
        return 0
    rows = [{"organization": org, "project": x.project, "component": x.component,
             "environment": x.environment, "deployment_id": x.deployment or "", "run_id": x.run,
             "replica": x.replica, "stream": x.stream, "at": x.at, "line": x.line[:MAX_LINE]}
            for x in lines]
    s.execute(insert(WorkloadLogRow), rows)
    _bound(s, WorkloadLogRow, org, rows, MAX_LOG_LINES)
    return len(rows)


def add_access(s: Session, org: str, lines: Sequence[AccessLine]) -> int:
    """Store validated access lines (the contract's ``AccessLine``; see docs/observability.md)."""
    if not lines:
        return 0
    rows = [{"organization": org, "project": x.project, "component": x.component,
             "environment": x.environment, "endpoint": x.endpoint, "at": x.at, "method": x.method,
             "path": x.path, "status": x.status, "duration_ms": x.durationMs, "bytes_sent": x.bytesSent,
             "decision": x.decision, "reason": x.reason, "consumer": x.consumer,
             "request_id": x.requestId, "trace_id": x.traceId, "listener": x.listener}
            for x in lines]
    s.execute(insert(AccessLogRow), rows)
    _bound(s, AccessLogRow, org, rows, MAX_ACCESS_LINES)
    return len(rows)


def _key(table: Any, org: str, project: str, component: str, environment: str) -> Any:
    return and_(table.organization == org, table.project == project, table.component == component,
                table.environment == environment)


def _bound(s: Session, table: Any, org: str, rows: list[dict[str, Any]], bound: int) -> None:
    """Prune each component's lines that got rows, once a tenth of ``bound`` arrived since its last prune (and
    on its first batch in this process)."""
    counts: dict[tuple[str, str, str], int] = {}
    for r in rows:
        key = (r["project"], r["component"], r["environment"])
        counts[key] = counts.get(key, 0) + 1
    for (project, component, environment), n in counts.items():
        pruned = (table.__tablename__, org, project, component, environment)
        added = _added.get(pruned)
        if added is None or added + n >= max(1, bound // 10):
            _prune(s, table, org, project, component, environment, bound)
            _added[pruned] = 0
        else:
            _added[pruned] = added + n


def _prune(s: Session, table: Any, org: str, project: str, component: str, environment: str, bound: int) -> None:
    key = _key(table, org, project, component, environment)
    threshold = s.scalar(select(table.id).where(key).order_by(table.id.desc()).offset(bound).limit(1))
    if threshold is not None:
        s.execute(delete(table).where(key, table.id <= threshold))


def expire(s: Session, before: datetime) -> int:
    """Delete workload and access lines written before ``before``; how many."""
    n = rowcount(s.execute(delete(WorkloadLogRow).where(WorkloadLogRow.at < before))) or 0
    return n + (rowcount(s.execute(delete(AccessLogRow).where(AccessLogRow.at < before))) or 0)


# -- reading --------------------------------------------------------------------------------------------------------


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _contains(s: Session, column: Any, text: str, search_index: bool) -> Any:
    """``column`` contains ``text``, ignoring case; through the FTS5 index where there is one."""
    if s.get_bind().dialect.name == "postgresql":
        return column.ilike(_like(text), escape="\\")
    if search_index and len(text) >= 3:
        phrase = '"' + text.replace('"', '""') + '"'
        return WorkloadLogRow.id.in_(
            select(sql("rowid")).select_from(sql("workload_logs_fts"))
            .where(sql("workload_logs_fts MATCH :phrase").bindparams(phrase=phrase)))
    return column.like(_like(text), escape="\\")  # SQLite's LIKE ignores ASCII case


def _filters(s: Session, table: Any, q: LogQuery) -> list[Any]:
    where = [_key(table, q.organization, q.project, q.component, q.environment)]
    if q.since is not None:
        where.append(table.at >= q.since)
    if table is WorkloadLogRow:
        if q.run is not None:
            where.append(WorkloadLogRow.run_id == q.run)
        if q.replica is not None:
            where.append(WorkloadLogRow.replica == q.replica)
        if q.stream is not None:
            where.append(WorkloadLogRow.stream == q.stream)
        if q.grep:  # reading on (following) scans only the new lines of one component: no index needed
            where.append(_contains(s, WorkloadLogRow.line, q.grep, q.after is None))
    else:
        if q.status is not None:
            where.append(AccessLogRow.status.between(*q.status))
        if q.endpoint is not None:
            where.append(AccessLogRow.endpoint == q.endpoint)
        if q.grep:
            where.append(or_(_contains(s, AccessLogRow.path, q.grep, False),
                             _contains(s, AccessLogRow.reason, q.grep, False)))
    return where


def page(s: Session, table: Any, q: LogQuery, view: Any) -> LogPage:
    where = _filters(s, table, q)
    if q.after is not None:
        rows = list(s.scalars(select(table).where(*where, table.id > q.after).order_by(table.id).limit(q.limit)))
        return LogPage([view(r) for r in rows], False)
    if q.before is not None:
        where.append(table.id < q.before)
    rows = list(s.scalars(select(table).where(*where).order_by(table.id.desc()).limit(q.limit + 1)))
    more = len(rows) > q.limit
    return LogPage([view(r) for r in reversed(rows[:q.limit])], more)


def line_view(row: WorkloadLogRow) -> dict[str, Any]:
    return {"id": row.id, "at": row.at.isoformat(), "replica": row.replica, "stream": row.stream, "line": row.line,
            "run": row.run_id}


def access_view(row: AccessLogRow) -> dict[str, Any]:
    return {"id": row.id, "at": row.at.isoformat(), "endpoint": row.endpoint, "method": row.method,
            "path": row.path, "status": row.status, "durationMs": row.duration_ms, "bytesSent": row.bytes_sent,
            "decision": row.decision, "reason": row.reason, "consumer": row.consumer, "requestId": row.request_id,
            "traceId": row.trace_id, "listener": row.listener}
