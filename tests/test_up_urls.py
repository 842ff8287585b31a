"""`cellplane up --demo` prints a URL only once it answers: on the first run, and on a second run on the same data
directory a while later, when the previous run's status file still names the gateways and the control plane shows
the stopped data plane as unreachable ("has not reported since ...") until the new one reports.

Real processes and real HTTP on 127.0.0.1, with a demo of one small standard-library service. Each printed URL is
requested once, the moment it appears on stdout, without a retry: it must answer (the gateway's listener with any
HTTP response; the service's URL and the curl line with the service's own answer, never a refused connection, the
gateway's 404 or its 503).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from cellplane.controlplane.dataplanes import STALE_AFTER, unreachable_since
from cellplane.store import Store
from cellplane.store.tables import ResourceRow
from liveserver import CELLPLANE, free_port

DEMO = """\
apiVersion: cellplane.dev/v1alpha1
kind: Project
metadata: {name: quick}
---
apiVersion: cellplane.dev/v1alpha1
kind: Component
metadata:
  name: hello
  project: quick
  annotations:
    cellplane.dev/demo-source: hello
    cellplane.dev/demo-try: /hello?name=Ada
spec:
  type: service
  endpoints: [{name: api, port: 8080, type: REST, basePath: /, visibility: [Public]}]
"""

APP = """\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = (200, {"hello": "Ada"}) if self.path.startswith("/hello") else (404, {"error": "try /hello"})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

FIRST_RUN_TIMEOUT = 240.0  # one build on a small machine
SECOND_RUN_TIMEOUT = 90.0


def _demo(tmp: Path) -> Path:
    source = tmp / "demo" / "hello"
    source.mkdir(parents=True)
    (source / "app.py").write_text(APP)
    (source / "requirements.txt").write_text("# standard library only\n")
    (tmp / "demo" / "demo.yaml").write_text(DEMO)
    return tmp / "demo" / "demo.yaml"


def _until_printed(process: subprocess.Popen[bytes], stdout: Path, stderr: Path, marker: str,
                   timeout: float) -> str:
    """Stdout as soon as the pattern ``marker`` is on it (read every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not re.search(marker, text := stdout.read_text()):
        assert process.poll() is None, f"up exited with {process.returncode}\n{text}\n{stderr.read_text()}"
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout:.0f}s\n{text}\n{stderr.read_text()}"
        time.sleep(0.05)
    return text


def _answer(url: str) -> httpx.Response:
    try:
        return httpx.get(url, timeout=10)
    except httpx.TransportError as e:
        raise AssertionError(f"{url} was printed but does not answer: {type(e).__name__} {e}") from None


def _as_after_a_break(data_dir: Path) -> None:
    """What a break of ``STALE_AFTER`` seconds and one more leaves in the stopped planes' database, without the
    wait: every data plane's last report (``status.agent.lastSeen``, the one time staleness is computed from) that
    much earlier. The next control plane then shows the data plane as unreachable, as it would after the break."""
    store = Store(f"sqlite:///{data_dir / 'cellplane.db'}")
    try:
        with store.transaction() as s:
            planes = s.scalars(select(ResourceRow).where(ResourceRow.kind == "DataPlane")).all()
            reported = [p for p in planes if (p.status or {}).get("agent", {}).get("lastSeen")]
            assert reported, "no data plane has reported"
            for plane in reported:
                agent = plane.status["agent"]
                earlier = datetime.fromisoformat(agent["lastSeen"]) - timedelta(seconds=STALE_AFTER + 1)
                plane.status = {**plane.status, "agent": {**agent, "lastSeen": earlier.isoformat()}}
        with store.transaction() as s:
            for plane in s.scalars(select(ResourceRow).where(ResourceRow.kind == "DataPlane")).all():
                assert unreachable_since(plane) is not None, plane.status
    finally:
        store.dispose()


def _run(tmp: Path, run: int, port: int, cache: Path, demo: Path, timeout: float) -> None:
    """One `up --demo`: each URL answers the moment it is printed; then Ctrl-C."""
    stdout, stderr = tmp / f"up{run}.out", tmp / f"up{run}.err"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env["CELLPLANE_CONFIG"] = str(tmp / "config.yaml")
    process = subprocess.Popen(
        [str(CELLPLANE), "up", "--data-dir", str(tmp / "data"), "--port", str(port), "--gateway-port", "0",
         "--cache-dir", str(cache), "--demo", str(demo)],
        stdout=stdout.open("w"), stderr=stderr.open("w"), env=env, start_new_session=True, cwd=tmp)
    try:
        summary = _until_printed(process, stdout, stderr, r"gateway +development: .*\n", timeout)
        for listener in re.findall(r"gateway +\w+: (http://127\.0\.0\.1:\d+)", summary):
            _answer(listener + "/")  # the gateway's own 404 is its answer at its root
        text = _until_printed(process, stdout, stderr, "Next:", timeout)
        public = re.search(r"public API +(http://127\.0\.0\.1:\d+/quick/hello/v1)", text)
        curl = re.search(r"curl '(http://127\.0\.0\.1:\d+/quick/hello/v1/hello\?name=Ada)'", text)
        assert public and curl, f"{text}\n{stderr.read_text()}"
        root = _answer(public.group(1))
        assert root.status_code == 404 and root.json() == {"error": "try /hello"}, root.text  # the service's own
        tried = _answer(curl.group(1))
        assert tried.status_code == 200 and tried.json() == {"hello": "Ada"}, tried.text
        assert "unreachable" not in text + stderr.read_text(), text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, stdout.read_text() + stderr.read_text()
    finally:
        if process.poll() is None:  # a failed check: Ctrl-C stops both planes (SIGKILL of `up` would leave them)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.timeout(FIRST_RUN_TIMEOUT + SECOND_RUN_TIMEOUT + 180)
def test_up_prints_the_demo_urls_only_once_they_answer_on_the_first_run_and_the_next(tmp_path: Path,
                                                                                    build_cache: Path) -> None:
    demo, port = _demo(tmp_path), free_port()
    _run(tmp_path, 1, port, build_cache, demo, FIRST_RUN_TIMEOUT)
    _as_after_a_break(tmp_path / "data")  # the control plane shows the stopped data plane as unreachable
    _run(tmp_path, 2, port, build_cache, demo, SECOND_RUN_TIMEOUT)
    assert "nothing is rebuilt" in (tmp_path / "up2.err").read_text()
