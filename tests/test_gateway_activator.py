"""The gateway's activator: requests for a deployment at zero replicas are held, the deployment woken once, and the
requests forwarded as soon as a replica is routed; and the demand the data plane's scaler reads.

A real ``Gateway`` on a uvloop thread (tests/gatewaykit.py), real HTTP over 127.0.0.1, and a test data plane
(``WakePlane``) that, when woken, starts a real upstream app after a delay and pushes a route table with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from cellplane.gateway.demand import Demand
from cellplane.gateway.server import GatewaySettings
from gatewaykit import Harness, WakePlane, backend, frame, pattern, pattern_digest, read_frame

PATH = "/shop/api/v1/items"


def _wait(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _open(plane: WakePlane, settings: GatewaySettings | None = None, workers: int = 0) -> Harness:
    h = Harness(settings, workers=workers, wake=plane.wake)
    plane.attach(h)
    return h


@pytest.fixture
def plane() -> WakePlane:
    return WakePlane()


@pytest.fixture
def h(plane: WakePlane) -> Iterator[Harness]:
    harness = _open(plane)
    yield harness
    harness.close()


def _held(h: Harness, deployment: str = "dep-1") -> int:
    return h.call(h.gateway.activator.held).get(deployment, 0)


class Totals:
    """``Gateway.demand`` read repeatedly (each call resets its counts): the counts added up, the last levels."""

    def __init__(self, h: Harness, deployment: str = "dep-1") -> None:
        self.h = h
        self.deployment = deployment
        self.total = Demand()
        self.last = Demand()

    def read(self) -> Demand:
        demand = self.h.call(self.h.gateway.demand).get(self.deployment, Demand())
        self.last = demand
        self.total.requests += demand.requests
        self.total.cold_starts += demand.cold_starts
        self.total.cold_start_seconds += demand.cold_start_seconds
        return demand


def _get_many(url: str, n: int) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=30) as c:
            return c.get(url)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


class Background:
    """A request sent from a thread of its own, its response (or error) kept."""

    def __init__(self, send: Callable[[], httpx.Response]) -> None:
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(send,), daemon=True)
        self.thread.start()

    def _run(self, send: Callable[[], httpx.Response]) -> None:
        try:
            self.response = send()
        except BaseException as e:
            self.error = e

    def result(self, timeout: float = 30) -> httpx.Response:
        self.thread.join(timeout)
        assert self.error is None, self.error
        assert self.response is not None, "no response in time"
        return self.response


def _get_later(url: str) -> Background:
    return Background(lambda: httpx.get(url, timeout=30))


def test_fifty_concurrent_first_requests_all_succeed_and_wake_the_deployment_exactly_once(
        h: Harness, plane: WakePlane) -> None:
    base = h.listen("external")
    responses = _get_many(base + PATH, 50)
    assert [r.status_code for r in responses] == [200] * 50
    assert plane.wakes == ["dep-1"]
    assert {r.json()["app"] for r in responses} == {"woken"}
    cold = [float(r.headers["x-cellplane-cold-start"]) for r in responses if "x-cellplane-cold-start" in r.headers]
    assert cold and all(seconds >= 0 for seconds in cold)  # the ones that came after the replica are warm
    totals = Totals(h)
    demand = totals.read()
    assert (demand.requests, demand.cold_starts, demand.held, demand.inflight) == (50, 1, 0, 0)
    assert demand.cold_start_seconds > 0
    text = h.gateway.metrics.prometheus()
    assert 'cellplane_gateway_cold_starts_total{environment="dev",project="shop",component="api"} 1' in text
    assert "cellplane_gateway_cold_start_seconds_total{" in text
    # warm now: no header, no wake
    warm = httpx.get(base + PATH)
    assert warm.status_code == 200 and "x-cellplane-cold-start" not in warm.headers
    assert plane.wakes == ["dep-1"]


def test_held_requests_are_forwarded_as_soon_as_the_upstream_is_routed() -> None:
    plane = WakePlane(auto=False)
    h = _open(plane)
    try:
        base = h.listen("external")
        waiting = [_get_later(base + PATH) for _ in range(3)]
        _wait(lambda: _held(h) == 3)
        assert plane.wakes == ["dep-1"]
        assert all(w.response is None for w in waiting)
        plane.start()
        responses = [w.result() for w in waiting]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert all("x-cellplane-cold-start" in r.headers for r in responses)
        assert _held(h) == 0
        # the deployment goes back to zero (its replica left the routes): the next request wakes it again
        plane.route_at_zero()
        again = _get_later(base + PATH)
        _wait(lambda: _held(h) == 1)
        assert plane.wakes == ["dep-1", "dep-1"]
        plane.start()
        assert again.result().status_code == 200
    finally:
        h.close()


def test_a_full_queue_answers_503_with_retry_after_and_the_held_requests_still_succeed() -> None:
    plane = WakePlane(auto=False)
    h = _open(plane, GatewaySettings(hold_queue=3))
    try:
        base = h.listen("external")
        waiting = [_get_later(base + PATH) for _ in range(3)]
        _wait(lambda: _held(h) == 3)
        refused = [httpx.get(base + PATH, timeout=10) for _ in range(2)]
        for r in refused:
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "wake-queue-full"
        plane.start()
        assert [w.result().status_code for w in waiting] == [200, 200, 200]
        assert plane.wakes == ["dep-1"]
        # (an access-log line is written just after its response: wait for the last one)
        _wait(lambda: sorted(e["status"] for e in h.log) == [200, 200, 200, 503, 503])
    finally:
        h.close()


def test_a_wake_up_that_outlasts_the_hold_timeout_answers_504_and_the_next_request_wakes_again() -> None:
    plane = WakePlane(auto=False)
    h = _open(plane, GatewaySettings(hold_timeout=0.3))
    try:
        base = h.listen("external")
        r = httpx.get(base + PATH, timeout=10)
        assert r.status_code == 504
        error = r.json()["error"]
        assert error["code"] == "wake-timeout"
        assert "no replica of shop/api became ready within 0.3s" in error["message"]
        assert _held(h) == 0
        assert plane.wakes == ["dep-1"]
        # the episode ended with its timeout: a lost wake-up does not hold the deployment's requests forever
        later = _get_later(base + PATH)
        _wait(lambda: len(plane.wakes) == 2)
        plane.start()
        assert later.result().status_code == 200
    finally:
        h.close()


def test_a_failed_wake_up_answers_the_held_requests_at_once_with_the_reason() -> None:
    plane = WakePlane(auto=False)
    h = _open(plane)
    try:
        base = h.listen("external")
        waiting = [_get_later(base + PATH) for _ in range(4)]
        _wait(lambda: _held(h) == 4)
        h.call(h.gateway.wake_failed, "dep-1", "replica 0 exited with code 3: ImportError: no module named flask")
        for w in waiting:
            r = w.result()
            assert r.status_code == 503
            error = r.json()["error"]
            assert error["code"] == "wake-failed"
            assert "replica 0 exited with code 3: ImportError: no module named flask" in error["message"]
        assert _held(h) == 0
        # the next request begins a new episode
        later = _get_later(base + PATH)
        _wait(lambda: len(plane.wakes) == 2)
        plane.start()
        assert later.result().status_code == 200
    finally:
        h.close()


def test_a_data_plane_that_reports_the_failure_fails_concurrent_first_requests() -> None:
    plane = WakePlane(fail="replica 0 exited with code 1: boom")
    h = _open(plane)
    try:
        responses = _get_many(h.listen("external") + PATH, 10)
        assert {r.status_code for r in responses} == {503}
        assert all("boom" in r.json()["error"]["message"] for r in responses)
        assert plane.wakes == ["dep-1"]
    finally:
        h.close()


def test_a_client_that_disconnects_while_held_leaves_the_queue_without_another_wake() -> None:
    plane = WakePlane(auto=False)
    h = _open(plane)
    try:
        base = h.listen("external")
        port = int(base.rsplit(":", 1)[1])
        sockets = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sockets.append(s)
        _wait(lambda: _held(h) == 3)
        sockets[0].close()  # a plain close
        _wait(lambda: _held(h) == 2)
        sockets[1].shutdown(socket.SHUT_WR)  # half-closed: the held request is dropped as well
        _wait(lambda: _held(h) == 1)
        assert plane.wakes == ["dep-1"]
        assert [e["status"] for e in h.log] == [499, 499]
        plane.start()
        sockets[2].settimeout(10)
        assert sockets[2].recv(65536).startswith(b"HTTP/1.1 200 ")
        for s in sockets[1:]:
            s.close()
        assert plane.wakes == ["dep-1"]
    finally:
        h.close()


def test_the_gateways_own_health_endpoint_answers_on_every_listener_and_never_wakes_anything(
        h: Harness, plane: WakePlane) -> None:
    urls = [h.listen("external"), h.listen("internal")]
    cell = h.listen("cell", project="shop")
    urls.append(cell)
    urls.append(cell.split("/_cell/")[0])  # a cell listener's health needs no credential
    for url in urls:
        r = httpx.get(url + "/_cellplane/health")
        assert r.status_code == 200, url
        assert r.json() == {"status": "ok"}
        assert httpx.head(url + "/_cellplane/health").status_code == 200
    assert httpx.post(urls[0] + "/_cellplane/health").status_code == 405
    assert plane.wakes == []
    _wait(lambda: len(h.log) == 1)  # health checks are not logged (a refusal is, just after its response)
    assert h.log[0]["status"] == 405
    assert Totals(h).read() == Demand()


def test_a_post_with_a_body_is_held_then_forwarded_intact() -> None:
    plane = WakePlane(auto=False)
    h = _open(plane)
    try:
        base = h.listen("external")
        size = 1024 * 1024 + 17  # beyond what the gateway holds before pausing the client
        waiting = Background(lambda: httpx.post(base + PATH, content=b"".join(pattern(size)), timeout=30))
        _wait(lambda: _held(h) == 1)
        plane.start()
        r = waiting.result()
        assert r.status_code == 200
        echo = r.json()
        assert echo["method"] == "POST"
        assert (echo["body_len"], echo["body_sha256"]) == (size, pattern_digest(size))
        chunked = Background(lambda: httpx.post(base + PATH, content=iter([b"a" * 1000, b"b" * 5]), timeout=30))
        assert chunked.result().json()["body_len"] == 1005
    finally:
        h.close()


def test_a_backend_with_upstreams_never_touches_the_activator(h: Harness, plane: WakePlane) -> None:
    app = h.app("warm")
    h.routes(plane.backend(app), backend("shop", "plain"))
    base = h.listen("external")
    responses = _get_many(base + PATH, 20)
    assert {r.status_code for r in responses} == {200}
    assert all("x-cellplane-cold-start" not in r.headers for r in responses)
    # a backend without ``wake`` and without upstreams answers 503 at once, as before
    r = httpx.get(base + "/shop/plain/v1/")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert plane.wakes == []
    activator = h.gateway.activator
    assert (activator.queues, activator.episodes) == ({}, {})
    demand = Totals(h).read()
    assert (demand.requests, demand.held, demand.cold_starts) == (20, 0, 0)


def _websocket(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def _frame_of(data: bytes) -> tuple[int, bytes]:
    """The one WebSocket frame in ``data``."""
    loop = asyncio.new_event_loop()
    try:
        reader = asyncio.StreamReader(loop=loop)
        reader.feed_data(data)
        return loop.run_until_complete(read_frame(reader))
    finally:
        loop.close()


def test_demand_counts_requests_in_flight_websocket_tunnels_and_held_requests(h: Harness, plane: WakePlane) -> None:
    app = h.app("warm")
    other = h.app("other")
    h.routes(plane.backend(app), backend("shop", "cart", other, deployment="dep-2"))
    base = h.listen("external")
    port = int(base.rsplit(":", 1)[1])
    totals = Totals(h)
    totals.read()
    assert set(h.call(h.gateway.demand)) == {"dep-1", "dep-2"}  # every routed deployment, idle ones at zero
    slow = [_get_later(base + "/shop/api/v1/slow?s=3") for _ in range(2)]
    ws = _websocket(port, "/shop/api/v1/ws")
    _wait(lambda: totals.read().inflight == 3)
    assert totals.last.held == 0
    ws.sendall(frame(1, b"hi"))
    assert _frame_of(ws.recv(1024)) == (1, b"echo: hi")
    ws.close()
    for request in slow:
        assert request.result().status_code == 200
    _wait(lambda: totals.read().inflight == 0)
    assert totals.total.requests == 3
    assert h.call(h.gateway.demand)["dep-2"] == Demand()  # another deployment's requests are its own
    # at zero: held requests count as in flight too, and as held
    plane.auto = False
    plane.route_at_zero()
    held = [_get_later(base + PATH) for _ in range(2)]
    _wait(lambda: totals.read().held == 2)
    assert totals.last.inflight == 2
    plane.start()
    assert [r.result().status_code for r in held] == [200, 200]
    _wait(lambda: totals.read().held == 0)
    assert (totals.total.requests, totals.total.cold_starts) == (5, 1)


def test_held_requests_of_a_deployment_that_leaves_the_routes_are_answered(h: Harness, plane: WakePlane) -> None:
    plane.auto = False
    base = h.listen("external")
    waiting = _get_later(base + PATH)
    _wait(lambda: _held(h) == 1)
    h.routes()  # undeployed
    r = waiting.result()
    assert r.status_code == 503
    assert "no longer routed" in r.json()["error"]["message"]
    assert json.loads(r.text)["error"]["code"] == "unavailable"


def test_a_request_the_listener_refuses_never_wakes_the_deployment(h: Harness, plane: WakePlane) -> None:
    bare_cell = h.listen("cell", project="shop").split("/_cell/")[0]
    assert httpx.get(bare_cell + PATH).status_code == 403  # no cell credential
    assert httpx.get(h.listen("external") + "/shop/nothing/v1/").status_code == 404
    assert plane.wakes == []
    assert h.call(h.gateway.activator.held) == {}


def test_a_connection_from_another_component_wakes_the_deployment_through_the_cell_listener(
        h: Harness, plane: WakePlane) -> None:
    cell = h.listen("cell", project="shop")
    responses = _get_many(cell + PATH, 5)
    assert [r.status_code for r in responses] == [200] * 5
    assert plane.wakes == ["dep-1"]


def test_a_websocket_upgrade_is_held_then_tunnelled_to_the_woken_replica(h: Harness, plane: WakePlane) -> None:
    port = int(h.listen("external").rsplit(":", 1)[1])
    ws = _websocket(port, "/shop/api/v1/ws")
    try:
        ws.sendall(frame(1, b"after the cold start"))
        expected = b"echo: after the cold start"
        data = b""
        while len(data) < 2 + len(expected):  # a server's frame: two head bytes, no mask
            piece = ws.recv(1024)
            assert piece, "the tunnel closed"
            data += piece
        assert _frame_of(data) == (1, expected)
    finally:
        ws.close()
    assert plane.wakes == ["dep-1"]
    _wait(lambda: Totals(h).read().inflight == 0)
