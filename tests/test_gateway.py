"""The gateway on real sockets: routing, policy per listener kind, credentials and tokens, streaming,
WebSocket tunnels, keep-alive pools, load balancing, retries, circuit breakers, limits, access log, metrics,
route updates and draining.

The gateway and small upstream apps (tests/gatewaykit.py) run on a uvloop loop in a background thread; the
tests talk to it with httpx and raw sockets.
"""

from __future__ import annotations

import hashlib
import resource
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from cellplane.gateway.auth import secret_digest
from cellplane.gateway.routes import Grant, Upstream
from cellplane.gateway.server import GatewaySettings
from gatewaykit import App, Harness, backend, frame, free_port, pattern, pattern_digest, port_of, raw_request

MB = 1024 * 1024
KEY = "the-api-key-of-shop-front"
GRANT = Grant("ck_front", secret_digest(KEY.encode()), "dev", "shop", "front", ("sales", "orders", "api"))


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def make(**settings: Any) -> Harness:
    return Harness(GatewaySettings(**settings))


# -- routing ---------------------------------------------------------------------------------------------------

def test_routes_by_prefix_and_the_longest_base_path_on_segment_boundaries(h: Harness) -> None:
    root, admin = h.app("root"), h.app("admin")
    h.routes(backend("shop", "api", root), backend("shop", "api", admin, endpoint="admin", base_path="/admin"))
    url = h.listen("external")
    with httpx.Client(base_url=url) as c:
        seen = {path: c.get(path).json() for path in (
            "/shop/api/v1/x/y?q=1&r=%20", "/shop/api/v1/admin", "/shop/api/v1/admin/users?all=1",
            "/shop/api/v1/administrator", "/shop/api/v1", "/shop/api/v1?q=2")}
        assert {p: (s["app"], s["path"]) for p, s in seen.items()} == {
            "/shop/api/v1/x/y?q=1&r=%20": ("root", "/x/y?q=1&r=%20"),
            "/shop/api/v1/admin": ("admin", "/admin"),
            "/shop/api/v1/admin/users?all=1": ("admin", "/admin/users?all=1"),
            "/shop/api/v1/administrator": ("root", "/administrator"),
            "/shop/api/v1": ("root", "/"),
            "/shop/api/v1?q=2": ("root", "/?q=2"),
        }
        for path in ("/shop/api/v2/x", "/shop/other/v1/", "/shop", "/", "/sales/api/v1/"):
            r = c.get(path)
            assert r.status_code == 404, path
            assert r.headers["content-type"] == "application/json"
            assert r.json()["error"]["code"] == "not-found"
        # dot segments could lead the replica to another endpoint than the one whose visibility was checked
        r = c.get("/shop/api/v1/x/%2e%2e/admin/users")
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "bad-request"
    # environments do not see each other's routes
    assert httpx.get(h.listen("external", "prod") + "/shop/api/v1/").status_code == 404


def test_forwarded_headers_and_hop_by_hop_removal(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app))
    url = h.listen("external")
    with httpx.Client(base_url=url) as c:
        seen = c.get("/shop/api/v1/h", headers={
            "Host": "shop.example", "X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "https",
            "Connection": "keep-alive, X-Private", "X-Private": "hop", "Keep-Alive": "timeout=5", "TE": "trailers",
            "Proxy-Authorization": "Basic eA==", "X-Kept": "yes", "Authorization": "Bearer app-own-token",
        }).json()["headers"]
        assert seen["host"] == "shop.example"
        assert seen["x-forwarded-for"] == "127.0.0.1"  # the external listener believes no client's claim
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == "shop.example"
        assert seen["x-forwarded-prefix"] == "/shop/api/v1"
        assert seen["x-kept"] == "yes"
        assert seen["authorization"] == "Bearer app-own-token"  # not a gateway token: the workload's business
        assert seen["x-request-id"]
        for hop in ("connection", "x-private", "keep-alive", "te", "proxy-authorization", "upgrade"):
            assert hop not in seen
        assert c.get("/shop/api/v1/", headers={"X-Request-Id": "req-42"}).json()["headers"]["x-request-id"] == \
            "req-42"
        assert h.log[-1]["request_id"] == "req-42"


# -- policy per listener kind ----------------------------------------------------------------------------------

def policy_routes(h: Harness) -> tuple[App, App, App]:
    public, org, private = h.app("public"), h.app("org"), h.app("private")
    h.routes(backend("shop", "front", public),
             backend("sales", "orders", org, visibility=("Organization",)),
             backend("sales", "ledger", private, visibility=("Project",)),
             grants=(GRANT,))
    return public, org, private


def test_external_listener_serves_public_endpoints_only(h: Harness) -> None:
    policy_routes(h)
    url = h.listen("external")
    assert httpx.get(url + "/shop/front/v1/").json()["app"] == "public"
    for path, words in (("/sales/orders/v1/", "organization"), ("/sales/ledger/v1/", "project sales only")):
        r = httpx.get(url + path, headers={"Choreo-API-Key": KEY})
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "forbidden"
        assert words in r.json()["error"]["message"]
    assert h.log[-1]["decision"] == "denied" and "project sales only" in h.log[-1]["reason"]


def test_internal_listener_needs_the_credentials_of_a_connection_to_that_endpoint(h: Harness) -> None:
    policy_routes(h)
    url = h.listen("internal")
    with httpx.Client(base_url=url) as c:
        r = c.get("/sales/orders/v1/")
        assert r.status_code == 403
        assert "no connection credentials for sales/orders/api" in r.json()["error"]["message"]
        assert c.get("/sales/orders/v1/", headers={"Choreo-API-Key": "not-a-key"}).status_code == 403
        for header in ("Choreo-API-Key", "X-API-Key"):
            r = c.get("/sales/orders/v1/x", headers={header: KEY})
            assert r.status_code == 200, r.text
            assert r.json()["app"] == "org"
            assert "choreo-api-key" not in r.json()["headers"] and "x-api-key" not in r.json()["headers"]
        assert h.log[-1]["consumer"] == "shop/front"
        # the key opens its own target only; Project endpoints never; Public ones need credentials here too
        r = c.get("/sales/ledger/v1/", headers={"Choreo-API-Key": KEY})
        assert r.status_code == 403 and "project sales only" in r.json()["error"]["message"]
        assert c.get("/shop/front/v1/", headers={"Choreo-API-Key": KEY}).status_code == 403
        assert c.get("/shop/front/v1/").status_code == 403
    # grants are per environment
    other_env = h.listen("internal", "prod")
    h.routes(backend("sales", "orders", h.apps[1], visibility=("Organization",), environment="prod"), grants=(GRANT,))
    assert httpx.get(other_env + "/sales/orders/v1/", headers={"Choreo-API-Key": KEY}).status_code == 403


def test_bearer_tokens_from_the_token_endpoint(h: Harness) -> None:
    policy_routes(h)
    url = h.listen("internal")
    with httpx.Client(base_url=url) as c:
        r = c.post("/_cellplane/token", data={"grant_type": "client_credentials"}, auth=("ck_front", KEY))
        assert r.status_code == 200, r.text
        token = r.json()
        assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
        assert r.headers["cache-control"] == "no-store"
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        r = c.get("/sales/orders/v1/", headers=bearer)
        assert r.status_code == 200, r.text
        assert "authorization" not in r.json()["headers"]  # the gateway's credential stays at the gateway
        assert c.get("/sales/ledger/v1/", headers=bearer).status_code == 403
        # form fields work as well as HTTP Basic
        r = c.post("/_cellplane/token", data={"grant_type": "client_credentials", "client_id": "ck_front",
                                              "client_secret": KEY})
        assert r.status_code == 200
        # refusals, the OAuth2 way
        r = c.post("/_cellplane/token", data={"grant_type": "client_credentials"}, auth=("ck_front", "wrong"))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
        assert c.post("/_cellplane/token", data={}, auth=("ck_front", KEY)).json()["error"] == "invalid_request"
        assert c.post("/_cellplane/token", data={"grant_type": "password"},
                      auth=("ck_front", KEY)).json()["error"] == "unsupported_grant_type"
        assert c.get("/_cellplane/token").status_code == 405
        forged = token["access_token"][:-2] + ("AA" if not token["access_token"].endswith("AA") else "BB")
        assert c.get("/sales/orders/v1/", headers={"Authorization": f"Bearer {forged}"}).status_code == 403
        # a token is only good while its grant exists
        h.routes(*h.gateway.index.table.backends)
        r = c.get("/sales/orders/v1/", headers=bearer)
        assert r.status_code == 403 and "does not lead to" in r.json()["error"]["message"]
    # only the internal listener issues tokens
    assert httpx.post(h.listen("external") + "/_cellplane/token", data={"grant_type": "client_credentials"},
                      auth=("ck_front", KEY)).status_code == 404


def test_cell_listener_serves_its_own_project_only(h: Harness) -> None:
    policy_routes(h)
    sales = h.listen("cell", "dev", "sales")
    assert httpx.get(sales + "/sales/ledger/v1/").json()["app"] == "private"
    assert httpx.get(sales + "/sales/orders/v1/").json()["app"] == "org"
    r = httpx.get(sales + "/shop/front/v1/")
    assert r.status_code == 403 and "cell listener of project sales" in r.json()["error"]["message"]
    assert httpx.get(h.listen("cell", "dev", "shop") + "/sales/ledger/v1/").status_code == 403
    assert set(h.gateway.listeners()) == {"cell/dev/sales", "cell/dev/shop"}


def test_no_ready_replica_is_503(h: Harness) -> None:
    h.routes(backend("shop", "api"))
    r = httpx.get(h.listen("external") + "/shop/api/v1/")
    assert r.status_code == 503
    assert r.json() == {"error": {"code": "unavailable", "message": "no ready replica of shop/api"}}
    assert h.log[-1]["decision"] == "unavailable"


# -- streaming -------------------------------------------------------------------------------------------------

def test_large_bodies_stream_both_ways(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app))
    url = h.listen("external")
    size = 50 * MB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with httpx.Client(base_url=url, timeout=60) as c:
        # upload, chunked (a generator) and with a Content-Length
        got = c.post("/shop/api/v1/up", content=pattern(size)).json()
        assert got["headers"]["transfer-encoding"] == "chunked"
        assert (got["body_len"], got["body_sha256"]) == (size, pattern_digest(size))
        got = c.put("/shop/api/v1/up", content=pattern(size), headers={"Content-Length": str(size)}).json()
        assert got["headers"]["content-length"] == str(size)
        assert (got["body_len"], got["body_sha256"]) == (size, pattern_digest(size))
        # download: with a length, chunked, and delimited by the connection's end (re-chunked for the client)
        for mode, framing in (("length", "content-length"), ("chunked", "transfer-encoding"),
                              ("close", "transfer-encoding")):
            digest, n = hashlib.sha256(), 0
            with c.stream("GET", f"/shop/api/v1/download?n={size}&mode={mode}") as r:
                assert r.status_code == 200 and framing in r.headers
                for piece in r.iter_raw():
                    digest.update(piece)
                    n += len(piece)
            assert (n, digest.hexdigest()) == (size, pattern_digest(size)), mode
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 30, f"peak memory grew by {grown_mb:.0f} MB moving 250 MB: bodies are being buffered"


def test_websocket_upgrade_is_tunnelled(h: Harness) -> None:
    app = h.app("ws")
    h.routes(backend("shop", "chat", app))
    port = port_of(h.listen("external"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /shop/chat/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = _read_until(s, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        assert h.gateway.inflight(app.upstream) == 1
        for text in (b"hello", b"x" * 1000):
            s.sendall(frame(1, text))
            expected = frame(1, b"echo: " + text, mask=False)
            assert _read_exactly(s, len(expected)) == expected
        s.sendall(frame(8, b""))
        assert _read_exactly(s, 2) == b"\x88\x00"
        assert s.recv(10) == b""  # the replica closed: so does the tunnel
    _wait(lambda: h.gateway.inflight(app.upstream) == 0)
    assert h.log[-1]["status"] == 101


def test_a_client_leaving_mid_response_frees_the_replica(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app))
    url = h.listen("external")
    # 1 GiB: more than all the socket buffers on the way can hold, so the replica is still sending
    with httpx.Client(base_url=url) as c, c.stream("GET", f"/shop/api/v1/download?n={1024 * MB}") as r:
        next(r.iter_raw())
        assert h.gateway.inflight(app.upstream) == 1
    _wait(lambda: h.gateway.inflight(app.upstream) == 0)
    _wait(lambda: len(h.log) == 1)
    assert (h.log[0]["status"], h.log[0]["decision"]) == (200, "error")
    assert h.log[0]["reason"] == "the client closed the connection"


def test_a_replica_dying_mid_response_cuts_the_client_off(h: Harness) -> None:
    h.routes(backend("shop", "api", h.app("a")))
    url = h.listen("external")
    for mode in ("length", "chunked"):
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(url + f"/shop/api/v1/download?n={MB}&cut=1000&mode={mode}")
    assert h.log[-1]["decision"] == "error" and "closed the connection" in h.log[-1]["reason"]


def test_half_closed_clients_and_expect_continue(h: Harness) -> None:
    h.routes(backend("shop", "api", h.app("a")))
    port = port_of(h.listen("external"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /shop/api/v1/half HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        answer = _read_until(s, b"\0")  # everything, until the gateway closes
        assert answer.startswith(b"HTTP/1.1 200") and b'"/half"' in answer
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /shop/api/v1/up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert _read_until(s, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        answer = _read_until(s, b'"}')
        assert answer.startswith(b"HTTP/1.1 200") and b'"body_len": 5' in answer and b"expect" not in answer


# -- upstream connections, balancing, failures -----------------------------------------------------------------

def test_keep_alive_reuses_upstream_connections(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app))
    url = h.listen("external")
    with httpx.Client(base_url=url) as c:
        for _ in range(30):
            assert c.get("/shop/api/v1/").status_code == 200
    for _ in range(10):  # new client connections each time, same upstream connection
        assert httpx.get(url + "/shop/api/v1/").status_code == 200
    assert app.requests == 40
    assert app.connections == 1


def test_a_pooled_connection_the_replica_closed_is_retried_transparently() -> None:
    h = make(retries=0)
    try:
        app = h.app("a", drop_reused=True)
        h.routes(backend("shop", "api", app))
        with httpx.Client(base_url=h.listen("external")) as c:
            for method in ("GET", "POST", "DELETE", "GET"):
                assert c.request(method, "/shop/api/v1/").status_code == 200, method
            # a body may have been taken in already: not sent twice
            assert c.post("/shop/api/v1/", content=b"body").status_code == 502
        assert app.connections == 4  # one fresh connection per retry
    finally:
        h.close()


def test_round_robin_across_replicas(h: Harness) -> None:
    a, b = h.app("a"), h.app("b")
    h.routes(backend("shop", "api", a, b))
    with httpx.Client(base_url=h.listen("external")) as c:
        apps = [c.get("/shop/api/v1/").json()["app"] for _ in range(10)]
    assert apps in (["a", "b"] * 5, ["b", "a"] * 5)


def test_idempotent_requests_are_retried_on_a_replica_that_is_down() -> None:
    h = make(breaker_failures=1000)
    try:
        app = h.app("up")
        down = Upstream("127.0.0.1", free_port())
        h.routes(backend("shop", "api", down, app))
        with httpx.Client(base_url=h.listen("external")) as c:
            statuses = [c.get("/shop/api/v1/").status_code for _ in range(20)]
            assert statuses == [200] * 20
            # a POST with a body was not sent anywhere when the connect failed: it is retried too
            assert all(c.post("/shop/api/v1/", content=b"x").status_code == 200 for _ in range(4))
        assert app.requests == 24
        # every replica down: 502 after the retries, also while a large body is still coming in
        h.routes(backend("shop", "api", down, Upstream("127.0.0.1", free_port())))
        with httpx.Client(base_url=h.listen("external"), timeout=10) as c:
            r = c.get("/shop/api/v1/")
            assert r.status_code == 502 and r.json()["error"]["code"] == "bad-gateway"
            assert c.post("/shop/api/v1/", content=pattern(20 * MB)).status_code == 502
            assert c.get("/shop/api/v1/").status_code == 502  # and the connection is still usable
    finally:
        h.close()


def test_a_503_is_retried_for_idempotent_requests_only(h: Harness) -> None:
    good, bad = h.app("good"), h.app("bad", fail_with=503)
    h.routes(backend("shop", "api", good, bad))
    with httpx.Client(base_url=h.listen("external")) as c:
        assert [c.get("/shop/api/v1/").status_code for _ in range(10)] == [200] * 10
        assert sorted(c.post("/shop/api/v1/", content=b"x").status_code for _ in range(4)) == [200, 200, 503, 503]
    h.routes(backend("shop", "api", bad))
    before = bad.requests
    assert httpx.get(h.listen("external") + "/shop/api/v1/").status_code == 503  # the replica's own, after retries
    assert bad.requests - before == 3


def test_circuit_breaker_opens_and_half_opens() -> None:
    h = make(retries=0, breaker_failures=2, breaker_reset=0.5)
    try:
        app = h.app("up")
        down = Upstream("127.0.0.1", free_port())
        h.routes(backend("shop", "api", down, app))
        with httpx.Client(base_url=h.listen("external")) as c:
            statuses = [c.get("/shop/api/v1/").status_code for _ in range(12)]
            assert statuses.count(502) == 2  # then the circuit is open and only the live replica gets requests
            time.sleep(0.6)
            statuses = [c.get("/shop/api/v1/").status_code for _ in range(6)]
            assert statuses.count(502) == 1  # one half-open trial, which failed: open again
        h.routes(backend("shop", "api", down))
        time.sleep(0.6)
        with httpx.Client(base_url=h.listen("external")) as c:
            assert c.get("/shop/api/v1/").status_code == 502  # the trial
            r = c.get("/shop/api/v1/")
            assert r.status_code == 503 and "failing" in r.json()["error"]["message"]
    finally:
        h.close()


def test_read_timeout_is_504() -> None:
    h = make(read_timeout=0.3)
    try:
        h.routes(backend("shop", "api", h.app("slow")))
        started = time.monotonic()
        r = httpx.get(h.listen("external") + "/shop/api/v1/slow?s=3", timeout=10)
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream-timeout"
        assert time.monotonic() - started < 2
    finally:
        h.close()


def test_a_replica_that_stops_reading_times_out_without_wedging_the_client() -> None:
    h = make(read_timeout=0.5)
    stuck = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(stuck.accept()[0]), daemon=True).start()
    try:
        h.routes(backend("shop", "api", Upstream("127.0.0.1", stuck.getsockname()[1]), h.app("a")))
        with httpx.Client(base_url=h.listen("external"), timeout=10) as c:
            # the replica's socket buffers fill up: the gateway stops reading the client, then times out
            r = c.post("/shop/api/v1/", content=pattern(50 * MB))
            assert r.status_code == 504, r.text
            assert c.get("/shop/api/v1/").status_code == 200  # the client connection goes on
    finally:
        h.close()
        for s in [stuck, *accepted]:
            s.close()


# -- the client side: limits, HTTP/1.0, HEAD, pipelining, idle ---------------------------------------------------

def test_header_limits_and_malformed_requests() -> None:
    h = make(max_header_bytes=4096, max_headers=20)
    try:
        h.routes(backend("shop", "api", h.app("a")))
        url = h.listen("external")
        port = port_of(url)
        many = "".join(f"X-H{i}: v\r\n" for i in range(30))
        assert raw_request(port, f"GET /shop/api/v1/ HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode()).startswith(
            b"HTTP/1.1 431")
        big = "X-Big: " + "v" * 5000 + "\r\n"
        answer = raw_request(port, f"GET /shop/api/v1/ HTTP/1.1\r\nHost: x\r\n{big}\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 431") and b"header-too-large" in answer
        # a head that never ends is cut off too, without waiting for the end
        assert raw_request(port, b"GET /shop/api/v1/ HTTP/1.1\r\nX-Endless: " + b"v" * 20000).startswith(
            b"HTTP/1.1 431")
        answer = raw_request(port, b"GARBAGE\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400") and b"Connection: close" in answer
        assert httpx.get(url + "/shop/api/v1/", headers={f"X-H{i}": "v" for i in range(10)}).status_code == 200
    finally:
        h.close()


def test_a_pipelined_head_after_a_large_body_is_not_counted_with_it() -> None:
    h = make(max_header_bytes=4096)
    try:
        h.routes(backend("shop", "api", h.app("a")))
        with socket.create_connection(("127.0.0.1", port_of(h.listen("external"))), timeout=5) as s:
            # one write: a request whose body is larger than the head limit, and the start of the next head
            s.sendall(b"POST /shop/api/v1/first HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000
                      + b"GET /shop/api/v1/last HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.3)
            s.sendall(b"Connection: close\r\n\r\n")
            answer = _read_all(s)
        assert answer.count(b"HTTP/1.1 200") == 2 and b"431" not in answer, answer[:500]
        assert b'"path": "/last"' in answer
    finally:
        h.close()


def _read_all(s: socket.socket) -> bytes:
    chunks = []
    while piece := s.recv(65536):
        chunks.append(piece)
    return b"".join(chunks)


def test_http10_head_204_and_pipelining(h: Harness) -> None:
    h.routes(backend("shop", "api", h.app("a")))
    port = port_of(h.listen("external"))
    # HTTP/1.0: no Host needed, answered and closed; a chunked replica response is sent delimited by the close
    answer = raw_request(port, b"GET /shop/api/v1/download?n=1000&mode=chunked HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert body == b"".join(pattern(1000))
    # pipelined: HEAD (no body even with a Content-Length), 204, a GET, answered in order on one connection
    answer = raw_request(port, b"HEAD /shop/api/v1/ HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /shop/api/v1/status?code=204 HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /shop/api/v1/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 ") == 3
    first, second, third = answer.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and first.endswith(b"\r\n\r\n") and b"Content-Length" in first
    assert second.startswith(b"204") and second.endswith(b"\r\n\r\n")
    assert third.startswith(b"200") and third.endswith(b'"}') and b'"path": "/last"' in third


def test_idle_client_connections_are_closed() -> None:
    h = make(idle_timeout=0.3)
    try:
        h.routes(backend("shop", "api", h.app("a")))
        with socket.create_connection(("127.0.0.1", port_of(h.listen("external"))), timeout=5) as s:
            s.sendall(b"GET /shop/api/v1/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_until(s, b'"}').startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert s.recv(100) == b""
            assert 0.2 < time.monotonic() - started < 2
    finally:
        h.close()


# -- access log and metrics ------------------------------------------------------------------------------------

def test_access_log_lines(h: Harness) -> None:
    policy_routes(h)
    url = h.listen("internal")
    httpx.get(url + "/sales/orders/v1/a?secret=1", headers={"Choreo-API-Key": KEY})
    httpx.get(url + "/sales/orders/v1/b")
    httpx.get(url + "/nothing/here/v1/")
    allowed, denied, missing = h.log[-3:]
    assert set(allowed) == {"ts", "listener", "environment", "project", "component", "endpoint", "method", "path",
                            "status", "duration_ms", "bytes_sent", "upstream", "decision", "reason", "request_id",
                            "consumer", "trace_id"}
    assert allowed["listener"] == "internal/dev" and allowed["environment"] == "dev"
    assert (allowed["project"], allowed["component"], allowed["endpoint"]) == ("sales", "orders", "api")
    assert (allowed["method"], allowed["path"], allowed["status"]) == ("GET", "/sales/orders/v1/a", 200)
    assert allowed["decision"] == "allowed" and allowed["reason"] is None
    assert allowed["upstream"] == f"127.0.0.1:{h.apps[1].port}" and allowed["consumer"] == "shop/front"
    assert allowed["bytes_sent"] > 100 and 0 < allowed["duration_ms"] < 5000
    assert abs(allowed["ts"] - time.time()) < 10 and allowed["request_id"]
    assert (denied["status"], denied["decision"], denied["upstream"], denied["consumer"]) == (403, "denied", None,
                                                                                            None)
    assert "no connection credentials" in denied["reason"]
    assert (missing["status"], missing["decision"], missing["project"]) == (404, "no-route", None)
    assert len(allowed["trace_id"]) == 32 and len(denied["trace_id"]) == 32 and missing["trace_id"] is None


def test_a_failing_access_log_does_not_break_requests() -> None:
    h = Harness(failing_log=True)
    try:
        h.routes(backend("shop", "api", h.app("a")))
        with httpx.Client(base_url=h.listen("external")) as c:
            assert [c.get("/shop/api/v1/").status_code for _ in range(3)] == [200] * 3
            assert c.get("/shop/none/v1/").status_code == 404
        assert len(h.log) == 4
    finally:
        h.close()


def test_metrics(h: Harness) -> None:
    h.routes(backend("shop", "api", h.app("a")), backend("shop", "web", visibility=("Project",)))
    with httpx.Client(base_url=h.listen("external")) as c:
        for _ in range(3):
            c.get("/shop/api/v1/")
        c.get("/shop/web/v1/")
        c.get("/nope/nope/v1/")
    text = h.gateway.metrics.prometheus()
    labels = 'environment="dev",project="shop",component="api",endpoint="api",consumer="",code="200"'
    assert f"cellplane_gateway_requests_total{{{labels}}} 3" in text
    assert f'cellplane_gateway_request_duration_seconds_bucket{{{labels},le="+Inf"}} 3' in text
    assert f"cellplane_gateway_request_duration_seconds_count{{{labels}}} 3" in text
    assert 'component="web",endpoint="api",consumer="",code="403"} 1' in text
    assert 'environment="dev",project="",component="",endpoint="",consumer="",code="404"} 1' in text
    assert "# TYPE cellplane_gateway_request_duration_seconds histogram" in text
    snapshot = h.gateway.metrics.snapshot()
    (api,) = [e for e in snapshot["requests"] if e["component"] == "api"]
    assert api["status"] == 200 and api["count"] == 3 and api["consumer"] == ""
    assert api["duration_seconds"]["count"] == 3 and api["duration_seconds"]["buckets"]["+Inf"] == 3


def test_metrics_delta_gives_exact_windows_and_leaves_the_counters(h: Harness) -> None:
    h.routes(backend("shop", "api", h.app("a")))
    with httpx.Client(base_url=h.listen("external")) as c:
        for _ in range(3):
            c.get("/shop/api/v1/")
        c.get("/shop/api/v1/status?code=404")
        c.get("/shop/api/v1/status?code=500")
        c.get("/nope/nope/v1/")
        before = h.gateway.metrics.prometheus()
        first = h.call(h.gateway.metrics.delta)
        assert h.gateway.metrics.prometheus() == before  # the cumulative counters are not touched
        api = first[("dev", "shop", "api", "api", "")]
        assert (api.requests, api.errors, api.client_errors) == (5, 1, 1)
        assert len(api.buckets) == 14 and sum(api.buckets) == 5 and 0 < api.duration_sum < 5
        assert first[("dev", "", "", "", "")].requests == 1  # the unrouted request, under empty labels
        assert h.call(h.gateway.metrics.delta) == {}  # nothing new
        for _ in range(2):
            c.get("/shop/api/v1/")
        c.get("/shop/api/v1/status?code=503")  # a GET answered 503 is retried on the only replica: one request
        second = h.call(h.gateway.metrics.delta)
    assert set(second) == {("dev", "shop", "api", "api", "")}
    api = second[("dev", "shop", "api", "api", "")]
    assert (api.requests, api.errors, api.client_errors, sum(api.buckets)) == (3, 1, 0, 3)
    text = h.gateway.metrics.prometheus()
    labels = 'environment="dev",project="shop",component="api",endpoint="api",consumer=""'
    assert f'cellplane_gateway_requests_total{{{labels},code="200"}} 5' in text
    assert f'cellplane_gateway_request_duration_seconds_count{{{labels},code="503"}} 1' in text


def test_metrics_of_an_endpoint_that_left_the_routes_end_once_shipped(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app), backend("shop", "old", app))
    assert h.call(h.gateway.metrics.delta) == {}  # a reader of windows, as the agent is
    with httpx.Client(base_url=h.listen("external")) as c:
        assert c.get("/shop/api/v1/").status_code == 200
        assert c.get("/shop/old/v1/").status_code == 200
        h.routes(backend("shop", "api", app))  # "old" undeployed before its window was shipped
        assert 'component="old"' in h.gateway.metrics.prometheus()
        window = h.call(h.gateway.metrics.delta)
        assert window[("dev", "shop", "old", "api", "")].requests == 1  # shipped, then forgotten
        assert 'component="old"' not in h.gateway.metrics.prometheus()
        assert 'component="api"' in h.gateway.metrics.prometheus()


def test_metrics_carry_the_consumer_of_internal_requests(h: Harness) -> None:
    policy_routes(h)
    with httpx.Client(base_url=h.listen("internal")) as c:
        assert c.get("/sales/orders/v1/", headers={"Choreo-API-Key": KEY}).status_code == 200
        assert c.get("/sales/orders/v1/").status_code == 403
    text = h.gateway.metrics.prometheus()
    base = 'environment="dev",project="sales",component="orders",endpoint="api"'
    assert f'cellplane_gateway_requests_total{{{base},consumer="shop/front",code="200"}} 1' in text
    assert f'cellplane_gateway_requests_total{{{base},consumer="",code="403"}} 1' in text
    window = h.call(h.gateway.metrics.delta)
    assert window[("dev", "sales", "orders", "api", "shop/front")].requests == 1
    assert window[("dev", "sales", "orders", "api", "")].client_errors == 1
    (granted,) = [e for e in h.gateway.metrics.snapshot()["requests"] if e["status"] == 200]
    assert granted["consumer"] == "shop/front"


# -- tracing ---------------------------------------------------------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SPAN_KEYS = {"traceId", "spanId", "parentId", "environment", "project", "component", "endpoint", "listener", "name",
             "start", "durationMs", "status", "consumer", "requestId"}


def _traceparent(seen: dict[str, Any]) -> tuple[str, str, str]:
    """(trace id, span id, flags) of the traceparent the upstream got (exactly one, well-formed)."""
    version, trace_id, span_id, flags = seen["headers"]["traceparent"].split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16 and len(flags) == 2
    assert trace_id == trace_id.lower() and int(trace_id, 16) and int(span_id, 16)
    return trace_id, span_id, flags


def test_traceparent_is_continued_with_a_new_span(h: Harness) -> None:
    h.routes(backend("shop", "api", h.app("a")))
    url = h.listen("external")
    seen = httpx.get(url + "/shop/api/v1/x/y?q=1", headers={
        "traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "vendor=abc,other=1",
        "X-Request-Id": "req-7"}).json()
    trace_id, span_id, flags = _traceparent(seen)
    assert (trace_id, flags) == (TRACE, "01") and span_id != PARENT
    assert seen["headers"]["tracestate"] == "vendor=abc,other=1"
    (span,) = h.spans
    assert set(span) == SPAN_KEYS
    assert (span["traceId"], span["spanId"], span["parentId"]) == (TRACE, span_id, PARENT)
    assert (span["environment"], span["project"], span["component"], span["endpoint"]) == ("dev", "shop", "api",
                                                                                          "api")
    assert (span["listener"], span["name"], span["status"]) == ("external", "GET /shop/api/v1/x/y", 200)
    assert (span["consumer"], span["requestId"]) == (None, "req-7")
    start = datetime.fromisoformat(span["start"])
    assert start.utcoffset() == timedelta(0) and len(span["start"].split(".")[1]) == len("123456+00:00")
    assert abs(start.timestamp() - time.time()) < 10 and 0 < span["durationMs"] < 5000
    assert h.log[-1]["trace_id"] == TRACE
    # every request is a span of its own
    again = httpx.get(url + "/shop/api/v1/", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"}).json()
    assert _traceparent(again)[1] not in (span_id, PARENT)


@pytest.mark.parametrize("value", [
    None, "", "garbage", f"01-{TRACE}-{PARENT}-01", f"00-{TRACE.upper()}-{PARENT}-01", f"00-{'0' * 32}-{PARENT}-01",
    f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE}-{PARENT}-1", f"00-{TRACE}-{PARENT}-01-extra", f"00_{TRACE}-{PARENT}-01",
    f"00-{TRACE[:-1]}g-{PARENT}-01", f"00-{TRACE[:-1]}-{PARENT}0-01", f"00-{TRACE}-{PARENT}-0x"])
def test_a_missing_or_malformed_traceparent_starts_a_new_trace(h: Harness, value: str | None) -> None:
    h.routes(backend("shop", "api", h.app("a")))
    seen = httpx.get(h.listen("external") + "/shop/api/v1/",
                     headers={"traceparent": value} if value is not None else {}).json()
    trace_id, span_id, flags = _traceparent(seen)
    assert trace_id != TRACE and flags == "01"  # new traces are sampled while the bucket allows
    (span,) = h.spans
    assert (span["traceId"], span["spanId"], span["parentId"]) == (trace_id, span_id, None)
    assert h.log[-1]["trace_id"] == trace_id


def test_two_traceparent_headers_start_a_new_trace(h: Harness) -> None:
    h.routes(backend("shop", "api", h.app("a")))
    seen = httpx.get(h.listen("external") + "/shop/api/v1/", headers=[
        ("traceparent", f"00-{TRACE}-{PARENT}-01"), ("traceparent", f"00-{TRACE}-{PARENT}-01")]).json()
    assert _traceparent(seen)[0] != TRACE and h.spans[-1]["parentId"] is None


def test_the_sampled_flag_is_honoured_on_the_internal_listener() -> None:
    h = make(trace_rate=0, trace_burst=0)  # an empty bucket: no new trace is sampled
    try:
        policy_routes(h)
        internal, external = h.listen("internal"), h.listen("external")
        auth = {"Choreo-API-Key": KEY}
        seen = httpx.get(internal + "/sales/orders/v1/", headers={**auth, "traceparent": f"00-{TRACE}-{PARENT}-00"})
        assert _traceparent(seen.json())[::2] == (TRACE, "00")
        assert h.spans == [] and h.log[-1]["trace_id"] == TRACE
        # a sampled trace stays whole: the bucket does not apply to it here
        seen = httpx.get(internal + "/sales/orders/v1/", headers={**auth, "traceparent": f"00-{TRACE}-{PARENT}-01"})
        assert _traceparent(seen.json())[::2] == (TRACE, "01")
        (span,) = h.spans
        assert (span["listener"], span["consumer"], span["parentId"]) == ("internal", "shop/front", PARENT)
        # a new trace follows the bucket, there as on the external listener
        assert _traceparent(httpx.get(internal + "/sales/orders/v1/", headers=auth).json())[2] == "00"
        # on the external listener a sampled trace needs a token too; unsampled, it stays unsampled
        for flags in ("01", "00"):
            seen = httpx.get(external + "/shop/front/v1/", headers={"traceparent": f"00-{TRACE}-{PARENT}-{flags}"})
            assert _traceparent(seen.json())[::2] == (TRACE, "00")
        assert len(h.spans) == 1
        # a cell listener is internal traffic: the sampled flag is honoured there too
        seen = httpx.get(h.listen("cell", "dev", "sales") + "/sales/ledger/v1/",
                         headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
        assert _traceparent(seen.json())[::2] == (TRACE, "01") and h.spans[-1]["listener"] == "cell"
    finally:
        h.close()


def test_the_trace_bucket_bounds_external_sampling() -> None:
    h = make(trace_rate=0.001, trace_burst=3)
    try:
        h.routes(backend("shop", "api", h.app("a")))
        with httpx.Client(base_url=h.listen("external")) as c:
            flags = [_traceparent(c.get("/shop/api/v1/").json())[2] for _ in range(6)]
        assert flags == ["01"] * 3 + ["00"] * 3
        assert len(h.spans) == 3 and len({s["traceId"] for s in h.spans}) == 3
    finally:
        h.close()


def test_denied_requests_are_traced_and_token_and_unrouted_ones_are_not(h: Harness) -> None:
    policy_routes(h)
    url = h.listen("internal")
    headers = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
    assert httpx.get(url + "/sales/orders/v1/", headers=headers).status_code == 403
    (span,) = h.spans
    assert (span["status"], span["traceId"], span["consumer"]) == (403, TRACE, None)
    assert httpx.get(url + "/nothing/here/v1/", headers=headers).status_code == 404
    r = httpx.post(url + "/_cellplane/token", data={"grant_type": "client_credentials"}, auth=("ck_front", KEY),
                   headers=headers)
    assert r.status_code == 200
    assert len(h.spans) == 1
    assert h.log[-1]["trace_id"] is None and h.log[-2]["trace_id"] is None


def test_a_failing_span_callback_does_not_break_requests() -> None:
    h = Harness()

    def broken(span: dict[str, Any]) -> None:
        raise RuntimeError("the span sink is broken")

    h.gateway.span = broken
    try:
        h.routes(backend("shop", "api", h.app("a")))
        with httpx.Client(base_url=h.listen("external")) as c:
            assert [c.get("/shop/api/v1/").status_code for _ in range(3)] == [200] * 3
        assert len(h.log) == 3
    finally:
        h.close()


# -- route updates and draining --------------------------------------------------------------------------------

def test_route_updates_under_load_lose_no_request(h: Harness) -> None:
    a, b = h.app("a"), h.app("b")
    tables = [(a,), (a, b), (b,), (b, a)]
    h.routes(backend("shop", "api", a))
    url = h.listen("external")
    failures: list[str] = []
    stop = threading.Event()
    counts = [0] * 4

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            while not stop.is_set():
                r = c.get("/shop/api/v1/")
                counts[i] += 1
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(40):
            h.routes(backend("shop", "api", *tables[n % 4]))
            time.sleep(0.02)
        h.routes(backend("shop", "api", b))
        time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures
    assert sum(counts) > 40
    assert b.requests > 0 and a.requests > 0
    # a left the table: its pooled connections are closed once its requests are over
    _wait(lambda: a.open == 0)


def test_drain_waits_for_requests_in_flight(h: Harness) -> None:
    old, new = h.app("old"), h.app("new")
    h.routes(backend("shop", "api", old))
    url = h.listen("external")
    result: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: result.update(r=httpx.get(url + "/shop/api/v1/slow?s=1", timeout=10)))
    slow.start()
    _wait(lambda: h.gateway.inflight(old.upstream) == 1)
    h.routes(backend("shop", "api", new))
    assert httpx.get(url + "/shop/api/v1/").json()["app"] == "new"
    assert h.run(h.gateway.drain([old.upstream], timeout=0.1)) is False
    started = time.monotonic()
    assert h.run(h.gateway.drain([old.upstream], timeout=5)) is True
    assert 0.3 < time.monotonic() - started < 3
    slow.join()
    assert result["r"].status_code == 200 and result["r"].json()["app"] == "old"
    assert h.gateway.inflight(old.upstream) == 0
    _wait(lambda: old.open == 0)


def test_listeners_are_idempotent_and_closable(h: Harness) -> None:
    h.routes(backend("shop", "api", h.app("a")))
    url = h.listen("external")
    assert h.listen("external") == url
    assert h.gateway.listeners() == {"external/dev": port_of(url)}
    with httpx.Client(base_url=url) as c:
        assert c.get("/shop/api/v1/").status_code == 200
        h.run(h.gateway.close_listener("external/dev"))
        assert h.gateway.listeners() == {}
        with pytest.raises(httpx.TransportError):
            c.get("/shop/api/v1/")


# -- helpers ---------------------------------------------------------------------------------------------------

def _read_until(s: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        piece = s.recv(65536)
        if not piece:
            break
        data += piece
    return data


def _read_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        piece = s.recv(n - len(data))
        if not piece:
            break
        data += piece
    return data


def _wait(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
