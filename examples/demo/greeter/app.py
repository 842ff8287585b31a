"""Greeter: a standard-library service behind a Public endpoint; it calls quotes through a connection.

GET /greeting?name=Ada -> {"greeting": "Hello, Ada!", "quote": {...}}

The platform injects the connection's URL as CHOREO_QUOTES_SERVICEURL (the dependency `quotes` in
demo.yaml): the quotes service's route on this project's cell listener.
"""

import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

QUOTES_URL = os.environ.get("CHOREO_QUOTES_SERVICEURL", "http://127.0.0.1:8081")


def fetch_quote(traceparent: str | None) -> dict:
    # Forwarding the W3C traceparent the gateway sent joins the call to quotes to this request's trace
    # (OpenTelemetry instrumentation does this by itself).
    headers = {"traceparent": traceparent} if traceparent else {}
    request = urllib.request.Request(QUOTES_URL + "/quote", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return json.load(response)
    except (OSError, ValueError) as e:
        return {"error": f"quotes is unavailable: {e}"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this, keep-alive waits ~40 ms

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != "/greeting":
            return self.reply(404, {"error": "try GET /greeting?name=Ada"})
        name = parse_qs(url.query).get("name", ["world"])[0][:100]
        self.reply(200, {"greeting": f"Hello, {name}!", "quote": fetch_quote(self.headers.get("traceparent"))})

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.send_header("Allow", "GET, OPTIONS")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"greeter listening on {port}; quotes at {QUOTES_URL}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
