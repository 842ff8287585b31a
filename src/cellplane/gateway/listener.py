"""A listener: its socket, what it does with each request head (route, admit, proxy or answer), and the record
of every request it answered (metrics, the access log and, when sampled, a span).

A cell listener first checks the cell's credential (docs/security.md, "Data planes and cells"): the path prefix
``/_cell/<credential>``, compared in constant time and cut off before routing, logging, tracing and proxying,
or the ``Cellplane-Cell-Key`` header (never forwarded). One slice and one comparison per request.

``GET /_cellplane/health`` on every listener is answered by the gateway itself (200 ``{"status": "ok"}``): never
routed, never waking anything, not logged, no credential asked (a cell listener's included). It costs nothing on
the way of a routed request: a path with fewer than three segments never matches a route, so it is looked at only
where the 404 was answered before.

Tracing (W3C trace context): a routed request continues the client's trace (a valid ``traceparent``) or starts
one, and gets a span id of its own, which the upstream sees in the gateway's ``traceparent``. Whether its span
is recorded: on the external listener only while the gateway's token bucket allows (and the client did not say
"not sampled"); elsewhere the client's sampled flag, so that a sampled trace stays whole across hops, within a
far larger bucket of its own (one component that samples everything cannot flood the span store), and the
first bucket for a new trace.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import time
from binascii import hexlify
from collections.abc import Callable
from datetime import UTC, datetime
from random import getrandbits
from typing import TYPE_CHECKING, Any

from cellplane.gateway import http1
from cellplane.gateway.auth import (
    CELL_HEADER,
    CELL_PATH,
    MAX_TOKEN_REQUEST,
    TOKEN_PATH,
    hide_cell_credential,
    token_endpoint,
)
from cellplane.gateway.client import ClientConnection
from cellplane.gateway.policy import policy_for
from cellplane.gateway.proxy import CONTINUE, Exchange
from cellplane.gateway.request import Request
from cellplane.gateway.router import Route, UnsafePath
from cellplane.gateway.routes import Grant, ListenerSpec

if TYPE_CHECKING:
    from cellplane.gateway.server import Gateway


MAX_SPAN_PATH = 2048  # of the path in a span's name
HEALTH_PATH = b"/_cellplane/health"
HEALTH = http1.json_body({"status": "ok"})
MAX_REQUEST_ID = 100


class Listener:
    """One open listener; its ``policy`` (by kind) decides what the requests arriving on it may reach."""

    def __init__(self, gateway: Gateway, spec: ListenerSpec) -> None:
        self.gateway = gateway
        self.spec = spec
        self.key = spec.key
        self.environment = spec.environment
        self.policy = policy_for(spec, gateway.tokens)
        self.serves_tokens = spec.kind == "internal"
        self.cell = spec.kind == "cell"
        credential = (spec.credential or "").encode()
        self.cell_key = credential
        self.cell_prefix = CELL_PATH + credential + b"/" if self.cell else b""
        self.connections: set[ClientConnection] = set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._no_route = (spec.environment, "", "", "", "")
        self.external = spec.kind == "external"

    async def open(self, sock: socket.socket | None = None) -> int:
        """Listen on the spec's host and port, or accept on ``sock``: the agent's listening socket, which a gateway
        worker shares (the kernel hands each new connection to one of the processes accepting on it)."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            self.server = server = await loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=1024)
        else:
            self.server = server = await loop.create_server(lambda: ClientConnection(self), self.spec.host,
                                                            self.spec.port, reuse_address=True, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop accepting, and cut the open connections (requests in flight on them end as 499)."""
        server = self.server
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.transport.abort()
        if server is not None:
            await server.wait_closed()

    def serve(self, client: ClientConnection, req: Request) -> None:
        """Route, admit and hand on one request, as soon as its head is in."""
        gateway = self.gateway
        if req.request_id is None:
            req.request_id = gateway.new_request_id()
        if self.cell and not self._in_cell(client, req):
            return
        if self.external:  # what an outside client says it forwards is a claim: the upstream gets the peer only
            req.forwarded_for = None
        target = req.target
        if req.method == b"CONNECT":
            client.refuse(req, 405, "method-not-allowed", "the gateway is not a forward proxy", "error")
            return
        if self.serves_tokens and target.partition(b"?")[0] == TOKEN_PATH:
            self._token_request(client, req)
            return
        index = gateway.index
        try:
            match = index.match(self.environment, target)
        except UnsafePath as e:
            client.refuse(req, 400, "bad-request", str(e), "error")
            return
        if match is None:
            if target.partition(b"?")[0] == HEALTH_PATH:
                self._health(client, req)
                return
            client.refuse(req, 404, "not-found", f"nothing is routed at {_path(req)} in {self.environment}",
                          "no-route")
            return
        route, upstream_target = match
        if req.trace_id is None:  # a new trace
            req.trace_id = hexlify((getrandbits(128) or 1).to_bytes(16, "big"))  # 32 hex digits
            req.sampled = gateway.trace_bucket.take(req.started)
        elif req.sampled:  # continued: from outside as asked while the bucket allows; inside, far more leeway
            req.sampled = (gateway.trace_bucket if self.external else gateway.hop_bucket).take(req.started)
        req.span_id = hexlify((getrandbits(64) or 1).to_bytes(8, "big"))  # 16 hex digits
        reason, grant = self.policy.admit(route, req.api_key, req.bearer, index)
        if reason is not None:
            client.refuse(req, 403, "forbidden", reason, "denied", route)
            return
        exchange = Exchange(client, req, route, upstream_target, grant)
        client.handle(req, exchange)
        exchange.start()

    def _in_cell(self, client: ClientConnection, req: Request) -> bool:
        """Whether the request shows this cell's credential (then its path no longer holds it); else refused, 403."""
        target, prefix = req.target, self.cell_prefix
        n = len(prefix)
        if hmac.compare_digest(target[:n], prefix):
            req.target = target[n - 1:]
            return True
        if target.partition(b"?")[0] == HEALTH_PATH:
            self._health(client, req)
            return False
        if target[:len(CELL_PATH)] == CELL_PATH:
            reason = f"the cell credential in the path is not the one of project {self.spec.project}'s cell"
        elif req.cell_key is None:
            reason = (f"no cell credential: the cell listener of project {self.spec.project} serves only its "
                      "workloads, through the URLs of their connections")
        elif hmac.compare_digest(req.cell_key, self.cell_key):
            return True
        else:
            reason = f"the {CELL_HEADER} header is not the credential of project {self.spec.project}'s cell"
        client.refuse(req, 403, "forbidden", reason, "denied")
        return False

    def _health(self, client: ClientConnection, req: Request) -> None:
        """The gateway's own health: it is up and serving this listener."""
        if req.method != b"GET" and req.method != b"HEAD":
            client.refuse(req, 405, "method-not-allowed", "the health endpoint takes GET", "error")
            return
        keep_alive = req.keep_alive and not (req.expect_continue and not req.complete)
        client.transport.write(http1.response(200, HEALTH, keep_alive=keep_alive, http11=req.http11,
                                              head_only=req.method == b"HEAD",
                                              headers=((b"Cache-Control", b"no-store"),)))
        client.answered(req, keep_alive)

    def _token_request(self, client: ClientConnection, req: Request) -> None:
        if req.method != b"POST":
            client.refuse(req, 405, "method-not-allowed", "the token endpoint takes POST", "error")
            return
        if req.expect_continue:
            client.transport.write(CONTINUE)
        client.handle(req, TokenRequest(self, client, req))

    def record(self, req: Request, status: int, route: Route | None, upstream: str | None, decision: str,
               reason: str | None, consumer: Grant | None, bytes_sent: int) -> None:
        """Count the request, hand its span (if sampled) and its access-log line to the callbacks (whose failures
        never reach it)."""
        gateway = self.gateway
        seconds = time.perf_counter() - req.started
        if route is None:
            gateway.metrics.observe(self._no_route, status, seconds)
        else:
            if consumer is not None:
                labels = route.labels_for(consumer)
            else:
                labels = route.cell_labels if self.cell else route.labels
            gateway.metrics.observe(labels, status, seconds)
            if req.sampled and gateway.span is not None:
                self._span(gateway.span, req, status, route, consumer, seconds)
        access_log = gateway.access_log
        if access_log is None:
            return
        b = route.backend if route is not None else None
        entry = {
            "ts": time.time() - seconds, "listener": self.key, "environment": self.environment,
            "project": b.project if b else None, "component": b.component if b else None,
            "endpoint": b.endpoint if b else None, "method": req.method.decode("latin-1"), "path": _path(req),
            "status": status, "duration_ms": round(seconds * 1000, 3), "bytes_sent": bytes_sent,
            "upstream": upstream, "decision": decision, "reason": reason,
            "request_id": req.request_id.decode("latin-1") if req.request_id else None,
            "consumer": consumer.consumer_label if consumer is not None else None,
            "trace_id": req.trace_id.decode() if b is not None and req.trace_id is not None else None,
        }
        try:
            access_log(entry)
        except Exception as e:
            gateway.access_log_failed(e)

    def _span(self, record: Callable[[dict[str, Any]], None], req: Request, status: int, route: Route,
              consumer: Grant | None, seconds: float) -> None:
        b = route.backend
        span = {
            "traceId": (req.trace_id or b"").decode(), "spanId": (req.span_id or b"").decode(),
            "parentId": req.parent_id.decode() if req.parent_id is not None else None,
            "environment": b.environment, "project": b.project, "component": b.component, "endpoint": b.endpoint,
            "listener": self.spec.kind, "name": f"{req.method.decode('latin-1')} {_path(req)[:MAX_SPAN_PATH]}",
            "start": datetime.fromtimestamp(time.time() - seconds, UTC).isoformat(timespec="microseconds"),
            "durationMs": round(seconds * 1000, 3), "status": status,
            "consumer": consumer.consumer_label if consumer is not None else None,
            "requestId": req.request_id[:MAX_REQUEST_ID].decode("latin-1") if req.request_id else None,
        }
        try:
            record(span)
        except Exception as e:
            self.gateway.span_failed(e)


class TokenRequest:
    """``POST /_cellplane/token``: read the (small) form body, then answer as an OAuth2 token endpoint."""

    __slots__ = ("body", "client", "done", "listener", "req", "size")

    def __init__(self, listener: Listener, client: ClientConnection, req: Request) -> None:
        self.listener = listener
        self.client = client
        self.req = req
        self.body: list[bytes] = []
        self.size = 0
        self.done = False

    def request_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_TOKEN_REQUEST:
            self.done = True
            self.client.refuse(self.req, 413, "too-large", f"a token request has at most {MAX_TOKEN_REQUEST} bytes",
                               "error")
        else:
            self.body.append(data)

    def request_end(self) -> None:
        if self.done:
            return
        self.done = True
        req, listener = self.req, self.listener
        gateway = listener.gateway
        status, payload = token_endpoint(gateway.index, gateway.tokens, listener.environment, req.authorization,
                                         req.content_type, b"".join(self.body))
        headers = [(b"Cache-Control", b"no-store")]
        if status == 401:
            headers.append((b"WWW-Authenticate", b'Basic realm="cellplane"'))
        data = http1.response(status, http1.json_body(payload), keep_alive=req.keep_alive, http11=req.http11,
                              headers=tuple(headers))
        self.client.transport.write(data)
        reason = None if status == 200 else str(payload.get("error_description") or payload.get("error"))
        listener.record(req, status, None, None, "allowed" if status == 200 else "denied", reason, None, len(data))
        self.client.answered(req, req.keep_alive)

    def abort(self) -> None:
        self.done = True

    def client_eof(self) -> bool:
        return False

    def client_full(self, full: bool) -> None:
        """Token responses are a few hundred bytes; nothing to slow down."""


def _path(req: Request) -> str:
    """The request's path as access lines and spans show it: never a cell's credential (a request that was not
    admitted still holds it, right or wrong)."""
    path = req.target.partition(b"?")[0]
    if path[:7] == CELL_PATH:
        path = hide_cell_credential(path)
    return path.decode("latin-1")
