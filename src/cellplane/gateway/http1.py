"""HTTP/1.1 wire pieces shared by the client and upstream sides: header classes, framing, local responses."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

CRLF = b"\r\n"
COLON = b": "
LAST_CHUNK = b"0\r\n\r\n"
REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}

# Request headers the client side handles itself rather than copying them to the upstream.
(HOST, LENGTH, TRANSFER, CONNECTION, UPGRADE, API_KEY, AUTHORIZATION, REQUEST_ID, FORWARDED_FOR, EXPECT,
 CONTENT_TYPE, TRACEPARENT, CELL_KEY, DROP) = range(14)
REQUEST_HEADERS: dict[bytes, int] = {
    b"host": HOST, b"content-length": LENGTH, b"transfer-encoding": TRANSFER, b"connection": CONNECTION,
    b"upgrade": UPGRADE, b"choreo-api-key": API_KEY, b"x-api-key": API_KEY, b"authorization": AUTHORIZATION,
    b"x-request-id": REQUEST_ID, b"x-forwarded-for": FORWARDED_FOR, b"expect": EXPECT, b"content-type": CONTENT_TYPE,
    b"traceparent": TRACEPARENT,  # replaced by the gateway's own (a new span id), see cellplane.gateway.tracing
    b"cellplane-cell-key": CELL_KEY,  # a cell's credential (cellplane.gateway.auth.CELL_HEADER), never copied
    # hop-by-hop (RFC 9110 7.6.1), and forwarding headers the gateway sets itself (a client must not forge them)
    b"keep-alive": DROP, b"proxy-connection": DROP, b"proxy-authorization": DROP, b"proxy-authenticate": DROP,
    b"te": DROP, b"trailer": DROP, b"x-forwarded-proto": DROP, b"x-forwarded-host": DROP,
    b"x-forwarded-prefix": DROP, b"forwarded": DROP, b"x-real-ip": DROP,
}

# Response headers the gateway does not copy to the client: hop-by-hop ones, and the framing it redoes.
RESPONSE_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
                          b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade"})


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk of a chunked body, as pieces for ``writelines`` (no copy of ``data``)."""
    return b"%x\r\n" % len(data), data, CRLF


def connection_tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def response(status: int, body: bytes, *, content_type: bytes = b"application/json", keep_alive: bool = True,
             http11: bool = True, head_only: bool = False, headers: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A complete response the gateway answers itself (an HTTP/1.0 client is told when the connection stays)."""
    lines = [b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
             % (status, REASONS.get(status, b"Unknown"), content_type, len(body))]
    lines += [name + COLON + value + CRLF for name, value in headers]
    if not keep_alive:
        lines.append(b"Connection: close\r\n")
    elif not http11:
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(CRLF)
    if not head_only:
        lines.append(body)
    return b"".join(lines)


def error_body(code: str, message: str) -> bytes:
    """The JSON body of every error the gateway itself answers."""
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
