"""The agent's telemetry (docs/observability.md): what it ships to the control plane besides logs,
and what it shows to a Prometheus scraper.

- access lines: the gateway's access-log entries of routed requests, as the contract's ``AccessLineSent``;
- metrics points (the contract's ``MetricPointSent``): every window, the gateway's counters since the previous
  window (``http`` points) and each service replica's CPU, memory and restarts (``replica`` points), measured here
  with psutil;
- a Prometheus text endpoint: the gateway's counters, the replicas' gauges and the agent's own counters.

psutil is only ever asked to read: the replicas' processes belong to the supervisor (and their exit statuses to
asyncio's child watcher), so nothing here waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil

from cellplane.contract import AccessLineSent, MetricPointSent
from cellplane.dataplane.replicaid import ReplicaId
from cellplane.dataplane.supervisor import Replica
from cellplane.errors import CellplaneError
from cellplane.gateway.metrics import Labels, Window, escape_label
from cellplane.gateway.tracing import TokenBucket

__all__ = ["MetricsEndpoint", "ProcessSampler", "ReplicaSample", "ReplicaTelemetry", "TokenBucket", "access_line",
           "counter", "http_points", "iso"]

log = logging.getLogger("cellplane.dataplane")

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MAX_METHOD, MAX_PATH, MAX_REASON, MAX_REQUEST_ID, MAX_LISTENER = 16, 2048, 1024, 100, 100


def iso(ts: float) -> str:
    """A Unix time as ISO 8601 in UTC, with microseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def _seconds(seconds: float) -> float:
    """A window's length as sent: milliseconds, and never zero (the control plane wants a length)."""
    return max(round(seconds, 3), 0.001)


def _cut(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[:limit]


# -- access lines and http points -------------------------------------------------------------------------------

def access_line(entry: dict[str, Any]) -> AccessLineSent:
    """The contract's access line for one gateway access-log entry of a routed request (about 10 µs: the model is
    validated; ``LocalRuntime`` spends it off the request path)."""
    return AccessLineSent(
        environment=entry["environment"], project=entry["project"], component=entry["component"],
        endpoint=entry["endpoint"], at=iso(entry["ts"]), method=entry["method"][:MAX_METHOD],
        path=entry["path"][:MAX_PATH], status=entry["status"], durationMs=entry["duration_ms"],
        bytesSent=entry["bytes_sent"], decision=entry["decision"], reason=_cut(entry["reason"], MAX_REASON),
        consumer=entry["consumer"], requestId=_cut(entry["request_id"], MAX_REQUEST_ID),
        traceId=entry.get("trace_id"), listener=entry["listener"][:MAX_LISTENER])


def http_points(windows: dict[Labels, Window], at: str, seconds: float) -> list[MetricPointSent]:
    """One ``http`` point per routed series that had requests in the window (``Metrics.delta``)."""
    points = []
    for (environment, project, component, endpoint, consumer), w in windows.items():
        if not component or w.requests <= 0:
            continue  # unrouted requests are counted under empty labels: no component to show them in
        points.append(MetricPointSent(
            kind="http", environment=environment, project=project, component=component, endpoint=endpoint,
            consumer=consumer, at=at, seconds=_seconds(seconds), requests=w.requests, errors=w.errors,
            clientErrors=w.client_errors, durationSum=w.duration_sum, buckets=list(w.buckets)))
    return points


# -- replicas ---------------------------------------------------------------------------------------------------

@dataclass
class _Tree:
    """What the sampler remembers of one replica's process tree between two samples."""

    pid: int
    root: psutil.Process
    at: float | None = None  # time.monotonic() of the last sample; None before the first
    cpu: dict[int, tuple[psutil.Process, float]] = field(default_factory=dict)  # pid -> process, its CPU seconds


class ProcessSampler:
    """CPU and RSS of process trees (a process and its descendants), each under a key of the caller's.

    CPU is the share of one core (percent) the tree used since the previous sample of the key; the first sample
    of a tree covers its life so far. Processes are kept between samples (and told apart from a later process
    with the same pid by their start time), so each one's CPU is counted from where the last sample left it; a
    process new to the tree was born in between and counts from zero. (Not from its start time: psutil's is
    based on a boot time in whole seconds, too coarse to tell.) RSS is summed over the tree, as it is at the
    sample.
    """

    def __init__(self) -> None:
        self._trees: dict[str, _Tree] = {}

    def sample(self, key: str, pid: int) -> tuple[float, int] | None:
        """(CPU percent, RSS bytes) of the tree rooted at ``pid``; None when that process is gone."""
        now = time.monotonic()
        tree = self._trees.get(key)
        if tree is None or tree.pid != pid:
            try:
                tree = self._trees[key] = _Tree(pid, psutil.Process(pid))
            except psutil.Error:
                self._trees.pop(key, None)
                return None
        root = tree.root
        try:
            if not root.is_running():
                raise psutil.NoSuchProcess(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            del self._trees[key]
            return None
        used, rss = 0.0, 0
        seen: dict[int, tuple[psutil.Process, float]] = {}
        for proc in procs:
            known = tree.cpu.get(proc.pid)
            if known is not None and known[0] != proc:  # the pid of a process that is gone, taken again
                known = None
            if known is not None:
                proc = known[0]
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    memory = proc.memory_info().rss
            except psutil.Error:  # gone meanwhile (or a zombie)
                continue
            total = times.user + times.system
            used += max(0.0, total - known[1]) if known is not None else total
            seen[proc.pid] = (proc, total)
            rss += memory
        elapsed = _age(root) if tree.at is None else now - tree.at
        tree.cpu, tree.at = seen, now
        return (100.0 * used / elapsed if elapsed > 0.01 else 0.0), rss

    def forget(self, keep: Collection[str]) -> None:
        """Drop the trees of keys not in ``keep`` (replicas that are gone)."""
        for key in [k for k in self._trees if k not in keep]:
            del self._trees[key]


def _age(proc: psutil.Process) -> float:
    """Seconds since the process started: from its start in clock ticks since boot (/proc) where there is one,
    else from psutil's create_time (up to a second off)."""
    try:
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / _CLOCK_TICKS  # field 22: starttime
    except (OSError, IndexError, ValueError, AttributeError):
        with contextlib.suppress(psutil.Error):
            return time.time() - proc.create_time()
    return 0.0


@dataclass
class ReplicaSample:
    """One service replica over one window."""

    key: str  # the supervisor's key (``ReplicaId.key``)
    identity: ReplicaId
    pid: int | None
    state: str
    restarts: int  # during the window
    cpu: float = 0.0  # percent of one core, averaged over the window (process tree)
    memory: int = 0  # RSS bytes of the process tree at the window's end

    @property
    def labels(self) -> tuple[str, str, str, str, str]:
        """(environment, project, component, release, index)."""
        i = self.identity
        return i.environment, i.project, i.component, i.release, str(i.index)


class ReplicaTelemetry:
    """Per-window samples of the service replicas, their restarts between windows, and their Prometheus gauges.

    ``begin`` runs on the event loop (it reads the supervisor's live ``Replica`` objects), ``measure`` may run in
    a thread (psutil reads /proc), ``points`` and ``prometheus`` on the loop again.
    """

    def __init__(self) -> None:
        self.sampler = ProcessSampler()
        self._restarts: dict[str, tuple[Replica, int]] = {}  # key -> the replica and its restarts at the last window
        self.last: dict[str, ReplicaSample] = {}  # key -> the last window's sample

    def begin(self, replicas: Iterable[Replica]) -> list[ReplicaSample]:
        """The window's samples, without CPU and memory yet; restarts are those since the previous window (all of
        a replica's restarts when it is new: it started after the previous window). A replica without an identity
        (none of a deployment's) is not sampled."""
        samples, restarts = [], {}
        for r in replicas:
            key, identity = r.spec.key, r.spec.identity
            if identity is None:
                continue
            before = self._restarts.get(key)
            base = before[1] if before is not None and before[0] is r else 0
            restarts[key] = (r, r.restarts)
            samples.append(ReplicaSample(key, identity, r.pid, r.state, max(0, r.restarts - base)))
        self._restarts = restarts
        return samples

    def measure(self, samples: list[ReplicaSample]) -> list[ReplicaSample]:
        """Fill in CPU and memory (blocking: psutil)."""
        for s in samples:
            measured = self.sampler.sample(s.key, s.pid) if s.pid is not None else None
            if measured is not None:
                s.cpu, s.memory = measured
        self.sampler.forget({s.key for s in samples if s.pid is not None})
        return samples

    def points(self, samples: list[ReplicaSample], at: str, seconds: float) -> list[MetricPointSent]:
        """The ``replica`` points of a window (and they become what ``prometheus`` shows)."""
        self.last = {s.key: s for s in samples}
        points = []
        for s in samples:
            env, project, component, release, index = s.labels
            points.append(MetricPointSent(
                kind="replica", environment=env, project=project, component=component, release=release,
                replica=int(index), at=at, seconds=_seconds(seconds), cpu=round(s.cpu, 3), memory=s.memory,
                restarts=s.restarts, state=s.state))
        return points

    def prometheus(self, replicas: Iterable[Replica]) -> str:
        """Gauges of the last window (CPU, memory) and the live restart counters of these replicas."""
        cpu = ["# HELP cellplane_replica_cpu_percent CPU used by the replica's process tree over the last metrics "
               "window, in percent of one core.", "# TYPE cellplane_replica_cpu_percent gauge"]
        memory = ["# HELP cellplane_replica_memory_bytes Resident memory of the replica's process tree.",
                  "# TYPE cellplane_replica_memory_bytes gauge"]
        restarts = ["# HELP cellplane_replica_restarts_total Restarts of the replica's process.",
                    "# TYPE cellplane_replica_restarts_total counter"]
        for r in replicas:
            if (i := r.spec.identity) is None:
                continue
            env, project, component, release, index = i.environment, i.project, i.component, i.release, str(i.index)
            tags = ",".join(f'{k}="{escape_label(v)}"' for k, v in (
                ("environment", env), ("project", project), ("component", component), ("release", release),
                ("replica", index)))
            last = self.last.get(r.spec.key)
            if last is not None:
                cpu.append(f"cellplane_replica_cpu_percent{{{tags}}} {round(last.cpu, 3)!r}")
                memory.append(f"cellplane_replica_memory_bytes{{{tags}}} {last.memory}")
            restarts.append(f"cellplane_replica_restarts_total{{{tags}}} {r.restarts}")
        return "\n".join(cpu + memory + restarts) + "\n"


def counter(name: str, help_text: str, value: float) -> str:
    """One unlabelled counter in the Prometheus text format."""
    return f"# HELP {name} {help_text}\n# TYPE {name} counter\n{name} {value}\n"


# -- the Prometheus endpoint ------------------------------------------------------------------------------------

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
UNAUTHORIZED = b"a bearer token is required: the agent's metrics.token (Prometheus: bearer_token_file)\n"
HEAD_TIMEOUT = 10.0


class MetricsEndpoint:
    """``GET /metrics`` over plain HTTP/1.x: 200 with ``render()``, any other request 404 (one per connection).

    Every request must carry ``Authorization: Bearer <token>`` (the agent's ``metrics.token``, which Prometheus reads
    with ``bearer_token_file``), compared in constant time; without it 401, whatever the path: the series name
    every project, component, endpoint and consumer of the data plane, which no other local process may list."""

    def __init__(self, render: Callable[[], str], token: str) -> None:
        self.render = render
        self._authorization = b"bearer " + token.encode()
        self.url: str | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> str:
        self._server = await asyncio.start_server(self._connection, host, port, reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104  (a wildcard is reached on loopback)
        if shown == "::":
            shown = "::1"
        self.url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{bound[1]}/metrics"
        return self.url

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            line, _, headers = head.partition(b"\r\n")
            parts = line.split(b" ")
            extra = b""
            if not self._authorized(headers):
                status, body, content_type = b"401 Unauthorized", UNAUTHORIZED, b"text/plain"
                extra = b'WWW-Authenticate: Bearer realm="cellplane-agent"\r\n'
            elif len(parts) == 3 and parts[0] == b"GET" and parts[1].split(b"?", 1)[0] == b"/metrics":
                try:
                    status, body, content_type = b"200 OK", self.render().encode(), CONTENT_TYPE
                except Exception:
                    log.exception("rendering the metrics failed")
                    status, body, content_type = b"500 Internal Server Error", b"metrics failed\n", b"text/plain"
            else:
                status, body, content_type = b"404 Not Found", b"not found: GET /metrics\n", b"text/plain"
            writer.write(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n%s"
                         % (status, content_type, len(body), extra, body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _authorized(self, headers: bytes) -> bool:
        """Whether the head's Authorization header is the bearer token (one header of that name, no other)."""
        values = [line.partition(b":")[2].strip() for line in headers.split(b"\r\n")
                  if line[:14].lower() == b"authorization:"]
        return len(values) == 1 and hmac.compare_digest(values[0][:7].lower() + values[0][7:], self._authorization)

    @classmethod
    async def open(cls, render: Callable[[], str], token: str, host: str, port: int) -> MetricsEndpoint:
        """A started endpoint on ``host``:``port``; ``CellplaneError`` (one line) when it cannot listen there."""
        endpoint = cls(render, token)
        try:
            await endpoint.start(host, port)
        except OSError as e:
            raise CellplaneError(f"the metrics endpoint cannot listen on {host} port {port}: {e.strerror or e}",
                                 code="unavailable") from None
        return endpoint
