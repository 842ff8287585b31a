"""What the gateway tells the data plane's scaler about each deployment: ``Gateway.demand``.

Levels (``inflight``, ``held``) are read when asked; counts (``requests``, ``cold_starts``, ``cold_start_seconds``)
are what happened since the previous call. Nothing here is on the request path: a routed request adds one to its
route's counter (``Route.requests``, harvested when the route table changes and when demand is read), in-flight
requests are the upstream pools' own counters, held ones the activator's queues.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Demand:
    """One deployment's demand, summed over the gateway's processes."""

    inflight: int = 0  # now: proxied requests + open WebSocket/stream tunnels + held requests
    held: int = 0  # now: requests waiting for a replica (the activator)
    requests: int = 0  # routed requests since the previous call (held ones included)
    cold_starts: int = 0  # wake-ups that ended with a replica routed, since the previous call
    cold_start_seconds: float = 0.0  # their durations summed: first held request to the replica routed

    def add(self, other: Demand) -> None:
        self.inflight += other.inflight
        self.held += other.held
        self.requests += other.requests
        self.cold_starts += other.cold_starts
        self.cold_start_seconds += other.cold_start_seconds

    def levels(self) -> tuple[int, int]:
        return self.inflight, self.held

    def counted(self) -> bool:
        """Whether anything happened since the previous call."""
        return bool(self.requests or self.cold_starts)
