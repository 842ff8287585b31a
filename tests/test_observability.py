"""Observability end to end: traffic through a real gateway becomes metrics, access lines, searchable logs and
traces in the control plane; alerts fire on injected errors and resolve; retention removes old data; spans
reach an OTLP collector.

Real control plane (its alert loop every half second), real agent (metric windows of one second), real
processes built from tests/fixtures/apps/echo, real HTTP everywhere; the webhook receiver and the OTLP
collector are real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from buildkit import BuildServer
from dataplanekit import ORG, AgentProcess, build_app, deploy, poll, start_agent, wait_state
from liveserver import as_json, fails, ok, run_cli

P = "obs"
C = f"{ORG}/projects/{P}/components"


class Receiver:
    """A real HTTP server recording what is posted to it; answers ``fail_first`` requests with 500 first."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = receiver.fail_first > 0
                receiver.fail_first -= 1
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def collector() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def server_env(collector: Receiver) -> dict[str, str]:
    return {"CELLPLANE_ALERT_INTERVAL": "0.5", "CELLPLANE_RETENTION_INTERVAL": "1",
            "CELLPLANE_OTLP_ENDPOINT": collector.url + "/v1/traces"}


@pytest.fixture(scope="module")
def agent(build_server: BuildServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = start_agent(build_server.server, tmp_path_factory.mktemp("dp") / "data", build_server.cache,
                          "--metrics-interval", "1")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cell(build_server: BuildServer, agent: AgentProcess) -> dict[str, Any]:
    """obs/front (Public) calls obs-b/back (Organization) through the internal gateway and obs/store (Project)
    through the cell; obs/counted (which may call store too) and obs/flaky (Public) only take the traffic the
    tests send."""
    c = build_server.client
    build_app(c, "obs-b", "back", {"type": "service", "endpoints": [
        {"name": "api", "port": 8080, "visibility": ["Organization"]}]})
    build_app(c, P, "store", {"type": "service", "endpoints": [
        {"name": "api", "port": 8080, "visibility": ["Project"]}]})
    build_app(c, P, "front", {"type": "service", "endpoints": [
        {"name": "api", "port": 8080, "visibility": ["Public"]}], "dependencies": [
        {"name": "back", "component": "back", "project": "obs-b", "endpoint": "api"},
        {"name": "store", "component": "store"}]})
    build_app(c, P, "counted", {"type": "service", "endpoints": [  # it could call store, but never does
        {"name": "api", "port": 8080, "visibility": ["Public"]}], "dependencies": [
        {"name": "store", "component": "store"}]})
    build_app(c, P, "flaky", {"type": "service", "endpoints": [
        {"name": "api", "port": 8080, "visibility": ["Public"]}]})
    deploy(c, "obs-b", "back")
    for name in ("store", "front", "counted", "flaky"):
        deploy(c, P, name)
    for project, name in (("obs-b", "back"), (P, "store"), (P, "front"), (P, "counted"), (P, "flaky")):
        wait_state(c, project, name)
    return {"client": c, "external": agent.gateway()["external"]}


def url(cell: dict[str, Any], component: str, path: str = "/") -> str:
    return f"{cell['external']}/{P}/{component}/v1{path}"



def get(c: httpx.Client, path: str, **params: Any) -> Any:
    r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


# -- metrics --------------------------------------------------------------------------------------------------------


def test_traffic_appears_in_metrics_with_exact_counts(cell: dict[str, Any], build_server: BuildServer) -> None:
    c = cell["client"]
    with httpx.Client(timeout=10) as h:
        for _ in range(20):
            assert h.get(url(cell, "counted")).status_code == 200
        for _ in range(5):
            assert h.get(url(cell, "counted", "/status?code=503")).status_code == 503
        for _ in range(3):
            assert h.get(url(cell, "counted", "/status?code=404")).status_code == 404
    m = poll(lambda: get(c, f"{C}/counted/metrics", environment="development", since="10m"),
             lambda m: m["summary"]["requests"] >= 28)
    summary = m["summary"]
    assert (summary["requests"], summary["errors"]) == (28, 5)
    assert summary["errorRate"] == pytest.approx(5 / 28, abs=1e-6)
    assert 0 < summary["p50Ms"] <= summary["p95Ms"] <= summary["p99Ms"]
    assert [(e["endpoint"], e["requests"], e["errors"]) for e in m["endpoints"]] == [("api", 28, 5)]
    assert sum(point["requests"] for point in m["series"]) == 28
    assert m["deployment"]["state"] == "ready"
    # the runtime side: each replica's CPU and memory from its process tree
    m = poll(lambda: get(c, f"{C}/counted/metrics", environment="development", since="10m"),
             lambda m: m["replicas"] and m["summary"]["memoryBytes"])
    assert m["replicas"][0]["memoryBytes"] > 1 << 20
    assert m["replicas"][0]["cpuPercent"] is not None
    # the CLI answers the same question in a table, and as JSON
    out = ok(run_cli(build_server.server, "metrics", "counted", "-p", P, "--env", "development",
                     "--since", "10m")).stdout
    assert "28" in out and "ready" in out
    data = as_json(run_cli(build_server.server, "metrics", "counted", "-p", P, "--env", "development",
                           "--since", "10m", "-o", "json"))
    assert data["summary"]["requests"] == 28


def test_gateway_and_control_plane_expose_prometheus_metrics(cell: dict[str, Any], agent: AgentProcess,
                                                             build_server: BuildServer) -> None:
    assert httpx.get(url(cell, "counted")).status_code == 200
    scrape_url = poll(lambda: agent.status().get("metricsUrl"), bool)
    auth = {"Authorization": "Bearer " + (agent.data_dir / "metrics.token").read_text().strip()}

    def counted() -> int:  # with gateway workers, their counts reach the agent within 50 ms
        text = httpx.get(scrape_url, headers=auth, timeout=10).text
        assert 'cellplane_gateway_requests_total{' in text
        line = next((x for x in text.splitlines() if x.startswith("cellplane_gateway_requests_total{")
                     and 'component="counted"' in x and 'code="200"' in x), None)
        return 0 if line is None else int(float(line.rsplit(" ", 1)[1]))

    time.sleep(0.2)  # every request so far is counted by now
    before = counted()
    assert before >= 1
    with httpx.Client(timeout=10) as h:
        for _ in range(3):
            assert h.get(url(cell, "counted")).status_code == 200
    poll(counted, lambda n: n >= before + 3, timeout=5)
    time.sleep(0.2)
    assert counted() == before + 3  # each request counted once, by whichever process served it
    text = httpx.get(scrape_url, headers=auth, timeout=10).text
    assert "cellplane_replica_memory_bytes{" in text
    get(cell["client"], f"{C}/counted/metrics", environment="development", since="10m")
    cp = httpx.get(build_server.server.url + "/metrics", timeout=10)
    assert cp.status_code == 200
    assert 'cellplane_api_requests_total{code="200",method="GET",route="/api/v1/organizations/{org}/projects/' \
           '{project}/components/{component}/metrics"}' in cp.text
    assert "cellplane_dataplane_report_age_seconds{" in cp.text


# -- logs -----------------------------------------------------------------------------------------------------------


def test_a_log_line_is_searchable_within_two_seconds(cell: dict[str, Any], build_server: BuildServer) -> None:
    c = cell["client"]
    token = "needle-" + secrets.token_hex(6)
    assert httpx.get(url(cell, "front", f"/{token}")).status_code == 200  # echo logs every request it serves
    written = time.monotonic()
    found = poll(lambda: get(c, f"{C}/front/logs", environment="development", grep=token.upper())["items"],
                 bool, timeout=2.0, every=0.05)
    assert time.monotonic() - written <= 2.0
    assert len(found) == 1 and token in found[0]["line"] and found[0]["replica"] == 0
    # the filters combine: the replica, the stream, since
    assert get(c, f"{C}/front/logs", environment="development", grep=token, replica=0)["items"] == found
    assert get(c, f"{C}/front/logs", environment="development", grep=token, replica=1)["items"] == []
    assert get(c, f"{C}/front/logs", environment="development", grep=token, stream="stderr")["items"] == []
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert get(c, f"{C}/front/logs", environment="development", grep=token, since=later)["items"] == []
    out = ok(run_cli(build_server.server, "logs", "front", "-p", P, "--env", "development", "--grep", token,
                     "--since", "10m")).stdout
    assert token in out and out.count("\n") == 1


def test_logs_page_backwards(cell: dict[str, Any]) -> None:
    c = cell["client"]
    tag = "page-" + secrets.token_hex(4)
    with httpx.Client(timeout=10) as h:
        for i in range(5):
            assert h.get(url(cell, "front", f"/{tag}-{i}")).status_code == 200
    poll(lambda: get(c, f"{C}/front/logs", environment="development", grep=tag)["items"], lambda x: len(x) == 5)

    def numbers(page: dict[str, Any]) -> list[int]:
        return [int(x["line"].split(tag + "-")[1][0]) for x in page["items"]]

    newest = get(c, f"{C}/front/logs", environment="development", grep=tag, limit=2)
    assert (numbers(newest), newest["more"]) == ([3, 4], True)
    older = get(c, f"{C}/front/logs", environment="development", grep=tag, limit=2, before=newest["items"][0]["id"])
    assert (numbers(older), older["more"]) == ([1, 2], True)
    oldest = get(c, f"{C}/front/logs", environment="development", grep=tag, limit=2, before=older["items"][0]["id"])
    assert (numbers(oldest), oldest["more"]) == ([0], False)


def test_a_followed_search_streams_only_matching_new_lines(cell: dict[str, Any]) -> None:
    c = cell["client"]
    tag = "follow-" + secrets.token_hex(4)
    with c.stream("GET", f"{C}/front/logs", params={"environment": "development", "follow": "true",
                                                    "grep": tag}, timeout=30) as stream:
        with httpx.Client(timeout=10) as h:
            assert h.get(url(cell, "front", "/unrelated")).status_code == 200
            assert h.get(url(cell, "front", f"/{tag.upper()}")).status_code == 200
        lines = stream.iter_lines()
        first = json.loads(next(line for line in lines if line and "heartbeat" not in line))
    assert tag.upper() in first["line"] and "/unrelated" not in first["line"]


def test_access_lines_are_stored_and_filtered(cell: dict[str, Any], build_server: BuildServer) -> None:
    c = cell["client"]
    with httpx.Client(timeout=10) as h:
        assert h.get(url(cell, "flaky", "/status?code=502")).status_code == 502
        assert h.get(url(cell, "flaky", "/fine")).status_code == 200
    lines = poll(lambda: get(c, f"{C}/flaky/access-logs", environment="development", status="5xx")["items"], bool)
    assert [(x["method"], x["path"], x["status"], x["endpoint"]) for x in lines] == [("GET", "/obs/flaky/v1/status",
                                                                                      502, "api")]
    assert len(lines[0]["traceId"]) == 32 and lines[0]["durationMs"] > 0
    # the lines travel in the agent's batches: the 5xx line being there does not mean the later one is yet
    fine = poll(lambda: get(c, f"{C}/flaky/access-logs", environment="development", grep="FINE")["items"], bool)
    assert [x["status"] for x in fine] == [200]
    out = ok(run_cli(build_server.server, "logs", "flaky", "-p", P, "--env", "development", "--access",
                     "--status", "5xx")).stdout
    assert "502" in out and "/obs/flaky/v1/status" in out and "/fine" not in out


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "yesterday"}, "since"), ({"since": "-5m"}, "since"), ({"status": "5x"}, "status"),
    ({"environment": "nowhere"}, "environment"), ({}, "environment"),
])
def test_bad_filters_are_refused_with_the_field(cell: dict[str, Any], params: dict[str, str], field: str) -> None:
    params = {"environment": "development", **params} if "environment" not in params and params else params
    for path in ("access-logs", "metrics") if "status" not in params else ("access-logs",):
        r = cell["client"].get(f"{C}/flaky/{path}", params=params)
        assert r.status_code == 422, r.text
        assert [d["field"] for d in r.json()["error"]["details"]] == [field]


def test_cli_refuses_a_bad_duration_in_one_line(build_server: BuildServer) -> None:
    line = fails(run_cli(build_server.server, "metrics", "flaky", "-p", P, "--env", "development", "--since",
                         "soon"))
    assert "since" in line


# -- traces ---------------------------------------------------------------------------------------------------------


def test_a_request_through_connections_is_one_trace(cell: dict[str, Any], build_server: BuildServer,
                                                     collector: Receiver) -> None:
    c = cell["client"]
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    r = httpx.get(url(cell, "front", "/call"), params={"env": "CHOREO_BACK_SERVICEURL",
                                                       "key": "CHOREO_BACK_CHOREOAPIKEY"},
                  headers={"traceparent": f"00-{trace_id}-{parent}-01"}, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == 200, r.text
    trace = poll(lambda: c.get(f"{ORG}/traces/{trace_id}"), lambda r: r.status_code == 200 and
                 len(r.json()["spans"]) == 2).json()
    front, back = trace["spans"]
    assert (front["project"], front["component"], front["listener"], front["parentId"], front["depth"]) == \
        (P, "front", "external", parent, 0)
    assert (back["project"], back["component"], back["listener"], back["parentId"], back["depth"]) == \
        ("obs-b", "back", "internal", front["spanId"], 1)
    assert back["consumer"] == f"{P}/front"
    assert front["durationMs"] >= back["durationMs"] and back["offsetMs"] >= 0
    assert trace["root"] == f"{P}/front" and trace["error"] is False
    # listed under both components, and in the CLI's per-hop breakdown
    listed = get(c, f"{ORG}/projects/obs-b/components/back/traces", environment="development")["items"]
    assert trace_id in [t["traceId"] for t in listed]
    out = ok(run_cli(build_server.server, "traces", "front", "-p", P, "--env", "development")).stdout
    assert trace_id[:8] in out and "obs-b/back" in out
    # a trace through the cell starts at the gateway when the caller sends none
    r = httpx.get(url(cell, "front", "/call"), params={"env": "CHOREO_STORE_SERVICEURL"}, timeout=30)
    assert r.json()["status"] == 200
    started = poll(lambda: get(c, f"{C}/store/traces", environment="development")["items"], bool)
    assert [(s["component"], s["listener"], s["depth"]) for s in started[0]["spans"]] == [("front", "external", 0),
                                                                                          ("store", "cell", 1)]
    # exported over OTLP/HTTP to the operator's collector, with the same ids
    def exported() -> set[str]:
        ids = set()
        for _headers, body in collector.requests:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    ids |= {s.trace_id.hex() for s in scope.spans}
        return ids

    assert trace_id in poll(exported, lambda ids: trace_id in ids, timeout=15)


def test_slow_and_failed_traces_are_found(cell: dict[str, Any], build_server: BuildServer) -> None:
    c = cell["client"]
    assert httpx.get(url(cell, "flaky", "/slow?s=0.3"), timeout=10).status_code == 200
    assert httpx.get(url(cell, "flaky", "/status?code=500"), timeout=10).status_code == 500
    slow = poll(lambda: get(c, f"{C}/flaky/traces", environment="development", slow=250)["items"], bool)
    assert all(t["durationMs"] >= 250 for t in slow) and slow[0]["name"] == "GET /obs/flaky/v1/slow"
    failed = poll(lambda: get(c, f"{C}/flaky/traces", environment="development", errors=True)["items"],
                  lambda items: any(t["status"] == 500 for t in items))
    assert all(t["error"] for t in failed)
    out = ok(run_cli(build_server.server, "traces", "flaky", "-p", P, "--env", "development", "--slow",
                     "250ms")).stdout
    assert "/slow" in out and "/status" not in out
    assert c.get(f"{ORG}/traces/{'0' * 31}1").status_code == 404


# -- the cell -------------------------------------------------------------------------------------------------------


def test_cell_graph_shows_components_endpoints_and_connection_rates(cell: dict[str, Any],
                                                                     build_server: BuildServer) -> None:
    c = cell["client"]
    for _ in range(3):
        r = httpx.get(url(cell, "front", "/call"), params={"env": "CHOREO_BACK_SERVICEURL",
                                                           "key": "CHOREO_BACK_CHOREOAPIKEY"}, timeout=30)
        assert r.json()["status"] == 200

    def edge() -> dict[str, Any]:
        g = get(c, f"{ORG}/projects/{P}/graph", environment="development", window="10m")
        return next(x for x in g["connections"] if x["from"] == "front" and x["name"] == "back")

    back = poll(edge, lambda e: e["requests"] >= 4)
    assert back["to"] == {"project": "obs-b", "component": "back", "endpoint": "api"} and back["measured"] == "exact"
    g = get(c, f"{ORG}/projects/{P}/graph", environment="development", window="10m")
    by_name = {x["name"]: x for x in g["components"]}
    assert set(by_name) == {"counted", "flaky", "front", "store"}
    assert [(e["name"], e["visibility"]) for e in by_name["store"]["endpoints"]] == [("api", "Project")]
    assert by_name["front"]["state"] == "ready" and by_name["front"]["endpoints"][0]["url"]
    # two components may call store through the cell: the traces say which calls were front's
    store = next(x for x in g["connections"] if x["from"] == "front" and x["name"] == "store")
    assert store["requests"] >= 1 and store["measured"] == "traces"
    idle = next(x for x in g["connections"] if x["from"] == "counted" and x["name"] == "store")
    assert (idle["requests"], idle["measured"]) == (0, "shared")
    out = ok(run_cli(build_server.server, "describe", "project", P, "--env", "development")).stdout
    assert "front" in out and "obs-b/back" in out and "Public" in out


# -- alerts ---------------------------------------------------------------------------------------------------------


def test_an_alert_fires_under_errors_and_resolves_after_them(cell: dict[str, Any]) -> None:
    c = cell["client"]
    hook = Receiver(fail_first=1)  # the first delivery fails: it is retried
    try:
        r = c.post(f"{C}/flaky/alerts", json={"name": "errors", "environment": "development", "metric": "error-rate",
                                              "threshold": 20, "window": "10s", "for": "2s", "webhook": hook.url})
        assert r.status_code == 201, r.text
        rule, secret = r.json(), r.json()["webhookSecret"]
        stop = threading.Event()

        def traffic(path: str) -> None:
            with httpx.Client(timeout=10) as h:
                while not stop.is_set():
                    h.get(url(cell, "flaky", path))
                    time.sleep(0.05)

        errors = threading.Thread(target=traffic, args=("/status?code=500",))
        errors.start()
        try:
            poll(lambda: get(c, f"{ORG}/alerts/{rule['id']}"), lambda x: x["state"] == "firing", timeout=60)
        finally:
            stop.set()
            errors.join()
        stop.clear()
        healthy = threading.Thread(target=traffic, args=("/",))
        healthy.start()
        try:
            poll(lambda: get(c, f"{ORG}/alerts/{rule['id']}"), lambda x: x["state"] == "ok", timeout=60)
        finally:
            stop.set()
            healthy.join()
        events = poll(lambda: get(c, f"{ORG}/alerts/{rule['id']}/events")["items"],
                      lambda items: items and items[0]["delivery"]["state"] == "delivered", timeout=60)
        assert [(e["state"], bool(e["firedAt"]), bool(e["resolvedAt"])) for e in events] == [("resolved", True, True)]
        assert events[0]["value"] > 20
        delivered = poll(lambda: [json.loads(b) for h, b in hook.requests],
                         lambda bodies: {b["state"] for b in bodies} >= {"firing", "resolved"}, timeout=60)
        assert len(hook.requests) >= 3  # firing (failed, then retried) and resolved
        for headers, body in hook.requests:
            signed = f"{headers['x-cellplane-timestamp']}.".encode() + body
            expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-cellplane-signature"], expected)
        assert all(secret not in json.dumps(b) for b in delivered)
    finally:
        hook.close()


# -- retention ------------------------------------------------------------------------------------------------------


def test_retention_removes_old_data(cell: dict[str, Any]) -> None:
    c = cell["client"]
    plane = f"{ORG}/dataplanes/local"
    old, fresh = datetime.now(UTC) - timedelta(days=8), datetime.now(UTC)
    tag = "retained-" + secrets.token_hex(4)

    def line(at: datetime, text: str) -> dict[str, Any]:
        return {"environment": "development", "project": P, "component": "counted", "replica": 0,
                "stream": "stdout", "at": at.isoformat(), "line": text}

    def access(at: datetime, path: str) -> dict[str, Any]:
        return {"environment": "development", "project": P, "component": "counted", "endpoint": "api",
                "at": at.isoformat(), "method": "GET", "path": path, "status": 200, "durationMs": 1.0,
                "bytesSent": 10, "decision": "allowed", "listener": "external/development"}

    def span(at: datetime, trace: str) -> dict[str, Any]:
        return {"traceId": trace, "spanId": secrets.token_hex(8), "environment": "development", "project": P,
                "component": "counted", "endpoint": "api", "listener": "external", "name": "GET /",
                "start": at.isoformat(), "durationMs": 1.0, "status": 200}

    old_trace, fresh_trace = secrets.token_hex(16), secrets.token_hex(16)
    assert c.post(plane + "/logs", json={"lines": [line(old, tag + "-old"), line(fresh, tag + "-new")]}).json() == \
        {"accepted": 2}
    assert c.post(plane + "/access-logs", json={"lines": [access(old, f"/{tag}-old"),
                                                          access(fresh, f"/{tag}-new")]}).json() == {"accepted": 2}
    assert c.post(plane + "/spans", json={"spans": [span(old, old_trace),
                                                    span(fresh, fresh_trace)]}).json() == {"accepted": 2}
    point = {"kind": "http", "environment": "development", "project": P, "component": "counted", "endpoint": "api",
             "consumer": "", "seconds": 1.0, "requests": 7, "errors": 0, "clientErrors": 0, "durationSum": 0.007,
             "buckets": [7] + [0] * 13}
    assert c.post(plane + "/metrics", json={"points": [
        {**point, "at": (fresh - timedelta(days=31)).isoformat()},
        {**point, "at": (fresh - timedelta(days=2)).isoformat()}]}).json() == {"accepted": 2}

    def remaining() -> tuple[Any, ...]:
        lines = [x["line"] for x in get(c, f"{C}/counted/logs", environment="development", grep=tag)["items"]]
        paths = [x["path"] for x in get(c, f"{C}/counted/access-logs", environment="development", grep=tag)["items"]]
        spans = tuple(c.get(f"{ORG}/traces/{t}").status_code for t in (old_trace, fresh_trace))
        return lines, paths, spans

    lines, paths, spans = poll(remaining, lambda r: r[0] == [tag + "-new"] and r[2] == (404, 200))
    assert (lines, paths, spans) == ([tag + "-new"], [f"/{tag}-new"], (404, 200))
    # the 31-day-old point is gone; the 2-day-old one was merged into a five-minute point, its count kept
    two_days = get(c, f"{C}/counted/metrics", environment="development", since="3d", step=86400)
    three_days_ago = [x for x in two_days["series"] if x["requests"] == 7]
    assert len(three_days_ago) == 1
    month = get(c, f"{C}/counted/metrics", environment="development", since="40d", step=86400)
    assert not any(x["at"] < (fresh - timedelta(days=30)).isoformat() and x["requests"] for x in month["series"])


@pytest.fixture(autouse=True)
def _no_traceback_in_the_server_log(build_server: BuildServer) -> Iterator[None]:
    yield
    log = Path(build_server.server.log_path).read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
