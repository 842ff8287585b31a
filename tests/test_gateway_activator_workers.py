"""The activator with gateway worker processes: one wake-up per episode across processes, a failed wake-up answered
in every process, and ``Gateway.demand`` summed over them.

A real ``Gateway`` on a uvloop thread with one real worker process accepting on the same listening sockets, a test
data plane (``WakePlane``) that starts a real upstream app when woken, real HTTP over 127.0.0.1. New connections
go to whichever process accepts first; which one held a request shows in the agent's own queue against the sum.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cellplane.gateway.demand import Demand
from gatewaykit import Harness, WakePlane
from test_gateway_activator import PATH, Background, Totals, _get_many, _held, _open, _wait

CONNECTIONS = 24


@pytest.fixture
def plane() -> WakePlane:
    return WakePlane(auto=False)


@pytest.fixture
def h(plane: WakePlane) -> Iterator[Harness]:
    harness = _open(plane, workers=1)
    yield harness
    harness.close()


def _own_prefix(h: Harness) -> str:
    return h.call(h.gateway.new_request_id).decode().rsplit("-", 1)[0]


def _hold_in_both(h: Harness, url: str, tries: int = 10) -> tuple[list[Background], Totals, int]:
    """Requests held until both processes hold some (the agent's own queue has fewer than all of them); how many
    requests were sent in all."""
    totals = Totals(h)
    for round_ in range(1, tries + 1):
        waiting = [Background(lambda: httpx.get(url, timeout=30)) for _ in range(CONNECTIONS)]
        _wait(lambda: totals.read().held == CONNECTIONS)
        if 0 < _held(h) < CONNECTIONS:
            return waiting, totals, round_ * CONNECTIONS
        h.call(h.gateway.wake_failed, "dep-1", "the test tries again")
        for w in waiting:
            w.result()
    raise AssertionError(f"{CONNECTIONS} connections never reached both processes in {tries} rounds")


def test_fifty_concurrent_first_requests_across_processes_wake_the_deployment_exactly_once(
        h: Harness, plane: WakePlane) -> None:
    plane.auto = True
    base = h.listen("external")
    own = _own_prefix(h)
    for round_ in range(1, 11):
        responses = _get_many(base + PATH, 50)
        assert [r.status_code for r in responses] == [200] * 50
        assert plane.wakes == ["dep-1"] * round_  # one wake-up per episode, whichever processes held requests
        cold = {r.json()["headers"]["x-request-id"].rsplit("-", 1)[0] for r in responses
                if "x-cellplane-cold-start" in r.headers}
        if len(cold) == 2 and own in cold:  # both processes held requests in this episode
            return
        plane.route_at_zero()
    raise AssertionError("the requests never reached both processes while the deployment was at zero")


def test_a_failed_wake_up_answers_the_requests_held_in_every_process(h: Harness, plane: WakePlane) -> None:
    base = h.listen("external")
    waiting, totals, _ = _hold_in_both(h, base + PATH)
    assert totals.last.inflight == CONNECTIONS  # held requests are in flight too
    wakes = len(plane.wakes)
    h.call(h.gateway.wake_failed, "dep-1", "replica 0 exited with code 3: SyntaxError")
    for w in waiting:
        r = w.result()
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "wake-failed"
        assert "replica 0 exited with code 3: SyntaxError" in r.json()["error"]["message"]
    _wait(lambda: totals.read().held == 0)
    assert len(plane.wakes) == wakes


def test_demand_is_summed_over_the_worker_processes(h: Harness, plane: WakePlane) -> None:
    base = h.listen("external")
    waiting, totals, sent = _hold_in_both(h, base + PATH)
    plane.start()
    assert {w.result().status_code for w in waiting} == {200}
    # in flight: slow requests spread over both processes
    slow = [Background(lambda: httpx.get(base + "/shop/api/v1/slow?s=2", timeout=30)) for _ in range(CONNECTIONS)]
    _wait(lambda: totals.read().inflight == CONNECTIONS)
    for w in slow:
        assert w.result().status_code == 200
    # the counts of both processes arrive (a worker's with its next batch), each request once
    _wait(lambda: totals.read().inflight == 0 and totals.total.requests >= sent + CONNECTIONS)
    assert totals.total.requests == sent + CONNECTIONS
    assert totals.total.cold_starts == 1  # counted once, by the agent
    assert totals.total.cold_start_seconds > 0
    assert totals.read() == Demand()
