"""Quotes: a standard-library service behind a Project-visibility endpoint.

GET /quote -> {"quote": "...", "author": "..."}, a random one.
"""

import json
import os
import random
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUOTES = [
    ("Simplicity is prerequisite for reliability.", "Edsger W. Dijkstra"),
    ("Make it work, make it right, make it fast.", "Kent Beck"),
    ("Programs must be written for people to read.", "Harold Abelson"),
    ("The best way to predict the future is to invent it.", "Alan Kay"),
    ("Premature optimization is the root of all evil.", "Donald Knuth"),
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this, keep-alive waits ~40 ms

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/quote":
            return self.reply(404, {"error": "try GET /quote"})
        quote, author = random.choice(QUOTES)  # noqa: S311
        self.reply(200, {"quote": quote, "author": author})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"quotes listening on {port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
