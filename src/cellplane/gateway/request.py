"""A request as the client side parses it: the few headers the gateway acts on, the rest ready to copy.

Headers are sorted out once, as the parser delivers them: the ones the gateway handles itself (framing,
credentials, forwarding, hop-by-hop) go into fields, every other one straight into ``copied`` as wire pieces,
so building the upstream head is a single ``join``.
"""

from __future__ import annotations

from typing import Protocol

from cellplane.gateway import http1
from cellplane.gateway.auth import BEARER_PREFIX
from cellplane.gateway.tracing import parse_traceparent

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
_KEEP_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade"})


class BadRequest(ValueError):
    """A request the parser accepted but the gateway will not forward (400)."""


class VersionNotSupported(ValueError):
    """A request line of another HTTP version than 1.0 or 1.1 (505): "HTTP/2.0" is not a way to speak HTTP/2."""


class BodySink(Protocol):
    """Whoever takes a request's body once it is being served (an ``Exchange``, a token request)."""

    def request_body(self, data: bytes) -> None: ...

    def request_end(self) -> None: ...


class Request:
    __slots__ = ("answered", "api_key", "authorization", "bearer", "cell_key", "chunked", "chunks", "complete",
                 "connection", "content_type", "copied", "expect_continue", "forwarded_for", "head_size", "host",
                 "http11", "keep_alive", "length", "method", "nheaders", "parent_id", "request_id", "sampled", "sink",
                 "span_id", "started", "target", "trace_id", "traceparent", "upgrade", "websocket")

    def __init__(self, started: float) -> None:
        self.started = started  # time.perf_counter() at the first byte
        self.target = b""
        self.method = b""
        self.http11 = True
        self.keep_alive = True
        self.copied: list[bytes] = []  # header wire pieces copied unchanged to the upstream
        self.nheaders = 0
        self.head_size = 0
        self.host: bytes | None = None
        self.length: bytes | None = None
        self.chunked = False
        self.connection: set[bytes] | None = None
        self.upgrade: bytes | None = None
        self.websocket = False
        self.api_key: bytes | None = None
        self.cell_key: bytes | None = None  # a cell's credential from the Cellplane-Cell-Key header
        self.bearer: bytes | None = None  # a gateway token from "Authorization: Bearer cpg1..."
        self.authorization: bytes | None = None
        self.request_id: bytes | None = None
        self.forwarded_for: bytes | None = None
        self.expect_continue = False
        self.content_type: bytes | None = None
        # trace context: the client's (a valid traceparent), then the listener's decision for a routed request
        self.traceparent: bytes | None = None  # the raw header, as received
        self.trace_id: bytes | None = None  # 32 lowercase hex digits
        self.parent_id: bytes | None = None  # the client's span id (16 hex digits); None for a new trace
        self.span_id: bytes | None = None  # this hop's span id, set when the request is routed
        self.sampled = False
        # the body while the request waits for its turn (pipelining), then whoever serves it
        self.chunks: list[bytes] = []
        self.sink: BodySink | None = None
        self.complete = False  # the whole message (head and body) has been received
        self.answered = False  # the whole response has been written

    @property
    def has_body(self) -> bool:
        return self.chunked or (self.length is not None and self.length.strip() != b"0")

    def header(self, name: bytes, value: bytes) -> None:
        kind = http1.REQUEST_HEADERS.get(name.lower())
        if kind is None:
            self.copied += (name, http1.COLON, value, http1.CRLF)
        elif kind == http1.HOST:
            if self.host is not None:
                raise BadRequest("more than one Host header")
            self.host = value
        elif kind == http1.LENGTH:
            self.length = value
        elif kind == http1.TRANSFER:
            self.chunked = True  # the parser refuses any transfer coding that does not end in chunked
        elif kind == http1.CONNECTION:
            self.connection = http1.connection_tokens(value) | (self.connection or set())
        elif kind == http1.UPGRADE:
            self.upgrade = value
        elif kind == http1.API_KEY:
            self.api_key = value.strip()
        elif kind == http1.AUTHORIZATION:
            self.authorization = value
            if value[:len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
                self.bearer = value[7:].strip()
            else:
                self.copied += (name, http1.COLON, value, http1.CRLF)
        elif kind == http1.REQUEST_ID:
            self.request_id = value
        elif kind == http1.FORWARDED_FOR:
            self.forwarded_for = value if self.forwarded_for is None else self.forwarded_for + b", " + value
        elif kind == http1.EXPECT:
            self.expect_continue = value.strip().lower() == b"100-continue"
        elif kind == http1.CONTENT_TYPE:
            self.content_type = value
            self.copied += (name, http1.COLON, value, http1.CRLF)
        elif kind == http1.TRACEPARENT:
            if self.traceparent is None:
                self.traceparent = value
                parsed = parse_traceparent(value)
                if parsed is not None:
                    self.trace_id, self.parent_id, self.sampled = parsed
            else:  # more than one: not a trace context to continue
                self.trace_id = self.parent_id = None
                self.sampled = False
        elif kind == http1.CELL_KEY:
            self.cell_key = value.strip()

    def head_done(self, method: bytes, http11: bool, keep_alive: bool, upgrade: bool) -> None:
        """Record what the parser knows once the head is complete; drop headers named in Connection.

        Raises ``BadRequest`` for an HTTP/1.1 request without Host (RFC 9112 3.2: a server must answer it 400).
        """
        if http11 and self.host is None:
            raise BadRequest("an HTTP/1.1 request must have a Host header")
        self.method = method
        self.http11 = http11
        self.keep_alive = keep_alive
        tokens = self.connection
        self.websocket = (upgrade and self.upgrade is not None and self.upgrade.strip().lower() == b"websocket"
                          and tokens is not None and b"upgrade" in tokens)
        if tokens and not tokens <= _KEEP_TOKENS:
            nominated = tokens - _KEEP_TOKENS
            pieces = self.copied
            self.copied = [p for i in range(0, len(pieces), 4) if pieces[i].lower() not in nominated
                           for p in pieces[i:i + 4]]

    def upstream_head(self, target: bytes, prefix: bytes, client_ip: bytes, request_id: bytes,
                      default_host: bytes) -> bytes:
        """The head sent to the upstream: HTTP/1.1, same Host, the copied headers, X-Forwarded-* and (for a routed
        request) the gateway's traceparent."""
        host = self.host if self.host is not None else default_host
        forwarded_for = client_ip if self.forwarded_for is None else self.forwarded_for + b", " + client_ip
        parts = [self.method, b" ", target, b" HTTP/1.1\r\nHost: ", host, http1.CRLF, *self.copied]
        if self.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif self.length is not None:
            parts += (b"Content-Length: ", self.length, http1.CRLF)
        if self.websocket:
            parts += (b"Connection: Upgrade\r\nUpgrade: ", self.upgrade or b"websocket", http1.CRLF)
        if self.span_id is not None:
            parts += (b"traceparent: 00-", self.trace_id or b"", b"-", self.span_id,
                      b"-01\r\n" if self.sampled else b"-00\r\n")
        parts += (b"X-Forwarded-For: ", forwarded_for, b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ", host,
                  b"\r\nX-Forwarded-Prefix: ", prefix, b"\r\nX-Request-Id: ", request_id, b"\r\n\r\n")
        return b"".join(parts)

    # -- the body, before and after someone serves the request ------------------------------------------------

    def body(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink.request_body(data)
        elif not self.answered:
            self.chunks.append(data)

    def end(self) -> None:
        self.complete = True
        if self.sink is not None:
            self.sink.request_end()

    def serve(self, sink: BodySink) -> None:
        """Hand the body to ``sink``: what arrived while the request waited first, then the rest as it comes."""
        self.sink = sink
        chunks, self.chunks = self.chunks, []
        for data in chunks:
            sink.request_body(data)
        if self.complete:
            sink.request_end()
