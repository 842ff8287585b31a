"""The scaler's burst rule (``cellplane.dataplane.autoscaler``): the latest second scales up at once when it wants
twice the replicas that run, and holds only while the load stays above what ran before. On the injected clock of
test_autoscaler.py (a tick every 0.5 s, each decision applied at once)."""

from __future__ import annotations

import random

from test_autoscaler import TICK, Run, scaling


def test_a_step_from_no_load_reaches_max_replicas_within_two_ticks() -> None:
    r = Run(scaling(minReplicas=1, maxReplicas=3, targetConcurrency=2, scaleDownDelaySeconds=0))
    r.run(60, 0)
    step = r.now
    r.run(10, 8)  # the benchmark's step: 8 connections, 2 per replica wanted
    assert r.changes() == [2, 3], r.history
    assert [at - step for at, _ in r.history] == [TICK, 2 * TICK]
    assert all("(a burst: the last second)" in d.reason for _, d in r.history), r.history


def test_a_burst_holds_its_count_while_the_load_lasts_even_without_a_scale_down_delay() -> None:
    r = Run(scaling(minReplicas=1, maxReplicas=3, targetConcurrency=2, scaleDownDelaySeconds=0))
    r.run(60, 0)
    r.run(120, lambda now: 8 if int(now * 2) % 7 else 5)  # 8 in flight, a dip to 5 now and then
    assert r.changes() == [2, 3], r.history


def test_a_one_tick_spike_adds_a_replica_only_for_the_scale_down_delay() -> None:
    r = Run(scaling(maxReplicas=5, targetConcurrency=10, scaleDownDelaySeconds=30))
    r.run(60, 2)
    spike = r.now + TICK
    r.run(TICK, 40)  # one tick of noise: the last second's average (2 and 40) wants 3, for two ticks
    assert r.current == 3
    r.run(30, 2)
    assert r.current == 3, "removed before the scale-down delay"
    r.run(1, 2)
    assert r.current == 1 and r.changes() == [3, 1], r.history
    removed_at = r.history[-1][0]
    assert removed_at - spike == 30 + 2 * TICK and "panic" not in r.history[0][1].reason


def test_a_noisy_steady_load_does_not_flap() -> None:
    rng = random.Random(7)
    r = Run(scaling(maxReplicas=10, targetConcurrency=10, scaleDownDelaySeconds=30), current=3)
    r.run(60, 25)
    r.run(600, lambda _: rng.uniform(10, 40))  # 25 on average, ticks from 1 to 4 replicas' worth
    assert not r.history, r.history


def test_a_noisy_light_load_whose_peaks_double_settles_without_flapping() -> None:
    rng = random.Random(22)
    r = Run(scaling(maxReplicas=10, targetConcurrency=10, scaleDownDelaySeconds=30))
    r.run(660, lambda _: rng.uniform(0, 24))  # 12 on average: 2 replicas; ticks from none to 3 replicas' worth
    assert r.current == 2 and len(r.history) <= 2, r.history  # a fresh start may panic first, then settles
    assert not [at for at, _ in r.history if at > 1100], r.history  # and stays for the last nine minutes


def test_when_a_burst_ends_the_count_comes_down_once_and_does_not_panic_back_up() -> None:
    r = Run(scaling(minReplicas=1, maxReplicas=3, targetConcurrency=2, scaleDownDelaySeconds=0))
    r.run(120, 0)
    r.run(4, 8)
    ended = r.now
    r.run(60, 0.5)  # one slow connection: half a request in flight
    assert r.changes() == [2, 3, 1], r.history
    down_at, down = r.history[-1]
    assert down_at - ended <= 6 and down.reason == "load: 0.6 in flight, target 2 per replica"
