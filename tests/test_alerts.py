"""Alert rules against a real control plane (evaluating every half second) over real HTTP: metric points and task
runs are reported through the agent API as a data plane would, and notifications land on a real webhook receiver
(an HTTP server in a thread) that checks nothing itself: the tests verify the signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, OSV, component, failed_why, upload, wait
from cellplane.contract.telemetry import MetricPoint
from cellplane.controlplane.platform import Platform
from cellplane.controlplane.telemetry import alerts, metrics
from cellplane.store.tables import AlertEventRow
from fakeagentkit import Agent
from liveserver import LiveServer, doc, start_server

ORG = "/organizations/default"
API = f"{ORG}/projects/shop/components/api"
JOB = f"{ORG}/projects/shop/components/job"
NBUCKETS = 14
INTERVAL = "0.5"  # seconds between evaluations


# -- a webhook receiver ---------------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; ``failures[path]`` answers 500 that many times first, ``delays[path]`` answers late."""

    url: str
    requests: list[Received] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(got := self.at(path)) < count:
            assert time.monotonic() < deadline, f"{path}: {len(got)} of {count} notifications after {timeout}s"
            time.sleep(0.1)
        return got


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                fail = state.failures.get(self.path, 0)
                if fail:
                    state.failures[self.path] = fail - 1
            time.sleep(state.delays.get(self.path, 0))
            self.send_response(500 if fail else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def verify(secret: str, note: Received) -> dict[str, Any]:
    """The notification's body, after checking its signature the way a receiver would."""
    timestamp = note.headers["x-cellplane-timestamp"]
    assert abs(int(timestamp) - time.time()) < 120
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + note.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(note.headers["x-cellplane-signature"], expected)
    assert note.headers["content-type"] == "application/json"
    return note.json


# -- the control plane ----------------------------------------------------------------------------------------------


@dataclass
class Setup:
    server: LiveServer
    client: httpx.Client
    agent: Agent
    job_build: dict[str, Any]
    secrets: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[Setup]:
    osv = tmp_path_factory.mktemp("osv")
    for f in OSV.glob("*.json"):
        shutil.copy(f, osv / f.name)
    server = start_server(tmp_path_factory.mktemp("cp-alerts") / "data",
                          env={"CELLPLANE_ALERT_INTERVAL": INTERVAL, "CELLPLANE_CACHE_DIR": str(build_cache),
                               "CELLPLANE_OSV_DATABASE": str(osv), "CELLPLANE_BUILD_MEMORY": "1024"})
    try:
        c = server.client()
        component(c, "shop", "api", {"type": "service", "endpoints": [{"name": "api", "port": 8080}]})
        component(c, "shop", "job", {"type": "manual-task"})
        job_build = upload(c, "shop", "job", APPS / "task")  # built while the first tests run
        agent = Agent(c)
        agent.register()
        yield Setup(server, c, agent, job_build)
    finally:
        server.stop()


def error(r: httpx.Response, status: int, field_path: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    err = r.json()["error"]
    if field_path is not None:
        assert field_path in [d["field"] for d in err["details"]], err
    return err


def create(setup: Setup, path: str = API, **body: Any) -> dict[str, Any]:
    r = setup.client.post(path + "/alerts", json={"environment": "development", **body})
    assert r.status_code == 201, r.text
    rule = r.json()
    setup.secrets.append(rule["webhookSecret"])
    return rule


def stamp(seconds_ago: float = 1.0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def http_point(requests: int, errors: int, bucket: int = 3, component_: str = "api") -> dict[str, Any]:
    buckets = [0] * NBUCKETS
    buckets[bucket] = requests
    return {"kind": "http", "environment": "development", "project": "shop", "component": component_,
            "endpoint": "api", "consumer": "", "at": stamp(), "seconds": 1.0, "requests": requests,
            "errors": errors, "clientErrors": 0, "durationSum": 0.01 * requests, "buckets": buckets}


def replica_point(restarts: int, component_: str = "api") -> dict[str, Any]:
    return {"kind": "replica", "environment": "development", "project": "shop", "component": component_,
            "replica": 0, "at": stamp(), "seconds": 1.0, "cpu": 1.5, "memory": 10_000_000, "restarts": restarts,
            "state": "running"}


def report(setup: Setup, *points: dict[str, Any]) -> None:
    r = setup.client.post(setup.agent.base + "/metrics", json={"points": list(points)})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == len(points), r.text


def rule_of(setup: Setup, rule_id: str) -> dict[str, Any]:
    r = setup.client.get(f"{ORG}/alerts/{rule_id}")
    assert r.status_code == 200, r.text
    return r.json()


def events_of(setup: Setup, rule_id: str) -> list[dict[str, Any]]:
    r = setup.client.get(f"{ORG}/alerts/{rule_id}/events")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def until(what: Callable[[], Any], timeout: float = 30, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := what()):
        assert time.monotonic() < deadline, message or f"not true after {timeout}s"
        time.sleep(0.1)
    return value


# -- tests ----------------------------------------------------------------------------------------------------------


def test_rules_are_validated_field_by_field_and_nothing_is_stored(setup: Setup, receiver: Receiver) -> None:
    c = setup.client
    good = {"name": "errors", "environment": "development", "metric": "error-rate", "threshold": 5,
            "webhook": receiver.url + "/x"}
    for change, status, path in [
        ({"name": "Not A Name"}, 422, "name"),
        ({"metric": "cpu"}, 422, "metric"),
        ({"threshold": -1}, 422, "threshold"),
        ({"threshold": 101}, 422, "threshold"),
        ({"threshold": "5"}, 422, "threshold"),
        ({"percentile": 95}, 422, "percentile"),
        ({"metric": "latency", "percentile": 90}, 422, "percentile"),
        ({"window": "5s"}, 422, "window"),
        ({"window": "2d"}, 422, "window"),
        ({"window": "soon"}, 422, "window"),
        ({"window": "10500ms"}, 422, "window"),
        ({"for": "25h"}, 422, "for"),
        ({"webhook": "ftp://example.com/hook"}, 422, "webhook"),
        ({"webhook": "https://user:pass@example.com/hook"}, 422, "webhook"),
        ({"webhook": "/relative/hook"}, 422, "webhook"),
        ({"webhook": "https://exa mple.com/"}, 422, "webhook"),
        ({"extra": 1}, 422, "extra"),
        ({"environment": "nowhere"}, 404, "environment"),
    ]:
        error(c.post(API + "/alerts", json={**good, **change}), status, path)
    body = {k: v for k, v in good.items() if k != "webhook"}
    error(c.post(API + "/alerts", json=body), 422, "webhook")
    err = error(c.post(API + "/alerts", json={**good, "window": "1s", "for": "2d", "webhook": "mailto:x"}), 422)
    assert {d["field"] for d in err["details"]} == {"window", "for", "webhook"}
    error(c.post(f"{ORG}/projects/shop/components/nothing/alerts", json=good), 404, "path.component")
    error(c.post(f"{ORG}/projects/nothing/components/api/alerts", json=good), 404, "path.project")
    assert c.get(API + "/alerts").json() == {"items": []}
    # defaults, and one name per component and environment
    rule = create(setup, **{**good, "name": "dup"})
    assert (rule["window"], rule["for"], rule["percentile"], rule["state"], rule["since"], rule["value"]) == (
        "1m", "0s", None, "ok", None, None)
    error(c.post(API + "/alerts", json={**good, "name": "dup"}), 409, "name")
    latency = create(setup, **{**good, "name": "slow", "metric": "latency", "threshold": 250, "window": "90s",
                               "for": "1h"})
    assert (latency["percentile"], latency["window"], latency["for"]) == (95, "90s", "1h")
    assert [r["name"] for r in c.get(API + "/alerts").json()["items"]] == ["dup", "slow"]
    for rule_id in (rule["id"], latency["id"]):
        assert c.delete(f"{ORG}/alerts/{rule_id}").json() == {"deleted": rule_id}


def test_error_rate_fires_after_for_and_resolves_with_signed_notifications(setup: Setup,
                                                                            receiver: Receiver) -> None:
    rule = create(setup, name="error-rate", metric="error-rate", threshold=5, window="10s", **{"for": "2s"},
                  webhook=receiver.url + "/errors")
    secret = rule.pop("webhookSecret")
    assert rule["id"].startswith("alr_") and len(rule["id"]) == 20 and len(secret) >= 43
    assert list(rule) == ["id", "name", "project", "component", "environment", "metric", "threshold", "percentile",
                          "window", "for", "webhook", "state", "since", "value", "createdBy", "createdAt"]
    assert rule["createdBy"] == "admin" and rule["webhook"] == receiver.url + "/errors"
    # healthy traffic: evaluated, stays ok
    report(setup, http_point(100, 1))
    until(lambda: rule_of(setup, rule["id"])["value"] is not None)
    assert rule_of(setup, rule["id"])["state"] == "ok"
    # 50% errors: pending, then firing once it held 2s
    report(setup, http_point(200, 200))
    pending = until(lambda: (r := rule_of(setup, rule["id"]))["state"] != "ok" and r)
    assert pending["state"] == "pending" and pending["value"] > 5
    firing = until(lambda: (r := rule_of(setup, rule["id"]))["state"] == "firing" and r)
    started, fired = datetime.fromisoformat(pending["since"]), datetime.fromisoformat(firing["since"])
    assert fired - started >= timedelta(seconds=2)
    [note] = receiver.wait_for("/errors")
    assert note.headers["x-cellplane-event"] == "alert.firing"
    body = verify(secret, note)
    assert body["state"] == "firing" and body["value"] == pytest.approx(201 / 300 * 100, abs=0.01)
    assert (body["component"], body["environment"], body["threshold"]) == ("api", "development", 5)
    assert body["message"] == "error rate 67% > 5% over 10s for 2s"
    assert body["alert"]["id"] == rule["id"] and "webhookSecret" not in body["alert"]
    assert body["event"]["state"] == "firing" and body["eventId"]
    [event] = until(lambda: (e := events_of(setup, rule["id"])) and e[0]["delivery"]["state"] == "delivered" and e)
    assert event["rule"] == rule["id"] and event["resolvedAt"] is None and event["message"] == body["message"]
    assert event["delivery"] == {"state": "delivered", "attempts": 1, "lastError": None}
    # the errors stop: plenty of good requests dilute them below 5%: resolved
    report(setup, http_point(10_000, 0))
    until(lambda: rule_of(setup, rule["id"])["state"] == "ok")
    [event] = until(lambda: (e := events_of(setup, rule["id"])) and e[0]["state"] == "resolved" and e)
    assert event["resolvedAt"] >= event["firedAt"]
    _, resolved_note = receiver.wait_for("/errors", 2)
    assert resolved_note.headers["x-cellplane-event"] == "alert.resolved"
    resolved = verify(secret, resolved_note)
    assert resolved["state"] == "resolved" and resolved["eventId"] != body["eventId"]
    assert resolved["event"]["resolvedAt"] == event["resolvedAt"]
    until(lambda: events_of(setup, rule["id"])[0]["delivery"]["state"] == "delivered")
    # filters of the organization's list
    listed = setup.client.get(f"{ORG}/alerts", params={"project": "shop", "environment": "development",
                                                       "state": "ok"}).json()["items"]
    assert rule["id"] in [r["id"] for r in listed]
    assert setup.client.get(f"{ORG}/alerts", params={"state": "firing"}).json()["items"] == []
    assert setup.client.get(f"{ORG}/alerts", params={"project": "other"}).json()["items"] == []
    error(setup.client.get(f"{ORG}/alerts", params={"state": "on"}), 422)


def test_delivery_retries_after_a_failure(setup: Setup, receiver: Receiver) -> None:
    receiver.failures["/flaky"] = 1
    rule = create(setup, name="crash-loop", metric="crash-loop", threshold=2, window="10s",
                  webhook=receiver.url + "/flaky")
    report(setup, replica_point(3))
    firing = until(lambda: (r := rule_of(setup, rule["id"]))["state"] == "firing" and r)
    assert firing["value"] == 3
    first, second = receiver.wait_for("/flaky", 2, timeout=30)
    assert verify(rule["webhookSecret"], first)["eventId"] == verify(rule["webhookSecret"], second)["eventId"]
    gap = int(second.headers["x-cellplane-timestamp"]) - int(first.headers["x-cellplane-timestamp"])
    assert gap >= 4  # the first retry waits 5s
    [event] = until(lambda: (e := events_of(setup, rule["id"])) and e[0]["delivery"]["state"] == "delivered" and e)
    assert event["delivery"] == {"state": "delivered", "attempts": 2, "lastError": None}
    assert event["message"] == "restarts 3 > 2 over 10s"


def test_latency_and_task_failures(setup: Setup, receiver: Receiver) -> None:
    c = setup.client
    # p99 of requests in the 2.5s..5s bucket is above a second (many of them: the window may hold earlier ones)
    slow = create(setup, name="slow", metric="latency", threshold=1000, percentile=99, window="10s",
                  webhook=receiver.url + "/slow")
    report(setup, http_point(50_000, 0, bucket=11))
    firing = until(lambda: (r := rule_of(setup, slow["id"]))["state"] == "firing" and r)
    assert 2500 <= firing["value"] <= 5000
    verify(slow["webhookSecret"], receiver.wait_for("/slow")[0])
    # a failed run of a deployed task
    build = wait(c, setup.job_build)
    assert build["state"] == "succeeded", failed_why(c, build)
    r = c.post(JOB + "/deployments", json={"environment": "development"})
    assert r.status_code == 201, r.text
    deployment = r.json()
    rule = create(setup, JOB, name="task-failures", metric="task-failures", threshold=0, window="1m",
                  webhook=receiver.url + "/tasks")
    run = {"id": "run_" + uuid.uuid4().hex[:16], "deployment": deployment["id"], "environment": "development",
           "project": "shop", "component": "job", "trigger": "schedule", "state": "failed", "startedAt": stamp(2),
           "endedAt": stamp(1), "exitCode": 3}
    assert setup.agent.runs([run]).json() == {"recorded": 1}
    firing = until(lambda: (r := rule_of(setup, rule["id"]))["state"] == "firing" and r)
    assert firing["value"] == 1
    body = verify(rule["webhookSecret"], receiver.wait_for("/tasks")[0])
    assert body["message"] == "failed task runs 1 > 0 over 1m" and body["component"] == "job"


def test_test_notification_delete_and_rbac(setup: Setup, receiver: Receiver) -> None:
    c = setup.client
    rule = create(setup, name="probe", metric="error-rate", threshold=50, webhook=receiver.url + "/probe")
    r = c.post(f"{ORG}/alerts/{rule['id']}/test", json={})
    assert r.json() == {"delivered": True, "status": 200, "error": None}
    [note] = receiver.at("/probe")
    assert note.headers["x-cellplane-event"] == "alert.test"
    assert verify(rule["webhookSecret"], note)["state"] == "test"
    assert rule_of(setup, rule["id"])["state"] == "ok" and events_of(setup, rule["id"]) == []
    receiver.failures["/probe"] = 1
    r = c.post(f"{ORG}/alerts/{rule['id']}/test")
    assert r.json() == {"delivered": False, "status": 500, "error": "HTTP 500"}
    # a webhook that does not answer in time
    receiver.delays["/hang"] = 8
    hang = create(setup, name="hang", metric="crash-loop", threshold=100, webhook=receiver.url + "/hang")
    started = time.monotonic()
    r = c.post(f"{ORG}/alerts/{hang['id']}/test")
    assert r.json() == {"delivered": False, "status": None, "error": "no answer within 5s"}
    assert time.monotonic() - started < 7
    # a viewer reads but does not create, test or delete
    name = f"viewer-{uuid.uuid4().hex[:6]}"
    assert c.post("/users", json={"name": name}).status_code == 201
    token = c.post(f"/users/{name}/tokens", json={"name": "t"}).json()["token"]
    assert c.post(f"{ORG}/rolebindings", json={"user": name, "role": "viewer"}).status_code == 201
    viewer = setup.server.client(token)
    error(viewer.post(API + "/alerts", json={"name": "mine", "environment": "development", "metric": "crash-loop",
                                             "threshold": 1, "webhook": receiver.url + "/v"}), 403)
    # it sees the webhook's scheme and host only: chat webhooks carry their credential in the path
    host = receiver.url.split("://", 1)[1]
    assert viewer.get(f"{ORG}/alerts/{rule['id']}").json()["webhook"] == f"http://{host}/…"
    assert [x["webhook"] for x in viewer.get(f"{ORG}/alerts").json()["items"] if x["id"] == rule["id"]] == \
        [f"http://{host}/…"]
    assert c.get(f"{ORG}/alerts/{rule['id']}").json()["webhook"] == receiver.url + "/probe"
    error(viewer.post(f"{ORG}/alerts/{rule['id']}/test"), 403)
    error(viewer.delete(f"{ORG}/alerts/{rule['id']}"), 403)
    error(setup.server.client("").get(f"{ORG}/alerts"), 401)
    # delete: gone with its history
    assert c.delete(f"{ORG}/alerts/{rule['id']}").json() == {"deleted": rule["id"]}
    error(c.get(f"{ORG}/alerts/{rule['id']}"), 404, "path.alert")
    error(c.get(f"{ORG}/alerts/{rule['id']}/events"), 404, "path.alert")
    error(c.delete(f"{ORG}/alerts/{rule['id']}"), 404, "path.alert")
    error(c.get(f"{ORG}/alerts/alr_0000000000000000"), 404, "path.alert")


def test_deleting_the_component_or_environment_deletes_its_rules(setup: Setup, receiver: Receiver) -> None:
    c = setup.client
    r = c.post("/apply", json={"documents": [doc("Environment", "scratch", organization="default")]})
    assert r.status_code == 200, r.text
    scratch = create(setup, name="scratch", environment="scratch", metric="crash-loop", threshold=1,
                     webhook=receiver.url + "/scratch")
    assert c.delete(f"{ORG}/environments/scratch").status_code == 200
    error(c.get(f"{ORG}/alerts/{scratch['id']}"), 404)
    component(c, "shop", "temp", {"type": "service", "endpoints": [{"name": "api", "port": 8080}]})
    path = f"{ORG}/projects/shop/components/temp"
    rule = create(setup, path, name="temp-restarts", metric="crash-loop", threshold=0, window="10s",
                  webhook=receiver.url + "/temp")
    report(setup, replica_point(1, "temp"))
    until(lambda: events_of(setup, rule["id"]))
    r = c.delete(path)
    assert r.status_code == 200, r.text
    error(c.get(f"{ORG}/alerts/{rule['id']}"), 404)
    assert rule["id"] not in [x["id"] for x in c.get(f"{ORG}/alerts").json()["items"]]
    component(c, "shop", "temp", {"type": "service", "endpoints": [{"name": "api", "port": 8080}]})
    assert c.get(path + "/alerts").json() == {"items": []}


def test_the_secret_is_shown_once(setup: Setup) -> None:
    """Runs last: no webhook secret in any answer but its creation's, in the audit log, the server's log or the
    database files."""
    assert setup.secrets
    c = setup.client
    seen = [c.get(f"{ORG}/alerts").text, c.get(API + "/alerts").text, c.get(JOB + "/alerts").text,
            c.get("/audit", params={"organization": "default", "limit": 1000}).text, setup.server.log()]
    for rule in c.get(f"{ORG}/alerts").json()["items"]:
        seen += [c.get(f"{ORG}/alerts/{rule['id']}").text, c.get(f"{ORG}/alerts/{rule['id']}/events").text]
    stored = b"".join(f.read_bytes() for f in setup.server.data_dir.glob("cellplane.db*"))
    assert stored
    for secret in setup.secrets:
        for text in seen:
            assert secret not in text
        assert secret.encode() not in stored
    assert "evaluating alert rule" not in setup.server.log()  # no rule failed to evaluate
    actions = [e["action"] for e in c.get("/audit", params={"organization": "default", "limit": 1000})
               .json()["items"]]
    assert {"alert.create", "alert.delete", "alert.test"} <= set(actions)


# -- the bookkeeping, in process, on both databases -----------------------------------------------------------------


def test_a_slow_webhook_times_out(receiver: Receiver) -> None:
    receiver.delays["/slow-async"] = 8
    note = alerts.Notification(1, 0, "firing", receiver.url + "/slow-async", {}, b"{}")

    async def go() -> alerts.Delivery:
        async with httpx.AsyncClient() as client:
            return await alerts.send(client, note)

    started = time.monotonic()
    assert asyncio.run(go()) == alerts.Delivery(False, None, "no answer within 5s")
    assert time.monotonic() - started < 7


def test_state_machine_replicas_and_delivery_schedule(database_url: str, tmp_path: Path) -> None:
    """Deterministic clocks: the transitions, two replicas evaluating the same rule at once (one event), one
    claim per attempt, and the retry schedule (5s, 10s, 20s, 40s, then failed)."""
    p = Platform(tmp_path / "data", database_url)
    try:
        t0 = datetime(2030, 1, 1, tzinfo=UTC)
        spec = alerts.validate("errors", "development", "error-rate", 10, None, "1m", "30s", "http://127.0.0.1:9/h")
        with p.store.transaction() as s:
            rule, secret = alerts.create(s, p.keyring, "default", "shop", "api", spec, "admin")
            quick, _ = alerts.create(s, p.keyring, "default", "shop", "api",
                                     alerts.validate("now", "development", "error-rate", 10, None, "1m", "0s",
                                                     "http://127.0.0.1:9/h"), "admin")
            assert secret not in rule.secret
            # a point of 2030 as stored (a report could not be dated that far ahead: not validated here)
            point = MetricPoint.model_construct(**{**http_point(10, 5), "at": t0})
            metrics.ingest(s, "default", [point])

        def step(at: datetime, rule_id: str = rule.id) -> str | None:
            with p.store.transaction() as s:
                return alerts.evaluate(s, rule_id, at)

        assert step(t0) == "ok"  # the point's window starts at t0: not in [t0 - 1m, t0)
        assert step(t0 + timedelta(seconds=1)) == "pending"
        assert step(t0 + timedelta(seconds=30)) == "pending"
        assert step(t0 + timedelta(seconds=31)) == "firing"
        assert step(t0 + timedelta(seconds=40)) == "firing"
        assert step(t0 + timedelta(seconds=62)) == "ok"  # out of the window: resolved
        with p.store.transaction() as s:
            [event] = alerts.events(s, rule.id)
            assert (event.state, event.value, event.fired_at, event.resolved_at) == (
                "resolved", 50.0, t0 + timedelta(seconds=31), t0 + timedelta(seconds=62))
            assert event.message == "error rate 50% > 10% over 1m for 30s"
        # two replicas at once: one firing, one event
        at = t0 + timedelta(seconds=5)
        with ThreadPoolExecutor(2) as pool:
            states = list(pool.map(lambda _: step(at, quick.id), range(2)))
        assert states == ["firing", "firing"]
        with p.store.transaction() as s:
            assert len(alerts.events(s, quick.id)) == 1
        # each due notification is claimed once; failures back off 5s, 10s, 20s, 40s, then fail
        now = t0 + timedelta(minutes=5)
        due = alerts.claim_due(p, now)
        assert {n.state for n in due} == {"firing", "resolved"}
        assert alerts.claim_due(p, now) == []
        [note] = [n for n in due if n.state == "firing"]
        failed = alerts.Delivery(False, 503, "HTTP 503")
        for attempt, wait_s in enumerate((5, 10, 20, 40), start=1):
            alerts.record(p, note, failed, now)
            with p.store.transaction() as s:
                row = s.get(AlertEventRow, note.event_id)
                assert (row.delivery_state, row.attempts, row.last_error) == ("pending", attempt, "HTTP 503")
                assert row.next_attempt_at == now + timedelta(seconds=wait_s)
            [note] = alerts.claim_due(p, now + timedelta(seconds=wait_s))
        alerts.record(p, note, failed, now)
        with p.store.transaction() as s:
            row = s.get(AlertEventRow, note.event_id)
            assert (row.delivery_state, row.attempts, row.next_attempt_at) == ("failed", 5, None)
        # the failed one is done; the resolved one, claimed and never recorded (a replica that died), is due again
        assert [n.state for n in alerts.claim_due(p, now + timedelta(days=1))] == ["resolved"]
    finally:
        p.close()
