"""The gateway's edge on real sockets: request lines and heads it refuses, the forwarding headers a client cannot
forge, and the codes of the errors it answers itself (kebab-case, as the API's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from cellplane.gateway.auth import secret_digest
from cellplane.gateway.routes import Grant, Upstream
from gatewaykit import Harness, backend, free_port, port_of, raw_request

KEY = "the-api-key-of-shop-front"
GRANT = Grant("ck_front", secret_digest(KEY.encode()), "dev", "shop", "front", ("sales", "orders", "api"))
KEBAB = re.compile(r"[a-z]+(-[a-z]+)*")


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def status_and_body(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body else {}


def test_an_http_1_1_request_without_host_is_400_and_never_reaches_the_replica(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app))
    port = port_of(h.listen("external"))
    status, body = status_and_body(raw_request(port, b"GET /shop/api/v1/ HTTP/1.1\r\n\r\n"))
    assert status == 400
    assert body["error"] == {"code": "bad-request", "message": "malformed request: an HTTP/1.1 request must have a "
                                                               "Host header"}
    assert app.requests == 0
    assert h.log[-1]["status"] == 400 and h.log[-1]["decision"] == "error"
    # HTTP/1.0 has no Host to require; with Host, HTTP/1.1 is served
    assert raw_request(port, b"GET /shop/api/v1/ HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")
    assert raw_request(port, b"GET /shop/api/v1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 200")
    assert app.requests == 2


@pytest.mark.parametrize("version", [b"2.0", b"0.9", b"1.2", b"3.0"])
def test_a_request_line_of_another_http_version_is_refused(h: Harness, version: bytes) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app))
    answer = raw_request(port_of(h.listen("external")), b"GET /shop/api/v1/ HTTP/%s\r\nHost: x\r\n\r\n" % version)
    status, body = status_and_body(answer)
    if version in (b"2.0", b"0.9"):  # versions the parser knows: said plainly
        assert status == 505
        assert body["error"] == {"code": "version-not-supported",
                                 "message": f"HTTP/{version.decode()} is not spoken here; send HTTP/1.1"}
    else:  # versions the parser does not know: a malformed request line
        assert status == 400 and body["error"]["code"] == "bad-request"
    assert app.requests == 0


def test_the_external_listener_replaces_forwarding_headers_a_client_sends(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app), backend("sales", "orders", app, visibility=("Organization",)),
             grants=(GRANT,))
    forged = {"X-Forwarded-For": "10.9.8.7", "Forwarded": "for=10.9.8.7", "X-Real-IP": "10.9.8.7"}
    seen = httpx.get(h.listen("external") + "/shop/api/v1/", headers=forged).json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert "forwarded" not in seen and "x-real-ip" not in seen
    # two X-Forwarded-For lines are no way around it
    answer = raw_request(port_of(h.listen("external")), b"GET /shop/api/v1/ HTTP/1.1\r\nHost: x\r\n"
                         b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nConnection: close\r\n\r\n")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["headers"]["x-forwarded-for"] == "127.0.0.1"
    # an internal caller is an authenticated workload that may relay its own client's address: the gateway appends
    seen = httpx.get(h.listen("internal") + "/sales/orders/v1/",
                     headers={**forged, "Choreo-API-Key": KEY}).json()["headers"]
    assert seen["x-forwarded-for"] == "10.9.8.7, 127.0.0.1"
    assert "forwarded" not in seen and "x-real-ip" not in seen


def test_every_error_the_gateway_answers_has_a_kebab_case_code(h: Harness) -> None:
    app = h.app("a")
    h.routes(backend("shop", "api", app), backend("shop", "down", Upstream("127.0.0.1", free_port())),
             backend("shop", "none"), backend("sales", "orders", app, visibility=("Organization",)))
    external, internal = h.listen("external"), h.listen("internal")
    answers = {
        "not-found": httpx.get(external + "/nothing/here/v1/"),
        "bad-request": httpx.get(external + "/shop/api/v1/x/%2e%2e/y"),
        "forbidden": httpx.get(external + "/sales/orders/v1/"),
        "unavailable": httpx.get(external + "/shop/none/v1/"),
        "bad-gateway": httpx.get(external + "/shop/down/v1/"),
        "method-not-allowed": httpx.get(internal + "/_cellplane/token"),
        "too-large": httpx.post(internal + "/_cellplane/token", content=b"x" * 20000),
    }
    for code, r in answers.items():
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == code, (code, r.status_code, r.text)
    port = port_of(external)
    codes = [status_and_body(raw_request(port, data))[1]["error"]["code"] for data in (
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nConnection: close\r\n\r\n",
        b"GET /shop/api/v1/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 70000 + b"\r\n\r\n",
        b"GET /shop/api/v1/ HTTP/2.0\r\nHost: x\r\n\r\n")]
    assert codes == ["method-not-allowed", "header-too-large", "version-not-supported"]
    assert all(KEBAB.fullmatch(code) for code in [*answers, *codes])
