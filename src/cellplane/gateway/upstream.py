"""Connections to replicas: a keep-alive HTTP/1.1 client protocol and the pools that keep them.

An ``UpstreamConnection`` parses responses with httptools and hands every event straight to the ``Exchange``
it serves (see ``cellplane.gateway.proxy``), so response bytes go from the replica's socket to the client's
without a task switch or a copy of the body. Idle connections wait in their upstream's pool, most recently
used first: the one used last is the least likely to have been closed by the replica meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpResponseParser

from cellplane.gateway import http1
from cellplane.gateway.breaker import Circuit
from cellplane.gateway.routes import Upstream

if TYPE_CHECKING:
    from cellplane.gateway.proxy import Exchange
    from cellplane.gateway.server import GatewaySettings

log = logging.getLogger("cellplane.gateway")


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("_chunked", "_informational", "_keep_alive", "_length", "_reading_paused", "_reason", "_stale_parser",
                 "_timer", "_until_close", "_upgrade", "closed", "copied", "exchange", "last_active", "loop",
                 "parser", "pool", "responded", "reused", "transport", "tunnel", "upstream")

    def __init__(self, pool: UpstreamPool) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool = pool
        self.upstream = pool.upstream
        self.parser = HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.reused = False  # served a request before: a failure may just mean the replica closed it meanwhile
        self.closed = False
        self.tunnel = False
        self.last_active = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._stale_parser = False
        self._new_response()

    def _new_response(self) -> None:
        self.responded = False  # any byte of the response arrived
        self.copied: list[bytes] = []
        self._reason = b""
        self._length: bytes | None = None
        self._chunked = False
        self._upgrade = b"websocket"
        self._keep_alive = True
        self._until_close = False
        self._informational = False

    # -- used by the exchange ----------------------------------------------------------------------------------

    def send(self, exchange: Exchange, pieces: list[bytes]) -> None:
        """Start serving ``exchange``: write its head (and any body already received)."""
        self.exchange = exchange
        self.last_active = self.loop.time()
        assert self.transport is not None
        self.transport.writelines(pieces)
        if self._timer is None:
            self._timer = self.loop.call_later(self.pool.read_timeout, self._check_timeout)

    def write(self, pieces: tuple[bytes, ...]) -> None:
        self.last_active = self.loop.time()
        assert self.transport is not None
        self.transport.writelines(pieces)

    def release(self, reusable: bool) -> None:
        """The exchange is over: back to the pool when the connection can carry another request, else close."""
        self.exchange = None
        self._new_response()
        if self._stale_parser:
            self.parser = HttpResponseParser(self)
            self._stale_parser = False
        if self._reading_paused:
            self.resume_reading()
        if reusable and not self.closed:
            self.reused = True
            self.pool.give(self)
        else:
            self.close()

    def pause_reading(self) -> None:
        """The client cannot take more: stop reading the replica, so TCP slows it down."""
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.exchange = None
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        self.pool.discard(self)

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for: the connection is out of step, do not reuse it
            self.close()
            return
        if self.tunnel:
            exchange.tunnel_to_client(data)
            return
        self.responded = True
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as e:
            if self.exchange is exchange and exchange.upgraded:
                self.tunnel = True
                exchange.tunnel_open(data[e.args[0]:])
        except HttpParserError as e:
            if isinstance(e, HttpParserCallbackError):  # raised by the gateway's own code, not the replica
                log.error("the gateway failed on a response from %s", self.upstream, exc_info=e.__context__)
            if self.exchange is exchange:
                self.exchange = None
                self.close()
                exchange.upstream_failed(self, f"invalid response from {self.upstream}: {e}")
        if exchange.out:
            exchange.flush()

    def eof_received(self) -> None:
        """The replica closed its side: no new exchange may pick this connection from the pool any more."""
        self.closed = True
        self.pool.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        if self.tunnel:
            exchange.tunnel_closed()
        elif self._until_close:  # the body was delimited by the connection's end: this is its end
            exchange.response_end(False)
        else:
            exchange.upstream_failed(self, f"{self.upstream} closed the connection"
                                           + (f" ({exc})" if exc else ""))

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_full(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_full(False)

    # -- httptools callbacks -----------------------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname in http1.RESPONSE_HOP:
            if lname == b"transfer-encoding":  # any other final coding is delimited by the connection's end
                self._chunked = value.rstrip().lower().endswith(b"chunked")
            elif lname == b"upgrade":
                self._upgrade = value
            return
        if lname == b"content-length":
            self._length = value
        self.copied += (name, http1.COLON, value, http1.CRLF)

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim (100 Continue, 103 Early Hints): not passed on
            self._informational = True
            self.copied = []
            return
        self._keep_alive = self.parser.should_keep_alive()
        bodiless = exchange.head_request or status in (204, 304) or status == 101
        self._until_close = not bodiless and self._length is None and not self._chunked
        exchange.response_head(self, status, self._reason, self._length, self._upgrade)
        if exchange.head_request and self.exchange is exchange:
            # httptools cannot be told that a HEAD response has no body: end it here, parse on with a new parser
            self._stale_parser = True
            self._end_response()

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self.exchange is not None and not self.tunnel and not self.exchange.upgraded:
            self._end_response()

    def _end_response(self) -> None:
        exchange, self.exchange = self.exchange, None
        assert exchange is not None
        exchange.response_end(self._keep_alive)

    # -- read timeout ------------------------------------------------------------------------------------------

    def _check_timeout(self) -> None:
        """Time out an exchange after ``read_timeout`` seconds without a byte either way.

        One timer per connection, re-armed only when it fires: touching ``last_active`` is all a request pays.
        """
        self._timer = None
        exchange = self.exchange
        if exchange is None or self.tunnel or self.closed:
            return
        loop = self.loop
        timeout = self.pool.read_timeout
        if self._reading_paused:  # waiting for the client to read, not for the replica
            self.last_active = loop.time()
        left = self.last_active + timeout - loop.time()
        if left > 0:
            self._timer = loop.call_later(left, self._check_timeout)
            return
        self.exchange = None
        self.close()
        exchange.upstream_timed_out(self)


class UpstreamPool:
    """Everything the gateway keeps per upstream: idle connections, requests in flight, and the circuit.

    Routes refer to these objects directly, so the request path never hashes an ``Upstream``.
    """

    __slots__ = ("_drained", "circuit", "connect_timeout", "deployment", "idle", "inflight", "live", "name",
                 "read_timeout", "size", "upstream")

    def __init__(self, upstream: Upstream, settings: GatewaySettings) -> None:
        self.upstream = upstream
        self.name = str(upstream)  # "host:port", as the access log shows it
        self.size = settings.pool_size
        self.connect_timeout = settings.connect_timeout
        self.read_timeout = settings.read_timeout
        self.circuit = Circuit(settings.breaker_failures, settings.breaker_reset)
        self.idle: list[UpstreamConnection] = []
        self.inflight = 0
        self.live = True  # in the current route table; idle connections are kept only then
        self.deployment = ""  # whose replica this is (Gateway.demand counts its requests in flight under it)
        self._drained: asyncio.Future[None] | None = None

    def take(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        u = self.upstream
        _, conn = await asyncio.wait_for(
            asyncio.get_running_loop().create_connection(lambda: UpstreamConnection(self), u.host, u.port),
            self.connect_timeout)
        return conn

    def give(self, conn: UpstreamConnection) -> None:
        if self.live and len(self.idle) < self.size:
            self.idle.append(conn)
        else:
            conn.close()

    def discard(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    # -- in-flight accounting, for Gateway.inflight and Gateway.drain -----------------------------------------

    def begin(self) -> None:
        self.inflight += 1

    def end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._drained is not None:
            self._drained.set_result(None)
            self._drained = None

    def drained(self) -> asyncio.Future[None]:
        """A future that is done once no request is in flight here."""
        future = asyncio.get_running_loop().create_future()
        if self.inflight == 0:
            future.set_result(None)
        elif self._drained is None:
            self._drained = future
        else:
            future = self._drained
        return future
