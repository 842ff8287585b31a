"""A gateway worker process: ``python -m cellplane.gateway.worker DOWN_FD UP_FD`` (the agent starts it).

It runs a ``Gateway`` of its own on uvloop, accepting on the agent's listening sockets, with the route tables the
agent sends it (see ``cellplane.gateway.workers``). What its requests produce goes up to the agent in batches, at
most ``FLUSH`` seconds after the request: access-log entries (their values; the keys once per batch), sampled
spans and metric counts (``Metrics.take``), and its demand (``Gateway.demand``) whenever it changed, checked every
``FLUSH`` seconds. Its activator holds its own requests for deployments at zero; it asks the agent to wake them
("wake", once per episode here; the agent dedups across processes). It stops when told to, or when the agent's
end of "down" closes (the agent is gone); SIGINT and SIGTERM are left to the agent, which stops its workers itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from typing import Any

from cellplane.gateway.ipc import MAX_FDS, Decoder, frame
from cellplane.gateway.routes import ListenerSpec, RouteTable, Upstream
from cellplane.gateway.server import Gateway, GatewaySettings

log = logging.getLogger("cellplane.gateway")
FLUSH = 0.05  # seconds between a request's end and its batch going up, at most


class Worker:
    def __init__(self, down: socket.socket, up: asyncio.Transport) -> None:
        self.down = down
        self.up = up
        self.gateway: Gateway | None = None
        self.decoder = Decoder()
        self.keys: tuple[str, ...] | None = None
        self.entries: list[tuple[Any, ...]] = []
        self.spans: list[dict[str, Any]] = []
        self.flush_at: asyncio.TimerHandle | None = None
        self.stopped = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[None]] = set()
        self.listening: asyncio.Task[None] | None = None  # the last listener opened or closed
        self.sent_levels: dict[str, tuple[int, int]] = {}  # the demand levels the agent has
        self.tick: asyncio.TimerHandle | None = None

    # -- what the requests produce ----------------------------------------------------------------------------

    def access(self, entry: dict[str, Any]) -> None:
        if self.keys is None:
            self.keys = tuple(entry)
        self.entries.append(tuple(entry.values()))
        self._soon()

    def span(self, span: dict[str, Any]) -> None:
        self.spans.append(span)
        self._soon()

    def _soon(self) -> None:
        if self.flush_at is None:
            self.flush_at = asyncio.get_running_loop().call_later(FLUSH, self.flush)

    def flush(self) -> None:
        self.flush_at = None
        counts = self.gateway.metrics.take() if self.gateway is not None else []
        demand = self._demand()
        if self.entries or self.spans or counts or demand is not None:
            entries, self.entries = self.entries, []
            spans, self.spans = self.spans, []
            self.up.write(frame(("batch", self.keys, entries, spans, counts, demand)))

    def _demand(self) -> dict[str, tuple[int, int, int, int, float]] | None:
        """This process's demand for the agent, when it differs from what the agent has: every deployment with
        something in flight or counted (one missing is at zero)."""
        if self.gateway is None:
            return None
        report = {d: (x.inflight, x.held, x.requests, x.cold_starts, x.cold_start_seconds)
                  for d, x in self.gateway.demand().items() if x.inflight or x.counted()}
        levels = {d: (v[0], v[1]) for d, v in report.items() if v[0] or v[1]}
        if levels == self.sent_levels and not any(v[2] or v[3] for v in report.values()):
            return None
        self.sent_levels = levels
        return report

    def _tick(self) -> None:
        self.tick = asyncio.get_running_loop().call_later(FLUSH, self._tick)
        self.flush()

    def wake(self, deployment: str) -> None:
        self.up.write(frame(("wake", deployment)))

    # -- what the agent says ----------------------------------------------------------------------------------

    def readable(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.down, 1 << 16, MAX_FDS)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:  # the agent is gone
            self._stop()
            return
        for message in self.decoder.feed(data, fds):
            self.handle(message)

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "settings":
            settings: GatewaySettings = message[1]
            self.gateway = Gateway(settings, access_log=self.access, token_secret=message[2], span=self.span,
                                   share=message[3], wake=self.wake)
            self.gateway.activator.counts_cold_starts = False  # the agent counts each wake-up once
            self._tick()
        elif self.gateway is None:
            raise RuntimeError(f"a gateway worker got {kind!r} before its settings")
        elif kind == "routes":
            table: RouteTable = message[2]
            self.gateway.update(table)
            self._confirm(message[1])
        elif kind == "listen":
            spec: ListenerSpec = message[1]
            sock = socket.socket(fileno=self.decoder.fds.popleft())
            self._in_order(self.gateway.ensure_listener(spec, sock=sock))
        elif kind == "close":
            self._in_order(self.gateway.close_listener(message[1]))
        elif kind == "wake-failed":
            self.gateway.wake_failed(message[1], message[2])
        elif kind == "drain":
            self._spawn(self._drain(message[1], message[2], message[3]))
        elif kind == "stop":
            self._stop()

    async def _drain(self, drain_id: int, upstreams: list[Upstream], timeout: float) -> None:
        assert self.gateway is not None
        drained = await self.gateway.drain(upstreams, timeout)
        self.up.write(frame(("drained", drain_id, drained)))

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _confirm(self, version: int) -> None:
        """Confirm a route table once the listeners opened and closed before it are: a confirmation tells the agent
        that this worker serves by everything it sent until then (a listener closed before a table no longer
        accepts here; one opened before it does)."""
        pending = self.listening
        if pending is None or pending.done():
            self.up.write(frame(("routed", version)))
            return

        async def after_listeners() -> None:
            with contextlib.suppress(Exception):
                await pending
            self.up.write(frame(("routed", version)))

        self._spawn(after_listeners())

    def _in_order(self, work: Any) -> None:
        """Open and close listeners one after the other, as the agent did: a close never overtakes its open."""
        previous = self.listening

        async def after_previous() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await work

        self.listening = self._spawn(after_previous())

    def _stop(self) -> None:
        if not self.stopped.done():
            self.stopped.set_result(None)


class Up(asyncio.Protocol):
    """The worker's end of "up": only written; ``closed`` is done once what was written is sent and it is closed."""

    def __init__(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def serve(down_fd: int, up_fd: int) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: None)
    down = socket.socket(fileno=down_fd)
    down.setblocking(False)
    up_sock = socket.socket(fileno=up_fd)
    up, protocol = await loop.create_unix_connection(Up, sock=up_sock)
    worker = Worker(down, up)
    loop.add_reader(down.fileno(), worker.readable)
    await worker.stopped
    loop.remove_reader(down.fileno())
    if worker.tick is not None:
        worker.tick.cancel()
    if worker.gateway is not None:
        await worker.gateway.close()
    for task in list(worker.tasks):
        task.cancel()
    worker.flush()  # the last requests' entries and counts
    up.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(protocol.closed, 10)


def main() -> None:
    import uvloop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
