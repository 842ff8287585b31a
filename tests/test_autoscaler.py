"""The scaler's decisions (``cellplane.dataplane.autoscaler``), pure logic on a clock the test moves: a tick every
0.5 s as the local runtime's, the decided count applied at once (as ``Workload.scale_to`` would start or remove
replicas). Real processes scaling through the gateway are in test_scale_*.py."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from cellplane.contract import DesiredScaling
from cellplane.dataplane.autoscaler import Autoscaler, Decision

TICK = 0.5


def scaling(**fields: Any) -> DesiredScaling:
    values: dict[str, Any] = {"minReplicas": 1, "maxReplicas": 5, "targetConcurrency": 10, "idleSeconds": 300,
                              "scaleDownDelaySeconds": 30, **fields}
    return DesiredScaling.model_validate(values)


class Run:
    """An autoscaler fed every TICK seconds; ``current`` follows each decision, ``history`` keeps them."""

    def __init__(self, s: DesiredScaling, current: int = 1, window: float = 60.0) -> None:
        self.now = 1000.0
        self.current = current
        self.autoscaler = Autoscaler(s, self.now, stable_window=window)
        self.history: list[tuple[float, Decision]] = []

    def run(self, seconds: float, inflight: Callable[[float], float] | float, rps: float = 0.0) -> Decision:
        end = self.now + seconds
        decision = Decision(self.current, "")
        while self.now < end - 1e-9:
            self.now += TICK
            value = inflight(self.now) if callable(inflight) else inflight
            self.autoscaler.observe(self.now, value, round(rps * TICK))
            decision = self.autoscaler.decide(self.now, self.current)
            if decision.desired != self.current:
                self.history.append((self.now, decision))
                self.current = decision.desired
        return decision

    def changes(self) -> list[int]:
        return [d.desired for _, d in self.history]


def test_a_step_in_load_scales_up_to_max_replicas_at_the_next_tick() -> None:
    r = Run(scaling(maxReplicas=5))
    r.run(30, 2)
    assert r.current == 1
    r.run(3, 80)  # 80 in flight, target 10: 8 wanted, 5 allowed
    assert r.current == 5
    [(at, first)] = r.history
    assert at == 1030.5 and first.reason.endswith("(a burst: the last second)"), r.history
    decision = r.run(3, 80)  # the burst window is full of the step now
    assert decision == Decision(5, "load: 80 in flight, target 10 per replica (a burst: the last second)")


def test_a_moderate_rise_scales_on_the_stable_window_without_panic() -> None:
    r = Run(scaling(), current=2)
    r.run(60, 15)
    assert r.current == 2
    decision = r.run(120, 28)  # 3 replicas wanted: less than twice the 2 that run
    assert r.current == 3 and decision.reason == "load: 28 in flight, target 10 per replica"
    [(_, change)] = r.history  # one step up, once the stable average passed 20
    assert change.desired == 3 and change.reason.startswith("load: 20.") and "panic" not in change.reason


def test_when_the_load_stops_replicas_stay_for_the_scale_down_delay_then_shrink() -> None:
    r = Run(scaling(maxReplicas=4, scaleDownDelaySeconds=30), window=6)
    r.run(20, 40)
    assert r.current == 4
    stopped = r.now
    r.run(29, 0)
    assert r.current == 4, f"shrank before the delay: {r.history}"
    decision = r.run(20, 0)
    assert r.current == 1 and decision.reason == "minReplicas 1"
    shrank_at = next(at for at, d in r.history if d.desired < 4)
    assert shrank_at - stopped >= 30


def test_a_fresh_autoscaler_does_not_scale_down_before_it_saw_a_whole_stable_window() -> None:
    r = Run(scaling(maxReplicas=10, scaleDownDelaySeconds=0), current=4)  # e.g. after an agent restart
    r.run(59, 5)
    assert r.current == 4
    r.run(2, 5)
    assert r.current == 1


def test_panic_never_scales_down_until_a_stable_window_passes_without_a_burst() -> None:
    r = Run(scaling(maxReplicas=10, scaleDownDelaySeconds=0))
    r.run(3, 60)  # a burst
    assert r.current == 6
    r.run(10, 5)  # the burst is over, but panic holds the count
    assert r.current == 6
    r.run(60, 5)  # a stable window without a burst: back to what the load needs
    assert r.current == 1


def test_a_noisy_load_around_the_target_does_not_flap() -> None:
    rng = random.Random(22)
    r = Run(scaling(maxReplicas=10, scaleDownDelaySeconds=30), current=3)
    r.run(60, 25)
    r.run(600, lambda _: rng.uniform(15, 35))  # 25 on average: 3 replicas, samples between 2 and 4 wanted
    assert not r.history, r.history
    assert r.current == 3


def test_min_zero_goes_to_zero_only_after_idle_seconds_with_nothing_in_flight() -> None:
    r = Run(scaling(minReplicas=0, idleSeconds=300, scaleDownDelaySeconds=30))
    r.run(10, 3, rps=5)
    r.run(299, 0)
    assert r.current == 1
    decision = r.run(2, 0)
    assert r.current == 0 and decision == Decision(0, "idle for 300 s")
    assert r.run(100, 0).desired == 0, "at zero with no load it stays there"


def test_a_long_websocket_in_flight_keeps_a_component_up_past_its_idle_period() -> None:
    r = Run(scaling(minReplicas=0, idleSeconds=5, scaleDownDelaySeconds=1))
    r.run(3600, 1)  # one tunnel open for an hour, no new request
    assert r.current == 1 and not r.history
    r.run(4, 0)
    assert r.current == 1
    r.run(2, 0)
    assert r.current == 0


def test_a_request_at_zero_asks_for_a_replica() -> None:
    r = Run(scaling(minReplicas=0, idleSeconds=5))
    r.run(20, 0)
    assert r.current == 0
    decision = r.run(0.5, 1, rps=2)  # a held request
    assert r.current == 1 and decision.reason.startswith("load:")


def test_min_two_never_goes_below_two() -> None:
    r = Run(scaling(minReplicas=2, maxReplicas=4, scaleDownDelaySeconds=1, idleSeconds=1), current=2, window=6)
    r.run(10, 0)
    assert r.current == 2 and not r.history
    r.run(10, 40)
    assert r.current == 4
    decision = r.run(30, 0)
    assert r.current == 2 and decision == Decision(2, "minReplicas 2")


def test_a_requests_per_second_target_scales_when_in_flight_alone_would_not() -> None:
    r = Run(scaling(maxReplicas=10, targetRps=50), window=6)
    decision = r.run(20, 1, rps=240)  # short requests: 1 in flight, 240 a second
    assert r.current == 5 and decision.reason == "load: 240 requests/s, target 50 per replica"
    r2 = Run(scaling(maxReplicas=10), window=6)
    r2.run(20, 1, rps=240)
    assert r2.current == 1


def test_new_bounds_apply_at_the_next_decision() -> None:
    r = Run(scaling(minReplicas=1, maxReplicas=5), current=4)
    r.run(5, 40)
    r.autoscaler.scaling = scaling(minReplicas=1, maxReplicas=2)
    decision = r.run(0.5, 40)
    assert r.current == 2 and decision.reason.endswith("; maxReplicas 2")
