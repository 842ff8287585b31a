"""The gateway's worker processes, from the agent's side: start them, keep them in step, take in what they report.

One uvloop process tops out at one core. With ``workers`` set, the agent's ``Gateway`` starts that many more
processes (``cellplane.gateway.worker``), each with a ``Gateway`` of its own that accepts on the agent's listening
sockets: the kernel hands each new connection to one of the processes waiting on the socket, and the connection
stays with it. The agent stays the one place of record: every route table, listener and drain goes to every
worker (in order, over one stream per worker), and the workers' access-log entries, spans and metric counts come
back to the agent's callbacks and ``Metrics`` within ``worker.FLUSH`` seconds. A worker that exits unasked is
replaced (its open connections are lost with it) with the current routes and listeners.

Scaling: a worker holds requests for a deployment at zero itself and sends ("wake", id) up once per episode; the
agent's activator dedups them with its own (one ``wake`` call per episode across processes) and sends
("wake-failed", id, reason) down when the wake-up failed. Each worker's demand (``Gateway.demand``: its levels,
and its counts since its previous report) rides on its batches, sent at least every ``worker.FLUSH`` seconds
while it changes; the agent's ``Gateway.demand`` adds them up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cellplane.gateway.demand import Demand
from cellplane.gateway.ipc import HEADER, frame, load
from cellplane.gateway.routes import ListenerSpec, RouteTable, Upstream

if TYPE_CHECKING:
    from cellplane.gateway.server import Gateway

log = logging.getLogger("cellplane.gateway")
SEND_TIMEOUT = 5.0  # a worker that does not read for this long is stuck: it is replaced
RESTART_DELAY = 1.0  # seconds before a worker that exited is replaced


@dataclass
class WorkerProcess:
    number: int
    process: asyncio.subprocess.Process
    down: socket.socket
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None
    drains: set[int] = field(default_factory=set)  # drains this worker has not answered yet
    routed: int = 0  # the version of the last route table it confirmed
    levels: dict[str, tuple[int, int]] = field(default_factory=dict)  # deployment -> (in flight, held), non-zero


class Workers:
    def __init__(self, gateway: Gateway, count: int, token_secret: bytes) -> None:
        self.gateway = gateway
        self.count = count
        self._secret = token_secret
        self._workers: list[WorkerProcess | None] = [None] * count
        self._listeners: dict[str, tuple[ListenerSpec, int]] = {}  # key -> (spec with its port, listening fd)
        self._table: RouteTable | None = None
        self._version = 0  # of the route table; each worker confirms the versions it routes by
        self._routed = asyncio.Event()  # set while every live worker routes by the latest version
        self._routed.set()
        self._drains: dict[int, tuple[asyncio.Future[bool], set[int]]] = {}  # id -> (result, workers left)
        self._drain_ids = itertools.count(1)
        self._closing = False
        self._restarts: set[asyncio.Task[None]] = set()
        self._counted: dict[str, Demand] = {}  # the workers' counts since demand() last read them

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w is not None and w.process.returncode is None]

    async def start(self) -> None:
        for number in range(self.count):
            await self._start(number)

    async def _start(self, number: int) -> None:
        down, down_child = socket.socketpair()
        up, up_child = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cellplane.gateway.worker", str(down_child.fileno()), str(up_child.fileno()),
                pass_fds=(down_child.fileno(), up_child.fileno()), stdin=asyncio.subprocess.DEVNULL)
        finally:
            down_child.close()
            up_child.close()
        down.settimeout(SEND_TIMEOUT)
        reader, writer = await asyncio.open_unix_connection(sock=up)
        worker = WorkerProcess(number, process, down, reader, writer)
        self._workers[number] = worker
        worker.task = asyncio.get_running_loop().create_task(self._read(worker), name=f"gateway-worker-{number}")
        settings = self.gateway.settings
        self._send(worker, ("settings", settings, self._secret, self.count + 1))
        if self._table is not None:
            self._routed.clear()
            self._send(worker, ("routes", self._version, self._table))
        for spec, fd in self._listeners.values():
            self._send(worker, ("listen", spec), fd)

    # -- what the agent's gateway does, passed on ----------------------------------------------------------------

    def update(self, table: RouteTable) -> None:
        self._table = table
        self._version += 1
        if any(w is not None for w in self._workers):
            self._routed.clear()
        self._broadcast(("routes", self._version, table))

    async def routed(self, timeout: float) -> bool:
        """Wait until every live worker confirmed the latest route table: a replica the agent calls ready is then
        routed by whichever process a client reaches."""
        try:
            await asyncio.wait_for(self._routed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _check_routed(self) -> None:
        if all(w is None or w.routed >= self._version for w in self._workers):
            self._routed.set()

    def listen(self, spec: ListenerSpec, fd: int) -> None:
        self._listeners[spec.key] = (spec, fd)
        self._broadcast(("listen", spec), fd)

    def close_listener(self, key: str) -> None:
        if self._listeners.pop(key, None) is not None:
            self._broadcast(("close", key))

    def wake_failed(self, deployment: str, reason: str) -> None:
        self._broadcast(("wake-failed", deployment, reason))

    def demand(self) -> dict[str, Demand]:
        """The live workers' levels as last reported, and their counts since the previous call."""
        out, self._counted = self._counted, {}
        for worker in self._workers:
            if worker is None:
                continue
            for deployment, (inflight, held) in worker.levels.items():
                demand = out.get(deployment)
                if demand is None:
                    demand = out[deployment] = Demand()
                demand.inflight += inflight
                demand.held += held
        return out

    def _absorb_demand(self, worker: WorkerProcess, report: dict[str, tuple[int, int, int, int, float]]) -> None:
        worker.levels = {d: (v[0], v[1]) for d, v in report.items() if v[0] or v[1]}
        for deployment, (_, _, requests, cold_starts, seconds) in report.items():
            if requests or cold_starts:
                demand = self._counted.get(deployment)
                if demand is None:
                    demand = self._counted[deployment] = Demand()
                demand.requests += requests
                demand.cold_starts += cold_starts
                demand.cold_start_seconds += seconds

    async def drain(self, upstreams: list[Upstream], timeout: float) -> bool:
        """Whether every worker saw the requests on ``upstreams`` end within ``timeout``."""
        live = [w for w in self._workers if w is not None]
        if not live:
            return True
        drain_id = next(self._drain_ids)
        result: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._drains[drain_id] = (result, {w.number for w in live})
        for worker in live:
            worker.drains.add(drain_id)
            self._send(worker, ("drain", drain_id, upstreams, timeout))
        try:
            return await asyncio.wait_for(asyncio.shield(result), timeout + SEND_TIMEOUT)
        except TimeoutError:
            return False
        finally:
            self._drains.pop(drain_id, None)

    async def close(self) -> None:
        """Stop every worker: each closes its listeners and connections and reports its last requests first."""
        self._closing = True
        for task in self._restarts:
            task.cancel()
        live = [w for w in self._workers if w is not None]
        for worker in live:
            self._send(worker, ("stop",))
        for worker in live:
            try:
                await asyncio.wait_for(asyncio.shield(worker.process.wait()), 10)
            except TimeoutError:
                log.error("gateway worker %d (pid %d) did not stop; killing it", worker.number, worker.process.pid)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()
            if worker.task is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(worker.task, 5)
            worker.down.close()

    # -- the two streams -----------------------------------------------------------------------------------------

    def _broadcast(self, message: tuple[Any, ...], fd: int | None = None) -> None:
        for worker in self._workers:
            if worker is not None:
                self._send(worker, message, fd)

    def _send(self, worker: WorkerProcess, message: tuple[Any, ...], fd: int | None = None) -> None:
        data = frame(message)
        try:
            if fd is None:
                worker.down.sendall(data)
            else:  # the descriptor travels with the first bytes; the rest of a long message follows
                sent = socket.send_fds(worker.down, [data], [fd])
                if sent < len(data):
                    worker.down.sendall(data[sent:])
        except OSError as e:  # gone, or stuck for SEND_TIMEOUT seconds (TimeoutError)
            if not self._closing and worker.process.returncode is None:
                log.error("gateway worker %d (pid %d) does not take messages (%s); replacing it", worker.number,
                          worker.process.pid, e)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()

    async def _read(self, worker: WorkerProcess) -> None:
        reader = worker.reader
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                (size,) = HEADER.unpack(header)
                data = await reader.readexactly(size)
                self._handle(worker, data)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            worker.writer.close()
            self._gone(worker)

    def _handle(self, worker: WorkerProcess, data: bytes) -> None:
        message = load(data)
        kind = message[0]
        if kind == "batch":
            _, keys, entries, spans, counts, demand = message
            self.gateway.absorb(keys, entries, spans, counts)
            if demand is not None:
                self._absorb_demand(worker, demand)
        elif kind == "wake":
            self.gateway.activator.wake(message[1])
        elif kind == "drained":
            self._answered(worker, message[1], message[2])
        elif kind == "routed":
            worker.routed = max(worker.routed, message[1])  # a confirmation waiting for a listener may come late
            self._check_routed()

    def _answered(self, worker: WorkerProcess, drain_id: int, drained: bool) -> None:
        worker.drains.discard(drain_id)
        waiting = self._drains.get(drain_id)
        if waiting is None:
            return
        result, left = waiting
        left.discard(worker.number)
        if not drained and not result.done():
            result.set_result(False)
        elif not left and not result.done():
            result.set_result(True)

    def _gone(self, worker: WorkerProcess) -> None:
        """A worker's stream ended: it stopped, or died. Its drains are over (its connections went with it)."""
        for drain_id in list(worker.drains):
            self._answered(worker, drain_id, True)
        if self._closing or self._workers[worker.number] is not worker:
            return
        self._workers[worker.number] = None
        worker.down.close()
        self._check_routed()  # its replacement confirms the table it gets
        log.error("gateway worker %d (pid %d) exited; starting another in %gs", worker.number, worker.process.pid,
                  RESTART_DELAY)
        task = asyncio.get_running_loop().create_task(self._restart(worker))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, worker: WorkerProcess) -> None:
        await worker.process.wait()
        await asyncio.sleep(RESTART_DELAY)
        if not self._closing:
            await self._start(worker.number)
