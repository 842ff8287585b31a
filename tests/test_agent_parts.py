"""The agent's own parts, without a control plane: the outbox that spools to disk, the data-directory lock,
listener ports that survive a restart, secrets opened only with the agent's key, and telemetry (the token bucket,
replica sampling with psutil, the Prometheus endpoint, access lines and metrics points)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import uvloop
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import BaseModel

from cellplane.dataplane import launchspec
from cellplane.dataplane.cpclient import Unreachable, wire
from cellplane.dataplane.limits import CgroupManager
from cellplane.dataplane.localstate import LocalState
from cellplane.dataplane.network import Network
from cellplane.dataplane.outbox import Outbox
from cellplane.dataplane.replicaid import ReplicaId
from cellplane.dataplane.supervisor import ReplicaSpec, Supervisor
from cellplane.dataplane.telemetry import (
    MetricsEndpoint,
    ProcessSampler,
    ReplicaTelemetry,
    TokenBucket,
    access_line,
    counter,
    http_points,
)
from cellplane.errors import CellplaneError
from cellplane.gateway.metrics import Metrics
from cellplane.gateway.server import Gateway
from cellplane.sealing import SealError, public_key_text, seal
from desiredkit import desired_deployment


class Item(BaseModel):
    """An outbox's item (the agent's are the contract's report models)."""

    n: int
    line: str = ""


class FlakyControlPlane:
    """Receives batches, or is unreachable while ``down`` is set."""

    def __init__(self) -> None:
        self.down = False
        self.received: list[Item] = []

    async def send(self, items: list[Item]) -> None:
        if self.down:
            raise Unreachable("down")
        self.received.extend(items)


async def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)


def test_outbox_spools_while_unreachable_and_delivers_in_order(tmp_path: Path) -> None:
    cp = FlakyControlPlane()
    spool = tmp_path / "spool" / "logs.jsonl"

    async def body() -> None:
        box = Outbox("logs", spool, Item, cp.send, batch=10, interval=0.05)
        box.start()
        for i in range(5):
            box.put(Item(n=i))
        await _until(lambda: len(cp.received) == 5)
        cp.down = True
        for i in range(5, 40):
            box.put(Item(n=i))
        await _until(spool.exists)
        await box.stop(flush_timeout=0.2)  # the agent stops while the control plane is away

        # a new agent on the same directory sends the spool first, then what is new
        cp.down = False
        again = Outbox("logs", spool, Item, cp.send, batch=10, interval=0.05)
        again.start()
        again.put(Item(n=40))
        await _until(lambda: len(cp.received) == 41)
        await again.stop()

    uvloop.run(body())
    assert [item.n for item in cp.received] == list(range(41))
    assert not spool.exists()


def test_outbox_sends_one_batch_per_interval_while_items_keep_coming(tmp_path: Path) -> None:
    """A slow control plane and a steady stream of items: what arrives during a send waits for the next round,
    instead of following at once in batches of a few items."""
    batches: list[int] = []

    async def slow_send(items: list[Item]) -> None:
        batches.append(len(items))
        await asyncio.sleep(0.05)

    async def body() -> None:
        box = Outbox("access-logs", tmp_path / "access.jsonl", Item, slow_send, batch=1000, interval=0.3)
        box.start()
        for i in range(300):  # 1.5 s of 200 items per second
            box.put(Item(n=i))
            await asyncio.sleep(0.005)
        await box.stop()

    uvloop.run(body())
    assert sum(batches) == 300
    assert len(batches) <= 1.5 / 0.3 + 2, batches


def test_outbox_spool_is_bounded(tmp_path: Path) -> None:
    cp = FlakyControlPlane()
    cp.down = True
    spool = tmp_path / "logs.jsonl"

    async def body() -> None:
        box = Outbox("logs", spool, Item, cp.send, batch=10, interval=0.05, max_spool_bytes=4096)
        box.start()
        for i in range(2000):
            box.put(Item(n=i, line="x" * 20))
        await box.stop(flush_timeout=0.1)
        assert box.dropped > 0

    uvloop.run(body())
    assert spool.stat().st_size <= 4096
    kept = spool.read_text().splitlines()
    assert kept and kept[-1].startswith('{"n":1999')  # the newest lines are the ones kept


def test_a_second_agent_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = LocalState(tmp_path)
    first.lock()
    second = LocalState(tmp_path)
    with pytest.raises(CellplaneError, match="another data-plane agent is running"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()


def test_listener_ports_survive_a_restart(tmp_path: Path) -> None:
    async def open_listeners() -> dict[str, Any]:
        gateway = Gateway()
        network = Network(gateway, LocalState(tmp_path))
        await network.ensure({"development"}, {("development", "shop")})
        report = network.report()
        await gateway.close()
        return report

    first = uvloop.run(open_listeners())
    second = uvloop.run(open_listeners())
    assert first == second
    gateway = first["development"]
    assert gateway.external is not None and gateway.internal is not None
    assert gateway.cells["shop"].startswith("http://127.0.0.1:")


def test_secrets_open_only_with_this_agents_key_and_in_their_place() -> None:
    key, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    d = desired_deployment(
        env=[{"name": "PLAIN", "value": "1"},
             {"name": "TOKEN", "sealed": seal(public_key_text(key), "t0k3n", "development/shop/api/TOKEN")}],
        files=[{"name": "conf", "mountPath": "/etc/x.json",
                "sealed": seal(public_key_text(key), "{}", "development/shop/api/conf")}])
    env, files = launchspec.configuration(d, key)
    assert env == {"PLAIN": "1", "TOKEN": "t0k3n"}
    assert files[0].content == b"{}" and files[0].secret
    with pytest.raises(SealError):
        launchspec.configuration(d, other)
    moved = d.model_copy(update={"component": "other"})  # a sealed value copied into another component's entry
    with pytest.raises(SealError):
        launchspec.configuration(moved, key)


# -- telemetry -------------------------------------------------------------------------------------------------

BUSY = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"
# a parent that sleeps, and (after a moment, so it is born between two samples) a child that keeps a core busy
PARENT = ("import subprocess, sys, time\ntime.sleep(float(sys.argv[1]))\n"
          f"child = subprocess.Popen([sys.executable, '-c', {BUSY!r}])\ntime.sleep(30)\n")


def test_token_bucket() -> None:
    bucket = TokenBucket(10, 3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)  # half a token so far
    assert bucket.take(0.1)
    assert not bucket.take(0.05)  # time going backwards refills nothing
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # refilled up to the burst only
    off = TokenBucket(0, 0, now=0.0)
    assert not any(off.take(float(t)) for t in range(100))


def test_process_sampler_measures_a_process_tree_without_reaping_it() -> None:
    proc = subprocess.Popen([sys.executable, "-c", PARENT, "0.3"])
    sampler = ProcessSampler()
    children: list[psutil.Process] = []
    try:
        first = sampler.sample("r", proc.pid)
        assert first is not None and first[1] > 0
        time.sleep(1.0)  # the busy child is born in this window: all of its CPU counts
        children = psutil.Process(proc.pid).children()
        cpu, rss = sampler.sample("r", proc.pid) or (0.0, 0)
        assert len(children) == 1 and cpu > 5, cpu
        assert rss > first[1]  # two interpreters now
        time.sleep(0.5)
        cpu, _ = sampler.sample("r", proc.pid) or (0.0, 0)
        assert 5 < cpu < 150, cpu  # one busy core (and a sleeping parent)
    finally:
        proc.terminate()
        assert proc.wait(10) == -signal.SIGTERM  # psutil did not take its exit status
        for child in children:
            child.kill()
            child.wait(10)
    assert sampler.sample("r", proc.pid) is None  # gone
    sampler.forget(())
    assert sampler.sample("other", os.getpid()) is not None


def test_replica_windows_and_the_prometheus_endpoint(tmp_path: Path) -> None:
    async def body() -> None:
        supervisor = Supervisor(backoff_base=0.05, backoff_max=0.05, cgroups=CgroupManager(proc=tmp_path / "none"))
        ids = [ReplicaId("dev", "shop", "api", "dep_1", "r1", index) for index in (0, 1)]
        busy = await supervisor.start(ReplicaSpec(ids[0].key, [sys.executable, "-c", PARENT, "0"], tmp_path,
                                                  dict(os.environ), identity=ids[0]))
        crashing = await supervisor.start(ReplicaSpec(ids[1].key, [sys.executable, "-c", "exit(3)"],
                                                      tmp_path, dict(os.environ), identity=ids[1]))
        telemetry = ReplicaTelemetry()
        gateway = Gateway()
        gateway.metrics.observe(("dev", "shop", "api", "api", "shop/web"), 200, 0.01)
        endpoint = MetricsEndpoint(lambda: gateway.metrics.prometheus() + telemetry.prometheus([busy, crashing])
                                   + counter("cellplane_agent_access_lines_unshipped_total", "Lines.", 7),
                                   token="scrape-token")
        url = await endpoint.start("127.0.0.1", 0)
        try:
            await _until(lambda: busy.pid is not None and crashing.restarts >= 1)
            total, points = 0, []
            for _ in range(3):
                samples = telemetry.begin([busy, crashing])
                await asyncio.sleep(0.5)
                samples = await asyncio.to_thread(telemetry.measure, samples)
                points = [wire(p) for p in telemetry.points(samples, "2024-01-01T00:00:00+00:00", 0.5)]
                total += points[1]["restarts"]
            assert total <= crashing.restarts and points[1]["restarts"] > 0
            assert {k: points[0][k] for k in ("kind", "environment", "project", "component", "replica")} == {
                "kind": "replica", "environment": "dev", "project": "shop", "component": "api", "replica": 0}
            assert points[0]["cpu"] > 5 and points[0]["memory"] > 0 and points[0]["restarts"] == 0
            assert points[0]["state"] == busy.state and points[1]["replica"] == 1
            async with httpx.AsyncClient(headers={"Authorization": "Bearer scrape-token"}) as client:
                r = await client.get(url)
                assert r.status_code == 200
                assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
                text = r.text
                assert ('cellplane_gateway_requests_total{environment="dev",project="shop",component="api",'
                        'endpoint="api",consumer="shop/web",code="200"} 1') in text
                tags = 'environment="dev",project="shop",component="api",release="r1",replica="0"'
                cpu = float(text.split(f"cellplane_replica_cpu_percent{{{tags}}} ")[1].split()[0])
                assert cpu > 5
                assert f"cellplane_replica_memory_bytes{{{tags}}} " in text
                assert f"cellplane_replica_restarts_total{{{tags}}} 0" in text
                assert "# TYPE cellplane_replica_restarts_total counter" in text
                assert "cellplane_agent_access_lines_unshipped_total 7" in text
                assert (await client.get(url.replace("/metrics", "/other"))).status_code == 404
                assert (await client.post(url)).status_code == 404
        finally:
            await endpoint.close()
            await supervisor.stop_all(grace=1)
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(url)

    uvloop.run(body())


def test_access_lines_and_http_points() -> None:
    entry = {"ts": 1700000000.25, "listener": "internal/dev", "environment": "dev", "project": "sales",
             "component": "orders", "endpoint": "api", "method": "GET", "path": "/sales/orders/v1/" + "x" * 3000,
             "status": 200, "duration_ms": 1.5, "bytes_sent": 120, "upstream": "127.0.0.1:1", "decision": "allowed",
             "reason": None, "request_id": "r" * 200, "consumer": "shop/front", "trace_id": "a" * 32}
    line = wire(access_line(entry))  # the JSON it is sent as
    assert line == {"environment": "dev", "project": "sales", "component": "orders", "endpoint": "api",
                    "at": "2023-11-14T22:13:20.250000+00:00", "method": "GET", "path": entry["path"][:2048],
                    "status": 200, "durationMs": 1.5, "bytesSent": 120, "decision": "allowed", "reason": None,
                    "consumer": "shop/front", "requestId": "r" * 100, "traceId": "a" * 32,
                    "listener": "internal/dev"}
    metrics = Metrics()
    for status, seconds in ((200, 0.0005), (200, 0.02), (404, 0.2), (502, 20.0)):
        metrics.observe(("dev", "sales", "orders", "api", "shop/front"), status, seconds)
    metrics.observe(("dev", "", "", "", ""), 404, 0.001)
    (point,) = [wire(p) for p in http_points(metrics.delta(), "2024-01-01T00:00:00+00:00", 10.0)]
    assert point == {"kind": "http", "environment": "dev", "project": "sales", "component": "orders",
                     "endpoint": "api", "consumer": "shop/front", "at": "2024-01-01T00:00:00+00:00", "seconds": 10.0,
                     "requests": 4, "errors": 1, "clientErrors": 1, "durationSum": pytest.approx(20.2205),
                     "buckets": [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]}
    assert http_points(metrics.delta(), "2024-01-01T00:00:10+00:00", 10.0) == []


def test_series_of_a_removed_endpoint_are_forgotten_once_shipped() -> None:
    metrics = Metrics()
    kept, removed = ("dev", "sales", "orders", "api", ""), ("dev", "sales", "old", "api", "")
    lost = ("dev", "", "", "", "")  # requests that matched no route
    for labels in (kept, removed, lost):
        metrics.observe(labels, 200, 0.001)
    metrics.routed({("dev", "sales", "orders", "api")})
    assert set(metrics.label_sets()) == {kept, lost}  # nothing read them yet and no reader exists: dropped

    metrics.delta()  # from now on a reader ships windows: what it has not read stays
    metrics.observe(removed, 502, 0.3)  # a request that was in flight when its route left
    metrics.routed({("dev", "sales", "orders", "api")})
    assert removed in metrics.label_sets()
    (window,) = [w for labels, w in metrics.delta().items() if labels == removed]
    assert (window.requests, window.errors) == (1, 1)  # shipped once, then forgotten
    assert set(metrics.label_sets()) == {kept, lost}
    assert 'component="old"' not in metrics.prometheus()
    assert 'component="orders"' in metrics.prometheus()
