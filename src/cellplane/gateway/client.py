"""The client side of a listener: one HTTP/1.x connection, parsed with httptools.

Requests are answered one at a time, in order. A pipelining client's next requests are parsed (reading is
paused at once, so only what already arrived is held) and served when their turn comes. Once an upgrade to
WebSocket succeeds, the connection becomes a byte tunnel to the replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser

from cellplane.gateway import http1
from cellplane.gateway.request import BadRequest, BodySink, Request, VersionNotSupported

if TYPE_CHECKING:
    from cellplane.gateway.listener import Listener
    from cellplane.gateway.proxy import Exchange
    from cellplane.gateway.router import Route

log = logging.getLogger("cellplane.gateway")

EARLY_LIMIT = 65536  # bytes a WebSocket client may send before the replica accepted the upgrade


class HeadTooLarge(Exception):
    """The request head exceeds max_header_bytes or max_headers (431)."""


class Handler(BodySink, Protocol):
    """What serves a request once its head is in: an ``Exchange``, or a request the gateway answers itself."""

    def abort(self) -> None: ...

    def client_eof(self) -> bool: ...

    def client_full(self, full: bool) -> None: ...


class ClientConnection(asyncio.Protocol):
    # Why reading the client is paused; reading resumes once no reason is left.
    QUEUE, BODY, UPSTREAM = 1, 2, 4

    __slots__ = ("_current", "_early", "_eof", "_handler", "_head_seen", "_idle_timer", "_in_head", "_max_head",
                 "_max_headers", "_paused", "_queue", "_read_body", "_req", "_tunnel", "closed", "gateway",
                 "last_active", "listener", "local_host", "loop", "parser", "peer", "transport", "write_paused")

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.gateway = listener.gateway
        self.loop = asyncio.get_running_loop()
        settings = self.gateway.settings
        self._max_head = settings.max_header_bytes
        self._max_headers = settings.max_headers
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.peer = b"-"
        self.local_host = b"localhost"
        self.closed = False
        self.write_paused = False
        self.last_active = 0.0
        self._req: Request | None = None  # the request being parsed
        self._current: Request | None = None  # the request being served (or whose unread body is skipped)
        self._handler: Handler | None = None
        self._queue: deque[Request] = deque()
        self._paused = 0
        self._in_head = False
        self._head_seen = 0
        self._read_body = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._early: list[bytes] | None = None  # bytes after a WebSocket request head, until the 101
        self._tunnel: Exchange | None = None
        self._eof = False  # the client shut down its sending side

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = str(peer[0]).encode()
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            self.local_host = f"{local[0]}:{local[1]}".encode()
        self.listener.connections.add(self)
        self.last_active = self.loop.time()
        self._idle_timer = self.loop.call_later(self.gateway.settings.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.tunnel_to_upstream(data)
            return
        if self._early is not None:
            self._early.append(data)
            if sum(map(len, self._early)) > EARLY_LIMIT:
                self.transport.abort()
            return
        self._read_body = 0  # body bytes in this read: they are not head bytes of a request begun in it
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as e:
            self._upgrade_requested(data[e.args[0]:])
        except HttpParserCallbackError as e:
            self._protocol_error(e.__context__ or e)
        except HttpParserError as e:
            self._protocol_error(e)
        else:
            if self._in_head:  # a head arriving in pieces: bound what the parser holds before it says more
                self._head_seen += len(data) - self._read_body
                if self._head_seen > self._max_head:
                    self._protocol_error(HeadTooLarge())

    def eof_received(self) -> bool:
        """A client that half-closes after its request still gets the answer (unless its handler says it cannot
        go on: a held request); an idle one is closed now."""
        self._eof = True
        handler = self._handler
        if handler is not None and handler.client_eof():
            return False  # closed: connection_lost aborts the handler
        return self._current is not None and self._tunnel is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.connections.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._queue.clear()
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.abort()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._handler is not None:
            self._handler.client_full(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._handler is not None:
            self._handler.client_full(False)

    # -- httptools callbacks -----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._req = Request(time.perf_counter())
        self._in_head = True
        self._head_seen = 0
        if self._current is None:
            self.last_active = self.loop.time()

    def on_url(self, url: bytes) -> None:
        req = self._req
        assert req is not None
        req.target += url
        req.head_size += len(url)
        if req.head_size > self._max_head:
            raise HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self._req
        assert req is not None
        req.nheaders += 1
        req.head_size += len(name) + len(value) + 4
        if req.nheaders > self._max_headers or req.head_size > self._max_head:
            raise HeadTooLarge
        req.header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        req = self._req
        assert req is not None
        p = self.parser
        version = p.get_http_version()  # the parser takes 0.9, 1.0, 1.1 and 2.0 and refuses the rest
        if version != "1.1" and version != "1.0":
            raise VersionNotSupported(f"HTTP/{version} is not spoken here; send HTTP/1.1")
        req.head_done(p.get_method(), version == "1.1", p.should_keep_alive(), p.should_upgrade())
        if self._current is None:
            self._serve(req)
        else:
            self._queue.append(req)
            self.pause_input(self.QUEUE)

    def on_body(self, body: bytes) -> None:
        req = self._req
        assert req is not None
        self._read_body += len(body)
        req.body(body)

    def on_message_complete(self) -> None:
        req = self._req
        assert req is not None
        req.end()
        if req.answered and req is self._current:
            self._next()

    # -- serving requests --------------------------------------------------------------------------------------

    def _serve(self, req: Request) -> None:
        if self.closed:  # a queued request whose connection went away before its turn
            return
        self._current = req
        self.listener.serve(self, req)

    def handle(self, req: Request, handler: Handler) -> None:
        """Let ``handler`` serve ``req`` (the listener's choice); it calls ``answered`` when done."""
        self._handler = handler
        req.serve(handler)

    def answered(self, req: Request, keep_alive: bool) -> None:
        """The response to ``req`` is written; go on with the next request once its own body is in."""
        req.answered = True
        req.sink = None
        self._handler = None
        if self.closed:
            return
        self.resume_input(self.BODY | self.UPSTREAM)  # whatever the handler paused for is over
        if not keep_alive or (not req.complete and (req.expect_continue or self._eof)):
            self._close()
        elif req.complete:
            self._next()
        # else: the rest of the body is read and dropped; on_message_complete goes on

    def refuse(self, req: Request, status: int, code: str, message: str, decision: str,
               route: Route | None = None) -> None:
        """Answer with one of the gateway's own errors (404, 403, 400, ...)."""
        keep_alive = req.keep_alive and not (req.expect_continue and not req.complete)
        data = http1.response(status, http1.error_body(code, message), keep_alive=keep_alive, http11=req.http11,
                              head_only=req.method == b"HEAD")
        self.transport.write(data)
        self.listener.record(req, status, route, None, decision, message, None, len(data))
        self.answered(req, keep_alive)

    def _next(self) -> None:
        self._current = None
        self.last_active = self.loop.time()
        if self._queue:
            req = self._queue.popleft()
            self._current = req
            # not from inside the callback that finished the previous response (possibly a replica's read)
            self.loop.call_soon(self._serve, req)
            if not self._queue:
                self.resume_input(self.QUEUE)
        elif self._eof:
            self._close()
        else:
            self.resume_input(self.QUEUE)

    def _upgrade_requested(self, rest: bytes) -> None:
        req = self._req
        if req is not None and req.websocket and req is self._current and not req.answered:
            self._early = [rest] if rest else []
        elif rest:  # an upgrade the gateway does not do (h2c, ...): served as a plain request, parse on
            self.data_received(rest)

    def open_tunnel(self, exchange: Exchange) -> None:
        early, self._early = self._early or [], None
        self._tunnel = exchange
        for data in early:
            exchange.tunnel_to_upstream(data)

    def _protocol_error(self, error: BaseException) -> None:
        """A request the parser (or the head limits) refused: answer 400, 431 or 505 and close."""
        if isinstance(error, HeadTooLarge):
            status, code, message = 431, "header-too-large", (
                f"the request head exceeds {self._max_head} bytes or {self._max_headers} headers")
        elif isinstance(error, VersionNotSupported):
            status, code, message = 505, "version-not-supported", str(error)
        elif isinstance(error, BadRequest | HttpParserError):
            status, code, message = 400, "bad-request", f"malformed request: {error}"
        else:
            log.error("gateway failed on a request", exc_info=error)
            status, code, message = 500, "internal", "the gateway failed on this request"
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.abort()
        if self.closed:
            return
        req = self._req or Request(time.perf_counter())
        data = http1.response(status, http1.error_body(code, message), keep_alive=False)
        self.transport.write(data)
        self.listener.record(req, status, None, None, "error", message, None, len(data))
        self._close()

    # -- flow control and idleness -----------------------------------------------------------------------------

    def pause_input(self, reason: int) -> None:
        if not self._paused and not self.closed:
            self.transport.pause_reading()
        self._paused |= reason

    def resume_input(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and not self.closed:
                self.transport.resume_reading()

    def _check_idle(self) -> None:
        """Close the connection after ``idle_timeout`` without a request (a head must arrive within it, too).

        One timer per connection, re-armed when it fires rather than on every request.
        """
        timeout = self.gateway.settings.idle_timeout
        now = self.loop.time()
        if self._current is not None:
            self.last_active = now
        left = self.last_active + timeout - now
        if left > 0:
            self._idle_timer = self.loop.call_later(left, self._check_idle)
        else:
            self._idle_timer = None
            self._close()

    def _close(self) -> None:
        """Close once what was written is sent."""
        self.closed = True
        self.transport.close()
