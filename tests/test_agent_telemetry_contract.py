"""What a real agent sends besides its status: the bodies of ``POST …/logs``, ``…/task-runs``, ``…/access-logs``,
``…/metrics`` and ``…/spans``, as the bytes on the wire.

A real agent (the loop and ``LocalRuntime``, in-process) runs a service and a manual task from two small artifacts
against a recording control plane: a real HTTP server on 127.0.0.1 that registers it, serves it the desired state
and the artifacts, and keeps every body it is sent. A request through the gateway (with a sampled
``traceparent``) makes an access line, a span and an http metric point; the service's output, the agent's events and
the task's run make log lines and task runs; the metrics window makes replica points.

Each body must parse with the control plane's model of that call (what its route does), be JSON as httpx writes it
(compact, UTF-8), and hold items with the keys, in the order, and the forms of values (times as
``2026-12-07T13:51:53.123456+00:00``, numbers as integers or floats) recorded in
``fixtures/contract/agent-telemetry.json`` from the agent that built these items as dicts, before the contract's
models. ``CELLPLANE_WRITE_GOLDEN=1`` writes that file again.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from pydantic import BaseModel

from cellplane.contract import (
    AccessBatch,
    AccessLineSent,
    LogBatch,
    MetricBatch,
    SpanBatch,
    SpanSent,
    TaskRunBatch,
)
from cellplane.dataplane.agent import Agent, AgentSettings
from cellplane.dataplane.cpclient import wire
from cellplane.dataplane.runtimes.local import BUILD_DELAY, BUILD_STEP, LocalRuntime
from cellplane.digests import sha256_file
from desiredkit import RecordingRuntime, deployment_wire, state_wire

GOLDEN = Path(__file__).parent / "fixtures" / "contract" / "agent-telemetry.json"
SPOOL = GOLDEN.with_name("spool")  # what an agent spooled before the contract's models
BASE = "/api/v1/organizations/default/dataplanes/local"
MODELS: dict[str, type[BaseModel]] = {"logs": LogBatch, "task-runs": TaskRunBatch, "access-logs": AccessBatch,
                                      "metrics": MetricBatch, "spans": SpanBatch}
ITEMS = {"logs": "lines", "task-runs": "runs", "access-logs": "lines", "metrics": "points", "spans": "spans"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$")
RUN_ID = "run_00000000000000aa"

SERVER = """\
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("serving on", os.environ["PORT"], flush=True)
print("a warning", file=sys.stderr, flush=True)
http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"""
TASK = "print('task ran', flush=True)\n"


def artifact(root: Path, name: str, script: str) -> tuple[str, bytes]:
    """A Python artifact that runs ``script``: its digest and its .tar.gz."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, data in (("manifest.json", json.dumps({"language": "python", "run": "python main.py"})),
                           ("files/main.py", script)):
            raw = data.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(raw), 0o644
            tar.addfile(info, io.BytesIO(raw))
    (root / name).write_bytes(buffer.getvalue())
    return sha256_file(root / name), buffer.getvalue()


class Recorder(ThreadingHTTPServer):
    """The control plane's side of the agent's calls: register, serve one desired state and its artifacts, keep
    every body posted (call name -> raw bodies)."""

    def __init__(self, desired: dict[str, Any], artifacts: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.desired = desired
        self.artifacts = artifacts
        self.bodies: dict[str, list[bytes]] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def received(self, call: str) -> list[bytes]:
        with self.lock:
            return list(self.bodies.get(call, []))


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_PUT(self) -> None:
        self._body()
        self._answer(200, json.dumps({"environments": ["development"]}).encode())

    def do_POST(self) -> None:
        body, call = self._body(), self.path.removeprefix(BASE + "/")
        with self.server.lock:
            self.server.bodies.setdefault(call, []).append(body)
        self._answer(200, b"{}")

    def do_GET(self) -> None:
        if self.path.startswith(BASE + "/desired-state"):
            self._answer(200, json.dumps(self.server.desired).encode())
            return
        digest = self.path.rsplit("/", 1)[-1]
        if digest in self.server.artifacts:
            self._answer(200, self.server.artifacts[digest], "application/gzip")
        else:
            self._answer(404, b'{"error": {"message": "no such artifact"}}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    service_digest, service = artifact(tmp_path, "service.tar.gz", SERVER)
    task_digest, task = artifact(tmp_path, "task.tar.gz", TASK)
    endpoint = {"name": "api", "port": 8080, "type": "REST", "basePath": "/", "visibility": ["Public"]}
    desired = state_wire([
        deployment_wire(id="dep_000000000001", component="api", artifact={"digest": service_digest},
                        endpoints=[endpoint]),
        deployment_wire(id="dep_000000000002", component="nightly", type="manual-task", replicas=0,
                        artifact={"digest": task_digest})],
        organization="default",
        runs=[{"id": RUN_ID, "deployment": "dep_000000000002", "environment": "development", "project": "shop",
               "component": "nightly", "requestedAt": "2026-12-07T13:00:00+00:00"}])
    server = Recorder(desired, {service_digest: service, task_digest: task})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_agent(recorder: Recorder, data: Path) -> None:
    """Start the agent, wait for the service, send it one traced request, and stop once every call was made."""
    settings = AgentSettings(controlplane=recorder.url, token="t", data_dir=data, metrics_port=None,
                             metrics_interval=0.5)
    runtime = LocalRuntime(settings)

    async def body() -> None:
        agent = Agent(settings, runtime)
        await agent.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while not any(r.state == "ready" for w in runtime.workloads.values() if w.active is not None
                          for r in w.active.replicas):
                assert loop.time() < deadline, "the service never became ready"
                await asyncio.sleep(0.1)
            url = runtime.network.report()["development"].external + "/shop/api/v1/hello"
            async with httpx.AsyncClient() as client:
                answer = await client.get(url, headers={
                    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    "x-request-id": "req-1"})
            assert answer.status_code == 200, answer.text
            while not all(recorder.received(call) for call in MODELS):
                assert loop.time() < deadline, f"not sent: {[c for c in MODELS if not recorder.received(c)]}"
                await asyncio.sleep(0.1)
            while not (any(b'"state":"succeeded"' in b for b in recorder.received("task-runs"))
                       and all(any(kind in b for b in recorder.received("metrics"))
                               for kind in (b'"kind":"http"', b'"kind":"replica"'))):
                assert loop.time() < deadline, "no ended run, or not both kinds of metric points"
                await asyncio.sleep(0.1)
        finally:
            await agent.stop()

    uvloop.run(body())


def form(value: Any) -> Any:
    """A value as the golden keeps it: its form (a time's text, text, an integer or a float, null)."""
    if isinstance(value, str):
        return "<time>" if TIME.match(value) else "<text>"
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return f"<{type(value).__name__}>"
    if isinstance(value, list):
        return sorted({json.dumps(form(v)) for v in value})
    return f"<{type(value).__name__}>"


def shapes(call: str, bodies: list[bytes]) -> dict[str, Any]:
    """The items of a call's bodies: their distinct key orders, and the forms each key's values took."""
    keys: list[list[str]] = []
    forms: dict[str, list[Any]] = {}
    for body in bodies:
        for item in json.loads(body)[ITEMS[call]]:
            if list(item) not in keys:
                keys.append(list(item))
            for key, value in item.items():
                if form(value) not in forms.setdefault(key, []):
                    forms[key].append(form(value))
    return {"keys": sorted(keys), "forms": {key: sorted(f, key=json.dumps) for key, f in sorted(forms.items())}}


def write_spool(recorded: dict[str, list[bytes]]) -> None:
    """Items of each call as an outbox spooled them before the contract's models (``json.dumps`` of the dict, one a
    line): the first few, and one of each kind of metric point."""
    SPOOL.mkdir(exist_ok=True)
    for call, bodies in recorded.items():
        items = [item for body in bodies for item in json.loads(body)[ITEMS[call]]]
        kept = [next(i for i in items if i["kind"] == kind) for kind in ("http", "replica")] if call == "metrics" \
            else items[:3]
        (SPOOL / f"{call}.jsonl").write_text("".join(json.dumps(item) + "\n" for item in kept))


def test_every_batch_a_real_agent_sends_parses_with_the_control_planes_model_as_the_json_it_always_sent(
        recorder: Recorder, tmp_path: Path) -> None:
    run_agent(recorder, tmp_path / "agent")
    recorded = {call: recorder.received(call) for call in MODELS}
    for call, bodies in recorded.items():
        for body in bodies:
            MODELS[call].model_validate_json(body)  # what the control plane's route does with it
            assert json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode() == body
    got = {call: shapes(call, bodies) for call, bodies in recorded.items()}
    if os.environ.get("CELLPLANE_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
        write_spool(recorded)
    golden = json.loads(GOLDEN.read_text())
    for call in MODELS:
        assert got[call]["keys"] == golden[call]["keys"], call  # every kind of item, its keys in their order
        new = {key: [f for f in forms if f not in golden[call]["forms"].get(key, [])]
               for key, forms in got[call]["forms"].items()}
        assert {key: f for key, f in new.items() if f} == {}, call  # no value in a form it never had
    texts = [item[key] for body in recorded["logs"] for item in json.loads(body)["lines"] for key in ("line",)]
    assert "serving on" in " ".join(texts) and "a warning" in texts and "task ran" in texts
    spans = [s for body in recorded["spans"] for s in json.loads(body)["spans"]]
    assert any(s["traceId"] == "0af7651916cd43dd8448eb211c80319c" and s["parentId"] == "b7ad6b7169203331"
               for s in spans)


def test_what_an_agent_spooled_before_the_contracts_models_is_sent_by_the_agent_after_them_as_it_was_written(
        recorder: Recorder, tmp_path: Path) -> None:
    """The spool files in fixtures/contract/spool are what an outbox wrote while the control plane was away, when
    the items were dicts (``json.dumps``, one a line): the next agent sends each item as it was, in order."""
    data = tmp_path / "agent"
    (data / "spool").mkdir(parents=True)
    spooled = {}
    for call in MODELS:
        text = (SPOOL / f"{call}.jsonl").read_text()
        (data / "spool" / f"{call}.jsonl").write_text(text)
        spooled[call] = [json.loads(line) for line in text.splitlines()]
    settings = AgentSettings(controlplane=recorder.url, token="t", data_dir=data, metrics_port=None)

    async def body() -> None:
        agent = Agent(settings, RecordingRuntime())
        await agent.start()
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while not all(recorder.received(call) for call in MODELS):
                assert asyncio.get_running_loop().time() < deadline, "the spool was not sent"
                await asyncio.sleep(0.05)
        finally:
            await agent.stop()

    uvloop.run(body())
    for call, items in spooled.items():
        assert len(recorder.received(call)) == 1, call
        assert recorder.received(call)[0] == json.dumps({ITEMS[call]: items}, ensure_ascii=False,
                                                        separators=(",", ":")).encode(), call
        MODELS[call].model_validate_json(recorder.received(call)[0])
        assert not (data / "spool" / f"{call}.jsonl").exists()  # all delivered


class Sinks:
    """What the local runtime hands its host, kept."""

    def __init__(self) -> None:
        self.access: list[AccessLineSent] = []
        self.spans: list[SpanSent] = []

    def access_line(self, line: AccessLineSent) -> None:
        self.access.append(line)

    def span(self, span: SpanSent) -> None:
        self.spans.append(span)


ENTRY = {"ts": 1796651842.5, "listener": "external/development", "environment": "development", "project": "shop",
         "component": "api", "endpoint": "api", "method": "GET", "path": "/shop/api/v1/hello", "status": 200,
         "duration_ms": 1.25, "bytes_sent": 5, "upstream": "127.0.0.1:1", "decision": "allowed", "reason": None,
         "request_id": "req-1", "consumer": None, "trace_id": None}
SPAN = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "parentId": None,
        "environment": "development", "project": "shop", "component": "api", "endpoint": "api",
        "listener": "external", "name": "GET /shop/api/v1/hello", "start": "2026-12-07T13:57:22.250000+00:00",
        "durationMs": 1.25, "status": 200, "consumer": None, "requestId": "req-1"}


def test_the_gateways_spans_and_access_entries_are_built_into_models_after_the_request_a_step_at_a_time(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """On the request path the local runtime only gathers what the gateway hands it; the models are built a quarter
    of a second later, BUILD_STEP at each turn of the event loop. One the contract refuses (a span id that is not
    16 hex digits) is dropped, counted and said once; the others go on."""
    runtime = LocalRuntime(AgentSettings(controlplane="http://127.0.0.1:1", token="t", data_dir=tmp_path,
                                         access_log_rate=1e9))
    sinks = Sinks()

    async def body() -> None:
        runtime._loop = asyncio.get_running_loop()
        runtime.host = sinks  # type: ignore[assignment]  # only the two sinks are reached
        for i in range(BUILD_STEP + 50):
            runtime._access_line({**ENTRY, "request_id": f"req-{i}"})
            runtime._gathered_span({**SPAN, "spanId": "not-hex" if i in (3, 4) else SPAN["spanId"]})
        assert (sinks.access, sinks.spans) == ([], [])  # nothing built on the request path
        await asyncio.sleep(BUILD_DELAY + 0.05)
        assert len(sinks.access) >= BUILD_STEP
        await asyncio.sleep(0)  # the rest at the loop's next turns
        await asyncio.sleep(0)

    uvloop.run(body())
    assert [line.requestId for line in sinks.access] == [f"req-{i}" for i in range(BUILD_STEP + 50)]
    assert wire(sinks.access[0]) == {
        "environment": "development", "project": "shop", "component": "api", "endpoint": "api",
        "at": "2026-12-07T13:57:22.500000+00:00", "method": "GET", "path": "/shop/api/v1/hello", "status": 200,
        "durationMs": 1.25, "bytesSent": 5, "decision": "allowed", "reason": None, "consumer": None,
        "requestId": "req-0", "traceId": None, "listener": "external/development"}
    assert len(sinks.spans) == BUILD_STEP + 48 and wire(sinks.spans[0]) == SPAN
    assert runtime.refused_items == 2
    said = [r.getMessage() for r in caplog.records if "would refuse" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("a span the control plane would refuse is not sent"), said
