"""The agent's own parts, without a control plane: the outbox that spools to disk, the data-directory lock,
listener ports that survive a restart, and secrets opened only with the agent's key."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.dataplane import launchspec
from cellplane.dataplane.cpclient import Unreachable
from cellplane.dataplane.localstate import LocalState
from cellplane.dataplane.network import Network
from cellplane.dataplane.outbox import Outbox
from cellplane.errors import CellplaneError
from cellplane.gateway.server import Gateway
from cellplane.sealing import SealError, public_key_text, seal


class FlakyControlPlane:
    """Receives batches, or is unreachable while ``down`` is set."""

    def __init__(self) -> None:
        self.down = False
        self.received: list[dict[str, Any]] = []

    async def send(self, items: list[dict[str, Any]]) -> None:
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
        box = Outbox("logs", spool, cp.send, batch=10, interval=0.05)
        box.start()
        for i in range(5):
            box.put({"n": i})
        await _until(lambda: len(cp.received) == 5)
        cp.down = True
        for i in range(5, 40):
            box.put({"n": i})
        await _until(spool.exists)
        await box.stop(flush_timeout=0.2)  # the agent stops while the control plane is away

        # a new agent on the same directory sends the spool first, then what is new
        cp.down = False
        again = Outbox("logs", spool, cp.send, batch=10, interval=0.05)
        again.start()
        again.put({"n": 40})
        await _until(lambda: len(cp.received) == 41)
        await again.stop()

    uvloop.run(body())
    assert [item["n"] for item in cp.received] == list(range(41))
    assert not spool.exists()


def test_outbox_spool_is_bounded(tmp_path: Path) -> None:
    cp = FlakyControlPlane()
    cp.down = True
    spool = tmp_path / "logs.jsonl"

    async def body() -> None:
        box = Outbox("logs", spool, cp.send, batch=10, interval=0.05, max_spool_bytes=4096)
        box.start()
        for i in range(2000):
            box.put({"n": i, "line": "x" * 20})
        await box.stop(flush_timeout=0.1)
        assert box.dropped > 0

    uvloop.run(body())
    assert spool.stat().st_size <= 4096
    kept = spool.read_text().splitlines()
    assert kept and kept[-1].startswith('{"n": 1999')  # the newest lines are the ones kept


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
    assert set(first["development"]) == {"external", "internal", "cells"}
    assert first["development"]["cells"]["shop"].startswith("http://127.0.0.1:")


def test_secrets_open_only_with_this_agents_key_and_in_their_place() -> None:
    key, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    d = {"environment": "development", "project": "shop", "component": "api",
         "env": [{"name": "PLAIN", "value": "1"},
                 {"name": "TOKEN", "sealed": seal(public_key_text(key), "t0k3n", "development/shop/api/TOKEN")}],
         "files": [{"name": "conf", "mountPath": "/etc/x.json",
                    "sealed": seal(public_key_text(key), "{}", "development/shop/api/conf")}]}
    env, files = launchspec.configuration(d, key)
    assert env == {"PLAIN": "1", "TOKEN": "t0k3n"}
    assert files[0].content == b"{}" and files[0].secret
    with pytest.raises(SealError):
        launchspec.configuration(d, other)
    moved = {**d, "component": "other"}  # a sealed value copied into another component's entry
    with pytest.raises(SealError):
        launchspec.configuration(moved, key)
