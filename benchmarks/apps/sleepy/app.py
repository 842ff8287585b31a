"""The scaling benchmark's slow service: every request waits ``DELAY`` seconds (50 ms by default), then answers
its process id, so a client sees which replica served it. Standard library only.

    PORT=8080 python app.py      # GET /?s=0.05 -> {"pid": 1234}
"""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

DELAY = float(os.environ.get("DELAY", "0.05"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        time.sleep(min(float(query.get("s", [DELAY])[0]), 5.0))
        data = json.dumps({"pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would be the benchmark's busiest log


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"sleepy listening on {port}", flush=True)
    Server(("127.0.0.1", port), Handler).serve_forever()
