"""The gateway benchmark's upstream: answers any request with the same small 200, keeping the connection open.

It must never be the bottleneck of what the benchmark compares (direct, the Cellplane gateway, nginx), so it
parses only what it must: each request ends at its blank line (``\\r\\n\\r\\n``; GETs without bodies are
expected), and one fixed response is written per request, pipelined requests answered in one write. A request
asking for ``Connection: close`` (or HTTP/1.0) gets its answer and then the connection is closed.

    PORT=8080 python app.py      # listens on 127.0.0.1:$PORT
"""

import asyncio
import os
import signal

BODY = b"ok\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(BODY)) + BODY
END = b"\r\n\r\n"
MAX_HEAD = 65536


class Answer(asyncio.Protocol):
    __slots__ = ("pending", "transport")

    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        if self.pending:
            data = self.pending + data
        count = data.count(END)
        if count:
            rest = data[data.rfind(END) + 4:]
            if b"lose" in data or b"HTTP/1.0" in data:  # rare: look properly for a request that ends here
                return self._closing(data)
            self.transport.write(RESPONSE * count if count > 1 else RESPONSE)
            self.pending = rest
        else:
            self.pending = data
        if len(self.pending) > MAX_HEAD:
            self.transport.close()

    def _closing(self, data):
        start = 0
        while (end := data.find(END, start)) >= 0:
            head = data[start:end].lower()
            self.transport.write(RESPONSE)
            if b"\r\nconnection: close" in head or head.split(b"\r\n", 1)[0].endswith(b"http/1.0"):
                self.transport.close()
                return
            start = end + 4
        self.pending = data[start:]

    def connection_lost(self, exc):
        self.transport = None


async def serve(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, "127.0.0.1", port, backlog=4096, reuse_address=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print(f"upstream listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await stop


def main():
    port = int(os.environ.get("PORT", "8080"))
    try:
        import uvloop
    except ImportError:
        print("uvloop is missing: running on the standard event loop", flush=True)
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
