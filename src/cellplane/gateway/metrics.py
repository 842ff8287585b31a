"""Request counters and latency histograms per (environment, project, component, endpoint, consumer, status code).

Recording is two dict lookups, a bisect and three additions, so it stays on the request path; the buckets are
stored per bucket and summed up only when exported. Requests without a route are counted under empty
project/component/endpoint labels, so arbitrary paths cannot grow the series without bound. The consumer is
"project/component" of the grant that admitted a request on an internal listener, "@cell" for a request that
came through a project's cell listener, else empty.

Two readers: ``prometheus``/``snapshot`` export the cumulative counters; ``delta`` gives what was added since its
previous call (the agent's metrics windows) without touching them. A gateway worker process reads its own with
``take`` instead, and the agent ``add``s them to its own, so the agent's counters cover every process.

Cold starts (``cellplane.gateway.activator``) are counted per deployment, (environment, project, component), in
the agent's gateway only (it sees every wake-up once): how many, and their seconds summed; forgotten when the
component leaves the route table.

The series of an endpoint that left the route table are forgotten (``routed``) once ``delta`` has read all they
counted, so an agent that lives through many deploys does not keep every endpoint it ever served. Prometheus
sees such a series end, and start again from zero if the endpoint comes back (a counter reset).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from cellplane.contract.requestmetrics import BUCKETS

Endpoint = tuple[str, str, str, str]  # environment, project, component, endpoint

_LE = (*(repr(b) for b in BUCKETS), "+Inf")  # the "le" label of each bucket
LABELS = ("environment", "project", "component", "endpoint", "consumer")
Labels = tuple[str, str, str, str, str]

_REQUESTS = "cellplane_gateway_requests_total"
_DURATION = "cellplane_gateway_request_duration_seconds"
_COLD = "cellplane_gateway_cold_starts_total"
_COLD_SECONDS = "cellplane_gateway_cold_start_seconds_total"


class Series:
    """One histogram: counts per bucket (the last one is +Inf), their sum of seconds, and the total."""

    __slots__ = ("buckets", "count", "seen_buckets", "seen_count", "seen_sum", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0
        # the values at the last ``Metrics.delta``
        self.seen_buckets = [0] * (len(BUCKETS) + 1)
        self.seen_count = 0
        self.seen_sum = 0.0

    def cumulative(self) -> list[int]:
        out, total = [], 0
        for n in self.buckets:
            total += n
            out.append(total)
        return out


@dataclass
class Window:
    """What one label set (every status code together) counted between two ``Metrics.delta`` calls."""

    requests: int = 0
    errors: int = 0  # status >= 500
    client_errors: int = 0  # 400..499
    duration_sum: float = 0.0  # seconds
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))  # NON-cumulative, +Inf last


class Metrics:
    """Counters and histograms of every request the gateway answered, for ``Gateway.metrics``."""

    def __init__(self) -> None:
        self._series: dict[Labels, dict[int, Series]] = {}
        self._routed: set[Endpoint] | None = None  # None: no route table yet, keep everything
        self._windows = False  # whether ``delta`` reads the counters (then only what it read is forgotten)
        self._cold: dict[tuple[str, ...], list[float]] = {}  # (environment, project, component) -> [count, seconds]

    def cold_start(self, deployment: tuple[str, ...], seconds: float) -> None:
        """A wake-up of a deployment, (environment, project, component), that took ``seconds``."""
        counted = self._cold.get(deployment)
        if counted is None:
            counted = self._cold[deployment] = [0, 0.0]
        counted[0] += 1
        counted[1] += seconds

    def routed(self, endpoints: set[Endpoint]) -> None:
        """The endpoints the route table now holds: the series of others are forgotten once read."""
        self._routed = endpoints
        self._forget()
        components = {endpoint[:3] for endpoint in endpoints}
        for gone in [deployment for deployment in self._cold if deployment not in components]:
            del self._cold[gone]

    def _forget(self) -> None:
        routed = self._routed
        if routed is None:
            return
        gone = [labels for labels, by_status in self._series.items()
                if labels[1] and labels[:4] not in routed  # requests without a route keep their series
                and not (self._windows and any(s.count != s.seen_count for s in by_status.values()))]
        for labels in gone:
            del self._series[labels]

    def label_sets(self) -> list[Labels]:
        """The label sets counted and not forgotten."""
        return list(self._series)

    def _series_of(self, labels: Labels, status: int) -> Series:
        by_status = self._series.get(labels)
        if by_status is None:
            by_status = self._series[labels] = {}
        series = by_status.get(status)
        if series is None:
            series = by_status[status] = Series()
        return series

    def observe(self, labels: Labels, status: int, seconds: float) -> None:
        series = self._series_of(labels, status)
        series.buckets[bisect_left(BUCKETS, seconds)] += 1
        series.count += 1
        series.sum += seconds

    def delta(self) -> dict[Labels, Window]:
        """What was counted since the previous call (since the start for the first), per label set with requests.

        Meant for one reader (the agent's metrics windows); the cumulative counters are left as they are.
        """
        out: dict[Labels, Window] = {}
        for labels, status, buckets, n, seconds in self.take():
            window = out.get(labels)
            if window is None:
                window = out[labels] = Window()
            window.requests += n
            if status >= 500:
                window.errors += n
            elif status >= 400:
                window.client_errors += n
            window.duration_sum += seconds
            sums = window.buckets
            for i, added in enumerate(buckets):
                sums[i] += added
        return out

    def take(self) -> list[tuple[Labels, int, list[int], int, float]]:
        """What was counted since the previous call (``delta`` or this), per label set and status: (labels, status,
        NON-cumulative buckets, count, sum). A gateway worker ships these to the agent's ``Metrics`` (``add``)."""
        self._windows = True
        out = []
        for labels, by_status in self._series.items():
            for status, s in by_status.items():
                if s.count == s.seen_count:
                    continue
                out.append((labels, status, [now - seen for now, seen in zip(s.buckets, s.seen_buckets, strict=True)],
                            s.count - s.seen_count, s.sum - s.seen_sum))
                s.seen_buckets = s.buckets.copy()
                s.seen_count = s.count
                s.seen_sum = s.sum
        self._forget()
        return out

    def add(self, labels: Labels, status: int, buckets: list[int], count: int, seconds: float) -> None:
        """Count what another process observed (``take`` there) as if observed here."""
        series = self._series_of(labels, status)
        for i, n in enumerate(buckets):
            series.buckets[i] += n
        series.count += count
        series.sum += seconds

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON: one entry per label set and status, with its histogram (cumulative)."""
        entries = []
        for labels, by_status in self._series.items():
            for status, s in sorted(by_status.items()):
                entries.append({**dict(zip(LABELS, labels, strict=True)), "status": status, "count": s.count,
                                "duration_seconds": {"sum": s.sum, "count": s.count,
                                                     "buckets": dict(zip(_LE, s.cumulative(), strict=True))}})
        return {"requests": entries, "buckets": list(BUCKETS)}

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        counts = [f"# HELP {_REQUESTS} Requests answered by the gateway.", f"# TYPE {_REQUESTS} counter"]
        histos = [f"# HELP {_DURATION} Time from the request head to the end of the response.",
                  f"# TYPE {_DURATION} histogram"]
        for labels, by_status in self._series.items():
            base = ",".join(f'{k}="{escape_label(v)}"' for k, v in zip(LABELS, labels, strict=True))
            for status, s in sorted(by_status.items()):
                tags = f'{base},code="{status}"'
                counts.append(f"{_REQUESTS}{{{tags}}} {s.count}")
                for le, n in zip(_LE, s.cumulative(), strict=True):
                    histos.append(f'{_DURATION}_bucket{{{tags},le="{le}"}} {n}')
                histos.append(f"{_DURATION}_sum{{{tags}}} {s.sum!r}")
                histos.append(f"{_DURATION}_count{{{tags}}} {s.count}")
        cold: list[str] = []
        if self._cold:  # (no families at all before the first cold start)
            cold = [f"# HELP {_COLD} Wake-ups of deployments at zero replicas that ended with a replica routed.",
                    f"# TYPE {_COLD} counter"]
            cold_seconds = [f"# HELP {_COLD_SECONDS} Their durations summed: first held request to the replica "
                            "routed.", f"# TYPE {_COLD_SECONDS} counter"]
            for deployment, (count, total) in self._cold.items():
                tags = ",".join(f'{k}="{escape_label(v)}"' for k, v in zip(LABELS, deployment, strict=False))
                cold.append(f"{_COLD}{{{tags}}} {int(count)}")
                cold_seconds.append(f"{_COLD_SECONDS}{{{tags}}} {total!r}")
            cold += cold_seconds
        return "\n".join(counts + histos + cold) + "\n"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
