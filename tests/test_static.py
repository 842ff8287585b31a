"""The static file server, run as a real subprocess and spoken to over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from liveserver import free_port

# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so supervisors see why it stopped.
STOPPED = (0, -signal.SIGTERM)
INDEX = "<!doctype html><title>app</title><div id=root></div>\n"
SECRET = "top secret, outside the root\n"


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """SIGTERM, then the exit code (killing it if it hangs: that fails the caller's assertion)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -999
        return self.process.returncode


def start(root: Path, *extra: str, port: int | None = None, env: dict[str, str] | None = None) -> Server:
    """Start ``python -m cellplane.runtime.static`` and wait until GET / answers."""
    port = port or free_port()
    args = [sys.executable, "-m", "cellplane.runtime.static", "--root", str(root), "--host", "127.0.0.1", *extra]
    if "--port" not in extra and not (env and "PORT" in env):
        args += ["--port", str(port)]
    log = root.parent / f"static-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = Server(process, port, log)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            pytest.fail(f"static server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(server.url + "/", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"static server did not answer within 30s:\n{log.read_text()}")
        time.sleep(0.1)


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """Send ``GET target`` byte for byte (httpx would normalise ``..`` away) and return (status, response)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("static")
    root = base / "site"
    write(root / "index.html", INDEX)
    write(root / "app.css", "body { color: red }\n")
    write(root / "assets" / "x.js", "console.log('x')\n")
    write(root / "docs" / "index.html", "<p>docs</p>\n")
    write(root / "healthz", "app's own health file\n")
    write(root / ".env", "SECRET=1\n")
    write(base / "secret.txt", SECRET)
    (root / "leak.txt").symlink_to(base / "secret.txt")
    (root / "inside.txt").symlink_to("app.css")
    return root


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[Server]:
    srv = start(site)
    yield srv
    assert srv.stop() in STOPPED, srv.log.read_text()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_index_is_served(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.text == INDEX
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    assert "etag" in r.headers
    assert "last-modified" in r.headers


def test_asset_has_its_content_type(client: httpx.Client) -> None:
    r = client.get("/app.css")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/css")
    assert r.text == "body { color: red }\n"


def test_hashed_assets_are_immutable(client: httpx.Client) -> None:
    r = client.get("/assets/x.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_directory_serves_its_index(client: httpx.Client) -> None:
    for path in ("/docs", "/docs/"):
        r = client.get(path)
        assert (r.status_code, r.text) == (200, "<p>docs</p>\n"), path


def test_spa_fallback_for_routes(client: httpx.Client) -> None:
    r = client.get("/some/route")
    assert r.status_code == 200
    assert r.text == INDEX
    assert r.headers["cache-control"] == "no-cache"
    r = client.get("/users/jane.doe", headers={"accept": "text/html,application/xhtml+xml"})
    assert (r.status_code, r.text) == (200, INDEX)


def test_missing_assets_are_404(client: httpx.Client) -> None:
    for path in ("/missing.js", "/assets/missing.js", "/assets/no-extension", "/static/chunk"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert INDEX not in r.text


def test_healthz_is_not_special(client: httpx.Client) -> None:
    assert client.get("/healthz").text == "app's own health file\n"


@pytest.mark.parametrize("target", [
    "/../etc/passwd",
    "/../secret.txt",
    "/assets/../../secret.txt",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/%2e%2e/secret.txt",
    "/..%2fsecret.txt",
    "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
])
def test_traversal_is_404(server: Server, target: str) -> None:
    status, data = raw_get(server.port, target)
    assert status == 404, data
    assert b"root:" not in data
    assert SECRET.encode() not in data


def test_encoded_traversal_through_httpx(client: httpx.Client) -> None:
    r = client.get("/%2e%2e/%2e%2e/etc/passwd")
    assert r.status_code == 404
    assert "root:" not in r.text


def test_symlink_leaving_root_is_404(client: httpx.Client) -> None:
    r = client.get("/leak.txt")
    assert r.status_code == 404
    assert SECRET not in r.text
    assert client.get("/inside.txt").text == "body { color: red }\n"


def test_dotfiles_are_not_served(client: httpx.Client) -> None:
    r = client.get("/.env")
    assert r.status_code == 404
    assert "SECRET" not in r.text


def test_only_get_and_head(client: httpx.Client) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        r = client.request(method, "/")
        assert r.status_code == 405, method
    assert client.post("/some/route").status_code == 405
    head = client.head("/app.css")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len("body { color: red }\n"))


def test_conditional_requests_get_304(client: httpx.Client) -> None:
    first = client.get("/assets/x.js")
    r = client.get("/assets/x.js", headers={"if-none-match": first.headers["etag"]})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == first.headers["etag"]
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    r = client.get("/assets/x.js", headers={"if-modified-since": first.headers["last-modified"]})
    assert r.status_code == 304
    r = client.get("/assets/x.js", headers={"if-none-match": '"something-else"'})
    assert r.status_code == 200


def test_no_spa_and_port_from_environment(site: Path) -> None:
    port = free_port()
    srv = start(site, "--no-spa", port=port, env={"PORT": str(port)})
    try:
        assert httpx.get(f"{srv.url}/some/route", timeout=10).status_code == 404
        assert httpx.get(f"{srv.url}/docs/", timeout=10).status_code == 200
    finally:
        assert srv.stop() in STOPPED, srv.log.read_text()


def test_sigterm_stops_the_server(site: Path) -> None:
    srv = start(site)
    assert srv.stop() in STOPPED, srv.log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url + "/", timeout=2)


def test_bad_root_fails_fast(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "cellplane.runtime.static", "--root", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "is not a directory" in result.stderr
