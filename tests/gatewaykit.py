"""Test kit for the gateway: a small HTTP/1.1 upstream app and a harness running the gateway on a uvloop thread.

The gateway and the apps share one event loop in a background thread, so the tests themselves can use plain
blocking clients (httpx, raw sockets) and check what the upstreams saw.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import uvloop

from cellplane.gateway.auth import cell_credential
from cellplane.gateway.routes import Backend, Grant, ListenerKind, ListenerSpec, RouteTable, Upstream
from cellplane.gateway.server import Gateway, GatewaySettings
from liveserver import free_port as free_port  # re-exported: a port nothing listens on

T = TypeVar("T")
BLOCK = bytes(range(256)) * 256  # 64 KiB of a known pattern, for large bodies
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CELL_KEY = b"the cell key of the gateway tests"


def pattern(n: int) -> Iterable[bytes]:
    """``n`` bytes of the known pattern, in 64 KiB pieces."""
    while n > 0:
        piece = BLOCK if n >= len(BLOCK) else BLOCK[:n]
        n -= len(piece)
        yield piece


def pattern_digest(n: int) -> str:
    h = hashlib.sha256()
    for piece in pattern(n):
        h.update(piece)
    return h.hexdigest()


def port_of(url: str) -> int:
    """The port of a listener's URL (``http://127.0.0.1:PORT``)."""
    return int(url.rsplit(":", 1)[1])


class App:
    """A tiny upstream. By path:

    ``/slow?s=1``      echo after a delay
    ``/download?n=N&mode=length|chunked|close&cut=C``  N bytes of the pattern (the connection cut after C)
    ``/status?code=C`` an empty response with that status
    ``/ws``            a WebSocket echo (text frames)
    anything else      echo: {"app", "method", "path", "headers", "body_len", "body_sha256"}

    ``fail_with`` makes every request answer that status instead; ``drop_reused`` closes a connection without
    an answer when a second request comes on it (as a replica does whose keep-alive timeout just passed).
    """

    def __init__(self, name: str, fail_with: int | None = None, drop_reused: bool = False) -> None:
        self.name = name
        self.fail_with = fail_with
        self.drop_reused = drop_reused
        self.connections = 0  # accepted so far
        self.open = 0  # open now
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def upstream(self) -> Upstream:
        return Upstream("127.0.0.1", self.port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self._writers.add(writer)
        try:
            served = 0
            while await self._request(reader, writer, served):
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, served: int) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        if served and self.drop_reused:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        self.requests += 1
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        digest, size = hashlib.sha256(), 0
        async for piece in _body(reader, headers):
            digest.update(piece)
            size += len(piece)
        if self.fail_with is not None:
            _respond(writer, self.fail_with, b"failing\n", keep)
        elif url.path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
            await self._websocket(reader, writer, headers)
            return False
        elif url.path == "/download":
            return await self._download(writer, int(query.get("n", "0")), query.get("mode", "length"), keep,
                                        int(query.get("cut", "-1")))
        elif url.path == "/status":
            _respond(writer, int(query["code"]), b"", keep)
        else:
            if url.path == "/slow":
                await asyncio.sleep(float(query.get("s", "1")))
            body = json.dumps({"app": self.name, "method": method, "path": target, "headers": headers,
                               "body_len": size, "body_sha256": digest.hexdigest()}).encode()
            _respond(writer, 200, b"" if method == "HEAD" else body, keep, length=len(body),
                     content_type=b"application/json")
        await writer.drain()
        return keep

    async def _download(self, writer: asyncio.StreamWriter, n: int, mode: str, keep: bool, cut: int) -> bool:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        if mode == "length":
            head += b"Content-Length: %d\r\n" % n
        elif mode == "chunked":
            head += b"Transfer-Encoding: chunked\r\n"
        else:
            head += b"Connection: close\r\n"
            keep = False
        writer.write(head + b"\r\n")
        for piece in pattern(n if cut < 0 else cut):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if mode == "chunked" else piece)
            await writer.drain()
        if cut >= 0:
            return False
        if mode == "chunked":
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep

    async def _websocket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         headers: dict[str, str]) -> None:
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 8:
                writer.write(frame(8, payload, mask=False))
                await writer.drain()
                return
            writer.write(frame(opcode, b"echo: " + payload, mask=False))
            await writer.drain()


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    if "chunked" in headers.get("transfer-encoding", ""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)
    left = int(headers.get("content-length", "0"))
    while left > 0:
        piece = await reader.read(min(left, 1 << 16))
        if not piece:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(piece)
        yield piece


def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, keep: bool, length: int | None = None,
             content_type: bytes = b"text/plain") -> None:
    head = b"HTTP/1.1 %d X\r\nContent-Type: %s\r\n" % (status, content_type)
    if status not in (204, 304):
        head += b"Content-Length: %d\r\n" % (len(body) if length is None else length)
    if not keep:
        head += b"Connection: close\r\n"
    writer.write(head + b"\r\n" + body)


def frame(opcode: int, payload: bytes, mask: bool = True) -> bytes:
    """One WebSocket frame (FIN set); clients must mask, servers must not."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    else:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    n = second & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    key = await reader.readexactly(4) if second & 0x80 else None
    payload = await reader.readexactly(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


class Harness:
    """A gateway and its upstream apps on a uvloop event loop in a background thread."""

    def __init__(self, settings: GatewaySettings | None = None, failing_log: bool = False, workers: int = 0,
                 wake: Callable[[str], None] | None = None) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self.thread.start()
        self.log: list[dict[str, Any]] = []
        self.spans: list[dict[str, Any]] = []
        self.apps: list[App] = []

        def access_log(entry: dict[str, Any]) -> None:
            self.log.append(entry)
            if failing_log:
                raise RuntimeError("the access log is broken")

        async def make() -> Gateway:
            gateway = Gateway(settings, access_log=access_log, span=self.spans.append, workers=workers, wake=wake)
            await gateway.start()
            return gateway

        self.gateway = self.run(make())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a plain function on the gateway's loop (the gateway is not thread-safe)."""

        async def call() -> T:
            return fn(*args)

        return self.run(call())

    def app(self, name: str, fail_with: int | None = None, drop_reused: bool = False) -> App:
        app = App(name, fail_with, drop_reused)
        self.run(app.start())
        self.apps.append(app)
        return app

    def listen(self, kind: ListenerKind, environment: str = "dev", project: str | None = None) -> str:
        """The listener's base URL; a cell listener's with the cell's credential (as its workloads get it)."""
        if kind != "cell":
            port = self.run(self.gateway.ensure_listener(ListenerSpec(kind, environment, project)))
            return f"http://127.0.0.1:{port}"
        credential = self.cell_credential(environment, project or "")
        port = self.run(self.gateway.ensure_listener(ListenerSpec(kind, environment, project, credential=credential)))
        return f"http://127.0.0.1:{port}/_cell/{credential}"

    def cell_credential(self, environment: str, project: str) -> str:
        return cell_credential(CELL_KEY, environment, project)

    def routes(self, *backends: Backend, grants: tuple[Grant, ...] = ()) -> None:
        self.call(self.gateway.update, RouteTable(backends, grants))
        assert self.run(self.gateway.routed()), "a gateway worker did not confirm the route table"

    def close(self) -> None:
        self.run(self.gateway.close())
        for app in self.apps:
            self.run(app.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def backend(project: str, component: str, *upstreams: Upstream | App, endpoint: str = "api", base_path: str = "/",
            visibility: Iterable[str] = ("Public",), environment: str = "dev", version: str = "v1",
            deployment: str = "", wake: bool = False) -> Backend:
    ups = tuple(u.upstream if isinstance(u, App) else u for u in upstreams)
    return Backend(environment, project, component, endpoint, version, base_path, frozenset(visibility), ups,
                   deployment, wake)


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the gateway sends until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                piece = s.recv(65536)
            except TimeoutError:
                break
            if not piece:
                break
            chunks.append(piece)
    return b"".join(chunks)


class WakePlane:
    """A test data plane for the activator: ``wake`` (the gateway's callback, on its loop) records the call and, if
    ``auto``, starts a real upstream app after ``delay`` seconds and routes it (or, with ``fail``, reports the wake-up
    failed). ``start`` does the same on the test's say-so. The deployment is one backend at /{project}/{component}/v1.
    """

    def __init__(self, project: str = "shop", component: str = "api", deployment: str = "dep-1", delay: float = 0.3,
                 auto: bool = True, fail: str | None = None) -> None:
        self.project = project
        self.component = component
        self.deployment = deployment
        self.delay = delay
        self.auto = auto
        self.fail = fail
        self.wakes: list[str] = []
        self.h: Harness | None = None
        self.app: App | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, harness: Harness) -> None:
        self.h = harness
        self.route_at_zero()

    def backend(self, *upstreams: Upstream | App) -> Backend:
        return backend(self.project, self.component, *upstreams, deployment=self.deployment, wake=True)

    def route_at_zero(self) -> None:
        """The route table of the deployment scaled to zero: its backend, no upstream, ``wake``."""
        assert self.h is not None
        self.h.routes(self.backend())

    def wake(self, deployment: str) -> None:
        self.wakes.append(deployment)
        if self.auto:
            task = asyncio.get_running_loop().create_task(self._start(self.delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start(self, delay: float) -> None:
        await asyncio.sleep(delay)
        assert self.h is not None
        if self.fail is not None:
            self.h.gateway.wake_failed(self.deployment, self.fail)
            return
        app = App("woken")
        await app.start()
        self.h.apps.append(app)
        self.app = app
        self.h.gateway.update(RouteTable((self.backend(app),)))

    def start(self) -> App:
        """Start the replica now (from the test's thread) and wait until every process routes it."""
        assert self.h is not None
        self.h.run(self._start(0))
        assert self.h.run(self.h.gateway.routed()), "a gateway worker did not confirm the route table"
        assert self.app is not None
        return self.app
