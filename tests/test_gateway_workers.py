"""The gateway with worker processes: a real ``Gateway`` on a uvloop thread and one real worker process sharing its
listening sockets, real upstream apps, real HTTP over 127.0.0.1.

Which process served a request shows in its ``X-Request-Id`` (the echo app returns it): every gateway process has a
random prefix of its own. New connections go to whichever process accepts first, so the tests open many at once
and assert on what each process served.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from cellplane.gateway.auth import secret_digest
from cellplane.gateway.routes import Grant, ListenerSpec
from cellplane.gateway.server import Gateway, GatewaySettings
from gatewaykit import Harness, backend

CONNECTIONS = 24


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness(workers=1)
    yield harness
    harness.close()


def _wait(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _prefix(request_id: str) -> str:
    return request_id.rsplit("-", 1)[0]


def _own_prefix(h: Harness) -> str:
    return _prefix(h.call(h.gateway.new_request_id).decode())


def _fan_out(url: str, n: int = CONNECTIONS, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    """``n`` requests at once, each on a connection of its own."""

    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=10) as c:
            return c.get(url, headers=headers)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _served_by_worker(h: Harness, url: str, headers: dict[str, str] | None = None,
                      tries: int = 10) -> list[httpx.Response]:
    """Fan out until the worker served at least one request; every response of the last round."""
    own = _own_prefix(h)
    for _ in range(tries):
        responses = _fan_out(url, headers=headers)
        prefixes = {_prefix(r.json()["headers"]["x-request-id"]) for r in responses if r.status_code == 200}
        if prefixes - {own}:
            return responses
    raise AssertionError(f"no request reached the worker in {tries} rounds of {CONNECTIONS} connections")


def test_a_worker_serves_the_agents_listeners_and_reports_every_request(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app))
    base = h.listen("external")
    assert len(h.gateway.workers.pids()) == 1
    responses = _served_by_worker(h, f"{base}/shop/api/v1/items")
    assert all(r.status_code == 200 and r.json()["app"] == "a" for r in responses)
    assert all(r.json()["headers"]["x-forwarded-prefix"] == "/shop/api/v1" for r in responses)
    served = app.requests
    # every request, whichever process served it, reaches the agent's access log and counters
    _wait(lambda: len(h.log) == served)
    assert len({e["request_id"] for e in h.log}) == served
    assert {e["component"] for e in h.log} == {"api"} and {e["status"] for e in h.log} == {200}
    assert {_prefix(e["request_id"]) for e in h.log} - {_own_prefix(h)}
    text = h.call(h.gateway.metrics.prometheus)
    line = next(x for x in text.splitlines() if x.startswith("cellplane_gateway_requests_total{")
                and 'component="api"' in x)
    assert int(line.rsplit(" ", 1)[1]) == served


def test_route_tables_and_grants_reach_the_worker(h: Harness) -> None:
    a, b = h.app("a"), h.app("b")
    h.routes(backend("shop", "api", a))
    base = h.listen("external")
    _served_by_worker(h, f"{base}/shop/api/v1/")
    h.routes(backend("shop", "api", b))  # a new table, confirmed by the worker: no process answers from the old one
    responses = _served_by_worker(h, f"{base}/shop/api/v1/")
    assert {r.json()["app"] for r in responses} == {"b"}
    h.routes()
    assert {r.status_code for r in _fan_out(f"{base}/shop/api/v1/")} == {404}
    # an API key of a connection, checked by whichever process holds the connection
    grant = Grant("ck", secret_digest(b"the-key"), "dev", "web", "ui", ("shop", "api", "api"))
    h.routes(backend("shop", "api", b, visibility=("Organization",)), grants=(grant,))
    internal = h.listen("internal")
    responses = _served_by_worker(h, f"{internal}/shop/api/v1/", headers={"Choreo-API-Key": "the-key"})
    assert {r.status_code for r in responses} == {200}
    assert {r.status_code for r in _fan_out(f"{internal}/shop/api/v1/", headers={"Choreo-API-Key": "wrong"})} == {403}


def test_drain_waits_for_the_workers_requests(h: Harness) -> None:
    old, new = h.app("old"), h.app("new")
    h.routes(backend("shop", "api", old))
    base = h.listen("external")
    with ThreadPoolExecutor(1) as pool:
        for round_ in range(1, 41):
            slow = pool.submit(lambda: httpx.get(f"{base}/shop/api/v1/slow?s=1", timeout=10))
            _wait(lambda n=round_: old.requests == n)  # the request is at the app
            if h.call(h.gateway.inflight, old.upstream) == 0:  # held by the worker, not by the agent's process
                break
            assert slow.result().status_code == 200
        else:
            raise AssertionError("no request reached the worker in 40 connections")
        h.routes(backend("shop", "api", new))
        started = time.monotonic()
        drained = h.run(h.gateway.drain([old.upstream], timeout=10))
        waited = time.monotonic() - started
        assert drained and waited > 0.5  # the request was still running in the worker
        assert slow.result().status_code == 200


def test_a_worker_that_dies_is_replaced_and_close_stops_it_with_its_last_requests() -> None:
    h = Harness(workers=1)
    try:
        app = h.app("a")
        h.routes(backend("shop", "api", app))
        base = h.listen("external")
        first = h.gateway.workers.pids()
        os.kill(first[0], signal.SIGKILL)
        _wait(lambda: h.gateway.workers.pids() not in ([], first))
        responses = _served_by_worker(h, f"{base}/shop/api/v1/")  # the new worker has the routes and listener
        assert {r.status_code for r in responses} == {200}
        second = h.gateway.workers.pids()[0]
    finally:
        h.close()
    # closing waits for the worker to report and exit: nothing is left to poll for
    assert len(h.log) == app.requests
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)


def test_a_worker_leaves_sigint_and_sigterm_to_the_agent(h: Harness) -> None:
    # A terminal's Ctrl-C reaches the whole process group: the agent stops its workers itself, after their
    # last requests are reported, so a worker must not stop on its own first.
    app = h.app("a")
    h.routes(backend("shop", "api", app))
    base = h.listen("external")
    pid = h.gateway.workers.pids()[0]
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)
    assert h.gateway.workers.pids() == [pid]
    responses = _served_by_worker(h, f"{base}/shop/api/v1/")
    assert {r.status_code for r in responses} == {200}


def test_closing_a_listener_closes_it_in_the_worker_too(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app))
    base = h.listen("external")
    _served_by_worker(h, f"{base}/shop/api/v1/")
    clients = [httpx.Client(timeout=5) for _ in range(CONNECTIONS)]
    try:
        assert {c.get(f"{base}/shop/api/v1/").status_code for c in clients} == {200}
        h.run(h.gateway.close_listener("external/dev"))
        # the worker cuts its connections too (a bounded wait, generous: the worker hears of it over its control pipe,
        # and on a machine as busy as CI's with helpers beside it that took more than 10 s once)
        _wait(lambda: not any(_alive(c, base) for c in clients), timeout=30.0)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/shop/api/v1/", timeout=2)
    finally:
        for c in clients:
            c.close()


def _alive(client: httpx.Client, base: str) -> bool:
    try:
        client.get(f"{base}/shop/api/v1/")
    except httpx.TransportError:
        return False
    return True


def test_a_listener_closed_while_the_worker_opens_it_ends_closed(h: Harness) -> None:
    async def open_and_close() -> int:
        port = await h.gateway.ensure_listener(ListenerSpec("external", "brief"))
        await h.gateway.close_listener("external/brief")  # the worker may still be opening it
        return port

    port = h.run(open_and_close())
    h.routes()  # confirmed once the worker opened and closed the listener (both came before this table)
    for _ in range(20):  # nobody accepts on the port any more: not the agent, not the worker
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        time.sleep(0.05)


def test_sampling_rates_are_divided_among_the_processes() -> None:
    settings = GatewaySettings(trace_rate=100, trace_burst=200, hop_rate=1000, hop_burst=0)
    one_of_four = Gateway(settings, share=4)
    assert (one_of_four.trace_bucket.rate, one_of_four.trace_bucket.burst) == (25, 50)
    assert (one_of_four.hop_bucket.rate, one_of_four.hop_bucket.burst) == (250, 0)  # none stays none
    alone = Gateway(settings)
    assert (alone.trace_bucket.rate, alone.trace_bucket.burst) == (100, 200)
