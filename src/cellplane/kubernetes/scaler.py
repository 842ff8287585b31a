"""The agent's part of scaling on Kubernetes, fed by its gateway's demand: idle -> zero, and the HPA's metrics.

The HPA owns 1..N (``autoscaling``); what it cannot do, the agent does from the same numbers the local data plane's
scaler uses (``Gateway.demand()``, summed over the gateway's processes):

- **Idle -> zero.** Each deployment whose ``scaling`` allows zero (``minReplicas`` 0) has the local scaler's
  ``Autoscaler`` (``cellplane.dataplane.autoscaler``: Knative's rule), fed every tick with its requests in flight
  and its requests since the last tick. Only its zero decision is used ("idle for 300 s": nothing in flight and no
  request for ``idleSeconds``): ``tick`` returns the deployments to scale to zero; the runtime does it through
  ``/scale``. Its other decisions are the HPA's to make.
- **The HPA's metrics.** ``prometheus`` gives, per autoscaled deployment, ``cellplane_requests_in_flight`` (the
  average over the last ``WINDOW`` seconds, so a scrape every 15 to 30 s sees the load, not one instant of it) and
  ``cellplane_requests_per_second`` (over the same window), labelled with the Deployment's ``namespace`` and
  ``deployment`` name: what the documented prometheus-adapter rule serves as the Deployment's ``Object`` metrics.
- **Cold starts** since the last metrics window, per deployment (``cold``), for the "scaling" metric points.

Pure logic over the caller's clock. Cost per tick: one ``observe`` and ``decide`` per min-0 deployment (a few µs)
and a sample kept per deployment for ``WINDOW`` seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cellplane.contract import DesiredDeployment, DesiredScaling, DesiredState
from cellplane.dataplane.autoscaler import Autoscaler, Decision
from cellplane.gateway.metrics import escape_label
from cellplane.kubernetes import autoscaling, names

TICK = 0.5  # seconds between two looks at the gateway's demand (the local scaler's)
WINDOW = 30.0  # seconds the HPA's gauges average over


class Demand(Protocol):
    """What the scaler reads of ``Gateway.demand()`` for one deployment."""

    @property
    def inflight(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def cold_starts(self) -> int: ...
    @property
    def cold_start_seconds(self) -> float: ...


@dataclass
class _Load:
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)  # (at, in flight, requests since before)

    def add(self, now: float, inflight: int, requests: int) -> None:
        self.samples.append((now, inflight, requests))
        while self.samples and self.samples[0][0] <= now - WINDOW:
            self.samples.popleft()

    def levels(self, now: float) -> tuple[float, float]:
        """Average in flight, and requests per second, over the samples kept."""
        if not self.samples:
            return 0.0, 0.0
        inflight = sum(s[1] for s in self.samples) / len(self.samples)
        span = now - self.samples[0][0] if len(self.samples) > 1 else 0.0
        counted = sum(s[2] for s in list(self.samples)[1:])
        return inflight, (counted / span if span > 0 else 0.0)


class ClusterScaler:
    """The agent's scaling decisions and gauges on Kubernetes (see the module's docstring)."""

    def __init__(self) -> None:
        self.autoscalers: dict[str, tuple[DesiredScaling, Autoscaler]] = {}
        self.loads: dict[str, _Load] = {}
        self.cold: dict[str, tuple[int, float]] = {}  # deployment id -> cold starts and their seconds, this window

    def tick(self, desired: DesiredState, demand: Mapping[str, Demand], now: float,
             replicas: Callable[[DesiredDeployment], int | None]) -> list[tuple[DesiredDeployment, Decision]]:
        """One look at the demand: the deployments to scale to zero now, with the decision (``replicas``: a
        deployment's count as last observed, None when unknown)."""
        out = []
        wanted = set()
        for d in desired.deployments:
            if not autoscaling.autoscaled(d) or d.scaling is None:
                continue
            wanted.add(d.id)
            seen = demand.get(d.id)
            inflight, requests = (seen.inflight, seen.requests) if seen is not None else (0, 0)
            if seen is not None and seen.cold_starts:
                count, seconds = self.cold.get(d.id, (0, 0.0))
                self.cold[d.id] = (count + seen.cold_starts, seconds + seen.cold_start_seconds)
            self.loads.setdefault(d.id, _Load()).add(now, inflight, requests)
            if d.scaling.minReplicas != 0:
                self.autoscalers.pop(d.id, None)
                continue
            known = self.autoscalers.get(d.id)
            if known is None or known[0] != d.scaling:
                known = self.autoscalers[d.id] = (d.scaling, Autoscaler(d.scaling, now))
            scaler = known[1]
            scaler.observe(now, inflight, requests)
            current = replicas(d)
            if not current:  # at zero already, or not observed yet
                continue
            decision = scaler.decide(now, current)
            if decision.desired == 0:
                out.append((d, decision))
        for gone in [k for k in self.loads if k not in wanted]:
            self.loads.pop(gone, None)
            self.autoscalers.pop(gone, None)
        return out

    def woke(self, deployment: str, now: float) -> None:
        """A deployment was woken for a request: not idle from now on."""
        known = self.autoscalers.get(deployment)
        if known is not None:
            known[1].woke(now)

    def take_cold(self) -> dict[str, tuple[int, float]]:
        """The cold starts counted since the last call, per deployment id."""
        cold, self.cold = self.cold, {}
        return cold

    def prometheus(self, desired: DesiredState | None, now: float) -> str:
        """The HPA's gauges, per autoscaled deployment (see the module's docstring)."""
        if desired is None:
            return ""
        lines = {autoscaling.IN_FLIGHT: [f"# HELP {autoscaling.IN_FLIGHT} Requests in flight through the gateway "
                                         f"(average over {WINDOW:g} s), per Deployment.",
                                         f"# TYPE {autoscaling.IN_FLIGHT} gauge"],
                 autoscaling.PER_SECOND: [f"# HELP {autoscaling.PER_SECOND} Requests per second through the "
                                          f"gateway (over {WINDOW:g} s), per Deployment.",
                                          f"# TYPE {autoscaling.PER_SECOND} gauge"]}
        for d in desired.deployments:
            load = self.loads.get(d.id)
            if load is None or not autoscaling.autoscaled(d):
                continue
            inflight, rps = load.levels(now)
            labels = (f'namespace="{escape_label(names.namespace(desired.organization, d.project, d.environment))}",'
                      f'deployment="{escape_label(names.workload(d.component, d.version))}"')
            lines[autoscaling.IN_FLIGHT].append(f"{autoscaling.IN_FLIGHT}{{{labels}}} {inflight:g}")
            lines[autoscaling.PER_SECOND].append(f"{autoscaling.PER_SECOND}{{{labels}}} {rps:g}")
        return "\n".join(lines[autoscaling.IN_FLIGHT] + lines[autoscaling.PER_SECOND]) + "\n"
