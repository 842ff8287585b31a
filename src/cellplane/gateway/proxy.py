"""One proxied request, from choosing a replica to the last byte of the response.

An ``Exchange`` is driven by callbacks: the client connection feeds it the request body, the upstream
connection the response. Bytes are written through as they come, with backpressure passed on both ways
(a full client pauses reading the replica, a full replica pauses reading the client), so neither body is
ever held whole. A task exists only while a new upstream connection is being opened. Every way out goes
through ``_finish``, which frees the replica slot and records the request exactly once.

A request whose route has no upstream and whose backend says ``wake`` is held by the activator
(``cellplane.gateway.activator``) until a replica is routed (``go``) or it is answered there (``fail``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from cellplane.gateway import http1
from cellplane.gateway.request import IDEMPOTENT, Request
from cellplane.gateway.router import Route
from cellplane.gateway.routes import Grant
from cellplane.gateway.upstream import UpstreamConnection, UpstreamPool

if TYPE_CHECKING:
    from cellplane.gateway.activator import Queue
    from cellplane.gateway.client import ClientConnection

log = logging.getLogger("cellplane.gateway")

# Request body held while no upstream connection is open yet; beyond it the client is paused.
PENDING_LIMIT = 256 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Exchange:
    __slots__ = ("body_paused", "bytes_sent", "chunked_out", "client", "close_client", "cold_start", "conn",
                 "connecting", "consumer", "decision", "done", "head", "head_request", "head_sent", "held",
                 "held_since", "out", "pending", "pending_size", "pool", "reason", "req", "request_done", "retries",
                 "retryable", "route", "status", "transport", "upgraded")

    def __init__(self, client: ClientConnection, req: Request, route: Route, target: bytes,
                 consumer: Grant | None) -> None:
        self.client = client
        self.transport = client.transport
        self.req = req
        self.route = route
        route.requests += 1  # Gateway.demand
        self.consumer = consumer
        self.head = req.upstream_head(target, route.prefix, client.peer, req.request_id or b"", client.local_host)
        self.head_request = req.method == b"HEAD"
        self.retries = client.gateway.settings.retries
        # Only these may be sent twice: a replica may have acted on anything else before failing.
        self.retryable = req.method in IDEMPOTENT and not req.has_body
        self.pool: UpstreamPool | None = None
        self.conn: UpstreamConnection | None = None
        self.connecting: asyncio.Task[None] | None = None  # held so the task is not garbage-collected
        self.pending: list[bytes] = []  # request body pieces (framed for the upstream) not sent yet
        self.pending_size = 0
        self.body_paused = False
        self.request_done = False
        self.status = 0
        self.head_sent = False
        self.chunked_out = False  # the response is re-chunked towards the client
        self.close_client = False
        self.bytes_sent = 0
        self.out: list[bytes] = []  # response pieces collected during one read from the replica
        self.upgraded = False
        self.done = False
        self.decision = "allowed"
        self.reason: str | None = None
        self.held: Queue | None = None  # the activator's queue this request waits in
        self.held_since = 0.0  # time.monotonic() when it was held
        self.cold_start = b""  # the x-cellplane-cold-start header line of a released request

    def start(self) -> None:
        if self.req.expect_continue:  # the gateway takes the body itself; the replica never sees Expect
            self.transport.write(CONTINUE)
        self._attempt(fresh=False)

    # -- choosing and reaching a replica -----------------------------------------------------------------------

    def _attempt(self, fresh: bool) -> None:
        pool = self.route.pick()
        if pool is None:
            if self.route.pools:
                message = (f"every replica of {self.route.label} is failing; the next one is tried within "
                           f"{self.route.pools[0].circuit.reset:g}s")
            elif self.route.backend.wake:
                self.client.gateway.activator.hold(self)
                return
            else:
                message = f"no ready replica of {self.route.label}"
            self._local_error(503, "unavailable", message, "unavailable")
            return
        if pool is not self.pool:
            if self.pool is not None:
                self.pool.end()
            pool.begin()
            self.pool = pool
        conn = None if fresh else pool.take()
        if conn is not None:
            self._send(conn)
        else:
            self.connecting = self.client.loop.create_task(self._connect(pool))

    def go(self, route: Route, cold_start: bytes) -> None:
        """Released by the activator: on to a replica of ``route`` (the same endpoint in the new route table)."""
        self.route = route
        self.cold_start = cold_start
        self._attempt(fresh=False)

    def fail(self, status: int, code: str, message: str, decision: str,
             headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answered by the activator (queue full, hold timeout, wake-up failed)."""
        if not self.done:
            self._local_error(status, code, message, decision, headers)

    async def _connect(self, pool: UpstreamPool) -> None:
        try:
            conn = await pool.connect()
        except OSError as e:  # refused, unreachable, or TimeoutError (an OSError too)
            self.connecting = None
            self._connect_failed(pool, e)
            return
        except Exception as e:  # not the replica's fault but the gateway's: answer, and let it be seen
            self.connecting = None
            log.exception("connecting to %s failed unexpectedly", pool.upstream)
            if not self.done:
                self._local_error(502, "bad-gateway", f"cannot connect to replica {pool.upstream}: {e}")
            return
        self.connecting = None
        if self.done:  # the client went away meanwhile: the connection serves the next request instead
            pool.give(conn)
        else:
            self._send(conn)

    def _connect_failed(self, pool: UpstreamPool, error: OSError) -> None:
        pool.circuit.failed()
        if self.done:
            return
        if self.retries > 0:  # nothing was sent: any request may go elsewhere
            self.retries -= 1
            self._attempt(fresh=False)
        elif isinstance(error, TimeoutError):
            self._local_error(504, "upstream-timeout", f"connecting to replica {pool.upstream} of "
                              f"{self.route.label} timed out after {pool.connect_timeout:g}s")
        else:
            self._local_error(502, "bad-gateway", f"cannot connect to replica {pool.upstream} of "
                              f"{self.route.label}: {error.strerror or error}")

    def _send(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        pieces = [self.head]
        if self.pending:
            pieces += self.pending
            self.pending = []
            self.pending_size = 0
        conn.send(self, pieces)
        if self.body_paused:
            self.body_paused = False
            self.client.resume_input(self.client.BODY)
        if self.client.write_paused:
            conn.pause_reading()

    # -- the request body, from the client ---------------------------------------------------------------------

    def request_body(self, data: bytes) -> None:
        pieces = http1.chunk(data) if self.req.chunked else (data,)
        conn = self.conn
        if conn is not None:
            conn.write(pieces)
        elif not self.done:
            self.pending += pieces
            self.pending_size += len(data)
            if self.pending_size > PENDING_LIMIT and not self.body_paused:
                self.body_paused = True
                self.client.pause_input(self.client.BODY)

    def request_end(self) -> None:
        self.request_done = True
        if self.req.chunked:
            if self.conn is not None:
                self.conn.write((http1.LAST_CHUNK,))
            elif not self.done:
                self.pending.append(http1.LAST_CHUNK)

    # -- the response, from the replica ------------------------------------------------------------------------

    def response_head(self, conn: UpstreamConnection, status: int, reason: bytes, length: bytes | None,
                      upgrade: bytes) -> None:
        req = self.req
        if status == 503 and self.retryable and self.retries > 0:
            self.retries -= 1
            self.conn = None
            conn.close()
            self._attempt(fresh=False)
            return
        head = [b"HTTP/1.1 %d " % status, reason or http1.REASONS.get(status, b""), http1.CRLF, *conn.copied]
        if self.cold_start:
            head.append(self.cold_start)
        if status == 101:
            if not req.websocket:
                self.conn = None
                conn.close()
                self._local_error(502, "bad-gateway", f"replica {conn.upstream} switched protocols unasked")
                return
            self.upgraded = True
            head += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, http1.CRLF)
        else:
            if not self.head_request and status not in (204, 304) and length is None:
                if req.http11:
                    self.chunked_out = True
                    head.append(b"Transfer-Encoding: chunked\r\n")
                else:
                    self.close_client = True  # an HTTP/1.0 client learns the end from the connection's
            if req.websocket:  # refused upgrade: the client may already be sending frames
                self.close_client = True
            if self.close_client or not req.keep_alive:
                head.append(b"Connection: close\r\n")
            elif not req.http11:
                head.append(b"Connection: keep-alive\r\n")
        head.append(http1.CRLF)
        assert self.pool is not None
        self.pool.circuit.succeeded()  # it answered: whatever the status, the replica is reachable
        self.status = status
        self.head_sent = True
        self.bytes_sent += sum(map(len, head))
        self.out += head

    def response_body(self, data: bytes) -> None:
        if self.chunked_out:
            self.out += http1.chunk(data)
        else:
            self.out.append(data)
        self.bytes_sent += len(data)

    def flush(self) -> None:
        self.transport.writelines(self.out)
        self.out.clear()

    def response_end(self, keep_alive: bool) -> None:
        conn, self.conn = self.conn, None
        if self.chunked_out:
            self.out.append(http1.LAST_CHUNK)
        self.flush()
        if conn is not None:
            conn.release(keep_alive and self.request_done)
        self._finish()

    # -- failures ----------------------------------------------------------------------------------------------

    def upstream_failed(self, conn: UpstreamConnection, reason: str) -> None:
        """The connection broke or spoke nonsense; retry when nothing can have happened twice."""
        self.conn = None
        if self.done:
            return
        if self.head_sent:
            self._abort_client(reason)
            return
        assert self.pool is not None
        stale = conn.reused and not conn.responded  # most likely closed by the replica while idle in the pool
        if not stale:
            self.pool.circuit.failed()
        if not conn.responded and not self.req.has_body:
            if stale:
                self._attempt(fresh=True)
                return
            if self.retryable and self.retries > 0:
                self.retries -= 1
                self._attempt(fresh=False)
                return
        self._local_error(502, "bad-gateway", reason)

    def upstream_timed_out(self, conn: UpstreamConnection) -> None:
        self.conn = None
        assert self.pool is not None
        self.pool.circuit.failed()
        reason = f"replica {conn.upstream} of {self.route.label} sent nothing for {self.pool.read_timeout:g}s"
        if self.head_sent:
            self._abort_client(reason)
        else:
            self._local_error(504, "upstream-timeout", reason)

    def _local_error(self, status: int, code: str, message: str, decision: str = "error",
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer with the gateway's own error, before any byte of a replica's response went out."""
        req = self.req
        self.close_client = req.websocket or not req.keep_alive
        data = http1.response(status, http1.error_body(code, message), keep_alive=not self.close_client,
                              http11=req.http11, head_only=self.head_request, headers=headers)
        self.transport.write(data)
        self.status = status
        self.bytes_sent += len(data)
        self.decision = decision
        self.reason = message
        self._finish()

    def _abort_client(self, reason: str) -> None:
        """A response broke off midway: the client must see the connection end, not a complete response."""
        self.decision = "error"
        self.reason = reason
        self.close_client = True
        self.transport.abort()
        self._finish()

    def abort(self) -> None:
        """The client went away."""
        if self.held is not None:
            self.held.leave(self)
        if self.done:
            return
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if not self.head_sent:
            self.status = 499  # nginx's "client closed request"
        if not self.upgraded:
            self.decision = "error"
            self.reason = "the client closed the connection"
        self._finish()

    # -- flow control ------------------------------------------------------------------------------------------

    def client_eof(self) -> bool:
        """The client shut its sending side: a held request is dropped (it left the queue), others go on."""
        return self.held is not None

    def client_full(self, full: bool) -> None:
        if self.conn is not None:
            if full:
                self.conn.pause_reading()
            else:
                self.conn.resume_reading()

    def upstream_full(self, full: bool) -> None:
        if full:
            self.client.pause_input(self.client.UPSTREAM)
        else:
            self.client.resume_input(self.client.UPSTREAM)

    # -- WebSocket tunnel --------------------------------------------------------------------------------------

    def tunnel_open(self, extra: bytes) -> None:
        """The replica switched protocols: from now on bytes go through unparsed, both ways."""
        self.flush()
        if extra:
            self.tunnel_to_client(extra)
        self.client.open_tunnel(self)

    def tunnel_to_client(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self.transport.write(data)

    def tunnel_to_upstream(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.write((data,))

    def tunnel_closed(self) -> None:
        self.conn = None
        self.close_client = True
        self._finish()

    # -- the end -----------------------------------------------------------------------------------------------

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        pool = self.pool
        if pool is not None:
            pool.end()
        req = self.req
        self.client.listener.record(req, self.status, self.route, pool.name if pool else None, self.decision,
                                    self.reason, self.consumer, self.bytes_sent)
        self.client.answered(req, req.keep_alive and not self.close_client)
