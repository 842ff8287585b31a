"""Time series of gateway requests (RED: rate, errors, duration), replica resources and scaling, as windows.

A data plane sends one point per series and window (``resolution`` 0): an endpoint's requests by consumer,
with a latency histogram, one replica's CPU, memory and restarts, or an autoscaled deployment's replicas (running
and wanted at the window's end) and the cold starts that ended in it (a count and their summed seconds: the
slowest cold start of a range is the highest mean of a window, all a point carries). Queries sum the points whose window
starts in a range; percentiles come from the summed histogram (interpolated inside a bucket, as Prometheus'
``histogram_quantile`` does). Downsampling merges points older than a day into five-minute points.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from cellplane.contract.requestmetrics import BUCKETS
from cellplane.contract.telemetry import MetricPoint
from cellplane.store import rowcount
from cellplane.store.tables import MetricPointRow, TaskRunRow

NBUCKETS = len(BUCKETS) + 1  # the last one is +Inf
ROLLUP = 300  # seconds per downsampled point
MAX_WINDOW = 600  # seconds: the longest window a data plane sends (its --metrics-interval) that ranges account for
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class ColdStarts:
    """Cold starts of a range, from scaling points: how many, their summed seconds, and the highest mean of one
    window (a point carries a count and a sum, not each wake-up)."""

    count: int = 0
    seconds: float = 0.0
    max_mean: float | None = None

    def add(self, row: MetricPointRow) -> None:
        n = row.cold_starts or 0
        if n:
            self.count += n
            self.seconds += row.cold_start_seconds or 0.0
            mean = (row.cold_start_seconds or 0.0) / n
            self.max_mean = mean if self.max_mean is None else max(self.max_mean, mean)

    def view(self) -> dict[str, Any]:
        return {"coldStarts": self.count,
                "coldStartMeanSeconds": round(self.seconds / self.count, 4) if self.count else None,
                "coldStartMaxSeconds": round(self.max_mean, 4) if self.max_mean is not None else None}


@dataclass
class Totals:
    """Requests of a range, summed."""

    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    duration_sum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * NBUCKETS)

    def add(self, row: MetricPointRow) -> None:
        self.requests += row.requests
        self.errors += row.errors
        self.client_errors += row.client_errors
        self.duration_sum += row.duration_sum
        for i, n in enumerate((row.buckets or [])[:NBUCKETS]):
            self.buckets[i] += n

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def quantile_ms(self, q: float) -> float | None:
        """The q-quantile of request durations in milliseconds (None without requests)."""
        total = sum(self.buckets)
        if not total:
            return None
        rank = q * total
        seen = 0
        for i, n in enumerate(self.buckets):
            if seen + n >= rank and n:
                if i >= len(BUCKETS):  # beyond the last bound: say the last bound
                    return BUCKETS[-1] * 1000
                low = BUCKETS[i - 1] if i else 0.0
                return round((low + (BUCKETS[i] - low) * (rank - seen) / n) * 1000, 3)
            seen += n
        return BUCKETS[-1] * 1000

    def view(self, seconds: float) -> dict[str, Any]:
        rate = self.error_rate
        return {"requests": self.requests, "errors": self.errors,
                "errorRate": round(rate, 6) if rate is not None else None,
                "rps": round(self.requests / seconds, 4) if seconds > 0 else 0.0,
                "p50Ms": self.quantile_ms(0.5), "p95Ms": self.quantile_ms(0.95), "p99Ms": self.quantile_ms(0.99)}


# -- writing --------------------------------------------------------------------------------------------------------


def ingest(s: Session, org: str, points: Sequence[MetricPoint]) -> int:
    """Store validated points (the contract's ``MetricPoint``, see docs/observability.md)."""
    rows = []
    for p in points:
        row: dict[str, Any] = {"organization": org, "project": p.project, "component": p.component,
                               "environment": p.environment, "kind": p.kind, "resolution": 0,
                               "at": p.at, "seconds": p.seconds, "endpoint": "", "consumer": "",
                               "replica": None, "release": "", "requests": 0, "errors": 0, "client_errors": 0,
                               "duration_sum": 0.0, "buckets": None, "cpu": None, "memory": None, "restarts": 0,
                               "replicas": None, "desired_replicas": None, "cold_starts": None,
                               "cold_start_seconds": None}
        if p.kind == "http":
            row.update(endpoint=p.endpoint, consumer=p.consumer or "", requests=p.requests,
                       errors=p.errors, client_errors=p.clientErrors, duration_sum=p.durationSum,
                       buckets=list(p.buckets or ()))
        elif p.kind == "scaling":
            row.update(replicas=p.replicas, desired_replicas=p.desiredReplicas, cold_starts=p.coldStarts,
                       cold_start_seconds=p.coldStartSeconds)
        else:
            row.update(replica=p.replica, release=p.release or "", cpu=p.cpu, memory=p.memory,
                       restarts=p.restarts)
        rows.append(row)
    if rows:
        s.execute(insert(MetricPointRow), rows)
    return len(rows)


# -- reading --------------------------------------------------------------------------------------------------------


def points(s: Session, org: str, project: str, component: str, environment: str, start: datetime,
           end: datetime, kind: str | None = None, by_end: bool = False) -> list[MetricPointRow]:
    """Points whose window started in [start, end); ``by_end``: whose window ended in (start, end] (what a
    trailing window ending now must use: a window is sent only once it has ended)."""
    low = start - timedelta(seconds=MAX_WINDOW) if by_end else start
    q = select(MetricPointRow).where(
        MetricPointRow.organization == org, MetricPointRow.project == project,
        MetricPointRow.component == component, MetricPointRow.environment == environment,
        MetricPointRow.at >= low, MetricPointRow.at < end)
    if kind is not None:
        q = q.where(MetricPointRow.kind == kind)
    rows = list(s.scalars(q.order_by(MetricPointRow.at, MetricPointRow.id)))
    if by_end:
        rows = [r for r in rows if start < r.at + timedelta(seconds=r.seconds) <= end]
    return rows


def totals(s: Session, org: str, project: str, component: str, environment: str, start: datetime,
           end: datetime, by_end: bool = False) -> Totals:
    """The component's requests in the range (see ``points``), over all endpoints and consumers."""
    out = Totals()
    for row in points(s, org, project, component, environment, start, end, "http", by_end):
        out.add(row)
    return out


def restarts(s: Session, org: str, project: str, component: str, environment: str, start: datetime,
             end: datetime, by_end: bool = False) -> int:
    """Replica restarts in the range (see ``points``)."""
    return sum(r.restarts for r in points(s, org, project, component, environment, start, end, "replica", by_end))


def task_runs(s: Session, org: str, project: str, component: str, environment: str, start: datetime,
              end: datetime) -> dict[str, int]:
    """Task runs that ended in [start, end), by outcome."""
    rows = s.execute(select(TaskRunRow.state, func.count()).where(
        TaskRunRow.organization == org, TaskRunRow.project == project, TaskRunRow.component == component,
        TaskRunRow.environment == environment, TaskRunRow.ended_at >= start, TaskRunRow.ended_at < end,
        TaskRunRow.state.in_(("succeeded", "failed"))).group_by(TaskRunRow.state)).all()
    out = {"succeeded": 0, "failed": 0}
    for state, n in rows:
        out[state] = int(n)
    return out


def edges(s: Session, org: str, project: str, environment: str, start: datetime,
          end: datetime) -> dict[tuple[str, str, str], Totals]:
    """Requests into the project's components in the range by (component, endpoint, consumer)."""
    out: dict[tuple[str, str, str], Totals] = defaultdict(Totals)
    rows = s.scalars(select(MetricPointRow).where(
        MetricPointRow.organization == org, MetricPointRow.project == project,
        MetricPointRow.environment == environment, MetricPointRow.kind == "http",
        MetricPointRow.at >= start, MetricPointRow.at < end))
    for row in rows:
        out[(row.component, row.endpoint, row.consumer)].add(row)
    return out


def consumed(s: Session, org: str, consumers: Iterable[str], environment: str, start: datetime,
             end: datetime) -> dict[tuple[str, str, str, str], Totals]:
    """Requests made by ``consumers`` ("project/component") in the range, by (consumer, target project,
    component, endpoint)."""
    names = list(consumers)
    out: dict[tuple[str, str, str, str], Totals] = defaultdict(Totals)
    if not names:
        return out
    rows = s.scalars(select(MetricPointRow).where(
        MetricPointRow.organization == org, MetricPointRow.environment == environment,
        MetricPointRow.kind == "http", MetricPointRow.consumer.in_(names),
        MetricPointRow.at >= start, MetricPointRow.at < end))
    for row in rows:
        out[(row.consumer, row.project, row.component, row.endpoint)].add(row)
    return out


def step_for(seconds: float) -> int:
    """A step that gives at most 60 points over ``seconds``: a round number of seconds."""
    for step in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800,
                 345600, 604800):
        if seconds / step <= 60:
            return step
    return 604800


def component_view(s: Session, org: str, project: str, component: str, environment: str, start: datetime,
                   end: datetime, step: int | None = None) -> dict[str, Any]:
    """Everything ``GET .../metrics`` answers except the deployment: summary, endpoints, replicas, series."""
    length = max((end - start).total_seconds(), 1.0)
    step = step or step_for(length)
    first = _floor(start, step)
    nsteps = max(1, math.ceil((end - first).total_seconds() / step))
    rows = points(s, org, project, component, environment, start, end)
    summary, by_endpoint = Totals(), defaultdict[str, Totals](Totals)
    steps = [Totals() for _ in range(nsteps)]
    # replicas are told apart by (release, index): during a rollout, two releases run an index 0
    step_cpu: list[dict[tuple[str, int], list[float]]] = [defaultdict(list) for _ in range(nsteps)]
    step_memory: list[dict[tuple[str, int], int]] = [{} for _ in range(nsteps)]
    step_restarts = [0] * nsteps
    latest: dict[tuple[str, int], MetricPointRow] = {}
    replica_restarts: dict[int, int] = defaultdict(int)
    step_scaling: list[MetricPointRow | None] = [None] * nsteps  # the step's last scaling point
    step_cold = [ColdStarts() for _ in range(nsteps)]
    cold, scaled = ColdStarts(), None
    for row in rows:
        i = min(nsteps - 1, int((row.at - first).total_seconds() // step))
        if row.kind == "http":
            summary.add(row)
            by_endpoint[row.endpoint].add(row)
            steps[i].add(row)
        elif row.kind == "scaling":
            step_scaling[i] = scaled = row
            step_cold[i].add(row)
            cold.add(row)
        else:
            index = row.replica or 0
            key = (row.release, index)
            latest[key] = row
            replica_restarts[index] += row.restarts
            step_restarts[i] += row.restarts
            if row.cpu is not None:
                step_cpu[i][key].append(row.cpu)
            if row.memory is not None:
                step_memory[i][key] = row.memory
    series = []
    for i in range(nsteps):
        cpu = step_cpu[i]
        view = steps[i].view(step)
        series.append({"at": (first + timedelta(seconds=i * step)).isoformat(), **view,
                       "cpuPercent": round(sum(sum(v) / len(v) for v in cpu.values()), 2) if cpu else None,
                       "memoryBytes": sum(step_memory[i].values()) if step_memory[i] else None,
                       "restarts": step_restarts[i],
                       **({"replicas": point.replicas, "desiredReplicas": point.desired_replicas,
                           "coldStarts": step_cold[i].count} if (point := step_scaling[i]) is not None else {})})
    # The latest state counts only replicas reported in the last window (those stopped earlier are gone).
    newest = max((r.at for r in latest.values()), default=None)
    current = {i: r for i, r in latest.items()
               if newest is not None and r.at >= newest - timedelta(seconds=r.seconds * 2)}
    runs = task_runs(s, org, project, component, environment, start, end)
    return {
        "since": start.isoformat(), "until": end.isoformat(), "step": step,
        "summary": {**summary.view(length),
                    "cpuPercent": round(sum(r.cpu or 0.0 for r in current.values()), 2) if current else None,
                    "memoryBytes": sum(r.memory or 0 for r in current.values()) if current else None,
                    "restarts": sum(replica_restarts.values()), "taskRuns": runs},
        "endpoints": [{"endpoint": name, **t.view(length)} for name, t in sorted(by_endpoint.items())],
        "replicas": [{"replica": index, "release": release or None, "cpuPercent": r.cpu, "memoryBytes": r.memory,
                      "restarts": replica_restarts[index]} for (release, index), r in sorted(current.items())],
        "series": series,
        "scaling": {"replicas": scaled.replicas, "desiredReplicas": scaled.desired_replicas, **cold.view()}
        if scaled is not None else None,
    }


def _floor(at: datetime, step: int) -> datetime:
    offset = (at - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=offset - offset % step)


# -- downsampling and retention -------------------------------------------------------------------------------------


def downsample(s: Session, before: datetime, limit: int = 20000) -> int:
    """Merge raw points whose window started before ``before`` (floored to a rollup) into five-minute points;
    returns how many raw points were merged. Called repeatedly until it returns less than ``limit``."""
    cutoff = _floor(before, ROLLUP)
    # Two control-plane replicas on PostgreSQL merge disjoint rows (SKIP LOCKED); SQLite has one writer anyway.
    rows = list(s.scalars(select(MetricPointRow).where(MetricPointRow.resolution == 0, MetricPointRow.at < cutoff)
                          .order_by(MetricPointRow.id).limit(limit).with_for_update(skip_locked=True)))
    if not rows:
        return 0
    groups: dict[tuple[Any, ...], list[MetricPointRow]] = defaultdict(list)
    for row in rows:
        key = (row.organization, row.project, row.component, row.environment, row.kind, row.endpoint,
               row.consumer, row.replica, row.release, _floor(row.at, ROLLUP))
        groups[key].append(row)
    merged = []
    for key, group in groups.items():
        org, project, component, environment, kind, endpoint, consumer, replica, release, at = key
        out: dict[str, Any] = {"organization": org, "project": project, "component": component,
                               "environment": environment, "kind": kind, "endpoint": endpoint, "consumer": consumer,
                               "replica": replica, "release": release, "resolution": ROLLUP, "at": at,
                               "seconds": float(ROLLUP), "restarts": sum(r.restarts for r in group)}
        out.update(replicas=None, desired_replicas=None, cold_starts=None, cold_start_seconds=None)
        if kind == "http":
            t = Totals()
            for r in group:
                t.add(r)
            out.update(requests=t.requests, errors=t.errors, client_errors=t.client_errors,
                       duration_sum=t.duration_sum, buckets=t.buckets, cpu=None, memory=None)
        elif kind == "scaling":  # the replicas at the rollup's end; its cold starts summed
            last = max(group, key=lambda r: (r.at, r.id))
            out.update(requests=0, errors=0, client_errors=0, duration_sum=0.0, buckets=None, cpu=None, memory=None,
                       replicas=last.replicas, desired_replicas=last.desired_replicas,
                       cold_starts=sum(r.cold_starts or 0 for r in group),
                       cold_start_seconds=sum(r.cold_start_seconds or 0.0 for r in group))
        else:
            weights = sum(r.seconds for r in group if r.cpu is not None)
            cpu = sum((r.cpu or 0.0) * r.seconds for r in group) / weights if weights else None
            memory = max((r.memory for r in group if r.memory is not None), default=None)
            out.update(requests=0, errors=0, client_errors=0, duration_sum=0.0, buckets=None, cpu=cpu,
                       memory=memory)
        merged.append(out)
    s.execute(insert(MetricPointRow), merged)
    gone = rowcount(s.execute(delete(MetricPointRow).where(MetricPointRow.id.in_([r.id for r in rows]))))
    if gone != len(rows):  # merged by someone else meanwhile: counting them twice is worse than waiting
        raise RuntimeError(f"downsampling raced: {len(rows) - gone} points were merged elsewhere; rolled back")
    return len(rows)


def expire(s: Session, before: datetime) -> int:
    """Delete points (of any resolution) whose window started before ``before``."""
    return rowcount(s.execute(delete(MetricPointRow).where(MetricPointRow.at < before))) or 0
