"""The scaler's decision: how many replicas an autoscaled deployment should run, from its load.

Knative's KPA in miniature, as pure logic over a clock the caller passes in (no asyncio, no processes, no sleeps):
every tick the runtime calls ``observe(now, inflight, requests)`` with the gateway's demand for the deployment
(requests in flight now — proxied, tunnelled WebSockets and streams, and held ones — and the requests since the
previous tick), then ``decide(now, current)`` with the replicas it runs (ready or starting).

- Two windows average the in-flight count: the **stable** window (60 s) and the **panic** window (a tenth of it,
  6 s). Wanted replicas = ceil(average in flight / ``targetConcurrency``); with ``targetRps`` the larger of that
  and ceil(requests per second / ``targetRps``).
- **Panic**: when the panic window wants at least twice the replicas that run, it decides (a burst is met within
  seconds, not a minute) and the count never goes down while panicking; panic ends after a stable window in which
  the condition did not hold again.
- **Burst**: the latest second (two ticks) is averaged too, used only to scale **up**: when it wants at least
  twice the replicas that run, the count goes up to it at once, so a step from no load is met within one or two
  ticks (the panic window, averaging the quiet seconds before the step, wanted twice after 1.5 s and its maximum
  after 3 s). That count holds while the latest second or the panic window still wants more than ran before the
  burst (the panic window's 6 s bridge the end of a burst: scaling down at its first quiet second would let the
  panic window, still full of the burst, panic back up at the next tick); once neither does (a spike of noise, or
  the burst ended 6 s ago), the stable window and the scale-down delay decide as usual, so a
  one-tick spike adds a replica for ``scaleDownDelaySeconds`` only, not for a stable window as panic would. Why a
  second and not Knative's panic window alone: Knative ticks every 2 s, where a 6 s window is three ticks; at
  0.5 s ticks it is twelve. Noise does not flap it: doubling the replicas takes twice the load, over two ticks.
- **Scale down** goes only to the highest count wanted over the last ``scaleDownDelaySeconds``: a dip does not
  remove a replica the next burst needs, and a noisy load does not flap.
- A fresh autoscaler (a new deployment, an agent that restarted) does not scale down before it has seen a whole
  stable window: one sample is no average.
- **Bounds**: [max(``minReplicas``, 1), ``maxReplicas``]; **zero** only with ``minReplicas`` 0, nothing in flight
  and no request for ``idleSeconds`` (a WebSocket held open for an hour keeps it up).

A decision carries its reason as a sentence ("load: 27 in flight, target 10 per replica", "idle for 300 s",
"minReplicas 2"); it changes only when the count it explains changes, so a report does not churn with the load.

Cost: one sample per tick kept over the stable window (120 at the runtime's 0.5 s tick); ``decide`` walks them
once per window (three times, a few µs), per autoscaled deployment per tick.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from cellplane.contract import DesiredScaling

STABLE_WINDOW = 60.0  # seconds the stable average covers (Knative's default)
PANIC_FRACTION = 0.1  # the panic window's share of the stable window (6 s of 60)
PANIC_THRESHOLD = 2.0  # panic when the panic window wants this many times the replicas that run
BURST_WINDOW = 1.0  # seconds of the latest load (two ticks) that scale up at once when they want PANIC_THRESHOLD x


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str


@dataclass(frozen=True)
class _Sample:
    at: float
    inflight: float
    requests: int
    span: float  # seconds ``requests`` were counted over (0 for the first sample: unknown)


def _num(x: float) -> str:
    """27 -> "27", 26.54 -> "26.5"."""
    return f"{x:.1f}".removesuffix(".0")


class Autoscaler:
    """The decisions of one deployment (see the module's docstring). ``now`` is any monotonic clock in seconds."""

    def __init__(self, scaling: DesiredScaling, now: float, stable_window: float = STABLE_WINDOW) -> None:
        self.scaling = scaling
        self.stable_window = max(stable_window, 0.01)
        self.panic_window = self.stable_window * PANIC_FRACTION
        self._samples: deque[_Sample] = deque()
        self._last_at: float | None = None
        self._since = now  # scaling down waits until a whole stable window was seen (an agent that just started)
        self._inflight = 0.0  # in flight at the last observation
        self._active_at = now  # the last time something was in flight or asked for (or it started, or woke)
        self._panic_until: float | None = None  # panicking while now < this
        self._panic_floor = 0  # the count reached while panicking: never less until panic ends
        self._burst_base: int | None = None  # the count that ran before a burst, while its count holds
        self._burst_floor = 0  # the count a burst asked for: held while the latest second wants more than the base
        self._burst_why = ""
        self._wanted: deque[tuple[float, int, str]] = deque()  # (at, wanted, why) over the scale-down delay

    def observe(self, now: float, inflight: float, requests: int) -> None:
        """The gateway's demand at ``now``: requests in flight, and requests since the previous observation."""
        span = now - self._last_at if self._last_at is not None else 0.0
        self._last_at = now
        self._samples.append(_Sample(now, max(0.0, inflight), max(0, requests), span))
        self._inflight = max(0.0, inflight)
        if inflight > 0 or requests > 0:
            self._active_at = now
        while self._samples and self._samples[0].at <= now - self.stable_window:
            self._samples.popleft()

    def woke(self, now: float) -> None:
        """A replica was started for a request held at zero: not idle from now on."""
        self._active_at = now

    def idle_for(self, now: float) -> float:
        """Seconds since anything was in flight or asked for (0 while something is in flight)."""
        return 0.0 if self._inflight > 0 else now - self._active_at

    def _want(self, now: float, window: float) -> tuple[int, str]:
        """Replicas the load of the last ``window`` seconds asks for, and why."""
        samples = [s for s in self._samples if s.at > now - window]
        if not samples:
            return 0, "no load"
        s = self.scaling
        concurrency = sum(x.inflight for x in samples) / len(samples)
        want = math.ceil(concurrency / s.targetConcurrency - 1e-9)
        why = f"load: {_num(concurrency)} in flight, target {_num(s.targetConcurrency)} per replica"
        if s.targetRps is not None:
            counted = [x for x in samples if x.span > 0]
            span = sum(x.span for x in counted)
            rps = sum(x.requests for x in counted) / span if span > 0 else 0.0
            by_rps = math.ceil(rps / s.targetRps - 1e-9)
            if by_rps > want:
                want, why = by_rps, f"load: {_num(rps)} requests/s, target {_num(s.targetRps)} per replica"
        if want == 0:
            why = "no load"
        return want, why

    def decide(self, now: float, current: int) -> Decision:
        """The replicas to run now, given ``current`` run (ready or starting), and why."""
        s = self.scaling
        lower, upper = max(s.minReplicas, 1), max(s.maxReplicas, s.minReplicas, 1)
        if s.minReplicas == 0 and self.idle_for(now) >= s.idleSeconds:
            self._panic_until, self._panic_floor = None, 0
            self._burst_base, self._burst_floor = None, 0
            self._wanted.clear()
            return Decision(0, f"idle for {_num(s.idleSeconds)} s")
        stable, stable_why = self._want(now, self.stable_window)
        panic, panic_why = self._want(now, self.panic_window)
        if panic > 0 and panic >= PANIC_THRESHOLD * max(current, 1):
            if self._panic_until is None:
                self._panic_floor = current
            self._panic_until = now + self.stable_window
        if self._panic_until is not None and now < self._panic_until:
            want, why = (panic, panic_why) if panic >= stable else (stable, stable_why)
            if want < self._panic_floor:
                want = self._panic_floor
            why += " (a burst: panic mode)"
            self._panic_floor = min(max(want, self._panic_floor), upper)
        else:
            self._panic_until, self._panic_floor = None, 0
            want, why = stable, stable_why
        burst, burst_why = self._want(now, BURST_WINDOW)
        if burst > 0 and burst >= PANIC_THRESHOLD * max(current, 1):
            if self._burst_base is None:
                self._burst_base = current
            self._burst_floor = max(self._burst_floor, burst)
        elif self._burst_base is not None and max(burst, panic) <= self._burst_base:
            self._burst_base, self._burst_floor = None, 0  # a spike, or the burst is over: the windows decide
        if self._burst_base is not None and burst >= self._burst_floor:
            self._burst_why = burst_why  # the load that holds the count now, not the first tick's
        if self._burst_base is not None and self._burst_floor > want:
            want, why = self._burst_floor, f"{self._burst_why} (a burst: the last second)"
        self._wanted.append((now, want, why))
        while self._wanted and self._wanted[0][0] < now - s.scaleDownDelaySeconds:
            self._wanted.popleft()
        _, want, why = max(reversed(self._wanted), key=lambda w: w[1])  # the highest; the latest among equals
        if want < current and now - self._since < self.stable_window:
            want, why = current, f"{why}; no scaling down before {_num(self.stable_window)} s of load were seen"
        if want > upper:
            return Decision(upper, f"{why}; maxReplicas {s.maxReplicas}")
        if want < lower:
            if s.minReplicas >= 1:
                return Decision(lower, f"minReplicas {s.minReplicas}")
            return Decision(1, f"{why} (zero after {_num(s.idleSeconds)} s idle)")
        return Decision(want, why)
