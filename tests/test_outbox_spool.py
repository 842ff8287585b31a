"""The outbox's spool with a real file: what a retry costs while the control plane is away (bytes the process reads,
from /proc/self/io, whatever the code does), order and no loss once it answers, and what it keeps or drops when the
control plane refuses the token (401/403) or a batch (422)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import uvloop
from pydantic import BaseModel

from cellplane.dataplane.cpclient import ApiRefused, CredentialRefused, Unreachable
from cellplane.dataplane.outbox import BATCH_BYTES, Outbox


class Item(BaseModel):
    """An outbox's item (the agent's are the contract's report models)."""

    n: int
    line: str = ""


SPOOL_BYTES = 60 << 20  # close to the bound of 64 MiB an agent's spool may reach
LINE = "x" * 150


def bytes_read() -> int:
    """Bytes this process has read through read(2) and friends so far (the kernel's count, page cache included)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


class ControlPlane:
    """Receives batches; while ``failure`` is set, every send raises it instead."""

    def __init__(self) -> None:
        self.failure: Exception | None = None
        self.received: list[Item] = []
        self.calls: list[int] = []

    async def send(self, items: list[Item]) -> None:
        self.calls.append(len(items))
        if self.failure is not None:
            raise self.failure
        self.received.extend(items)


def write_spool(path: Path, size: int) -> int:
    """A spool of ``size`` bytes as an agent that met an absent control plane leaves it; returns its item count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w") as f:
        written = 0
        while written < size:
            chunk = "".join(json.dumps({"n": n + i, "line": LINE}) + "\n" for i in range(10_000))
            f.write(chunk)
            written += len(chunk)
            n += 10_000
    return n


@pytest.mark.skipif(not Path("/proc/self/io").exists() and os.environ.get("CI") != "true",
                    reason="needs Linux's /proc/self/io")
def test_a_retry_reads_at_most_one_batch_of_a_full_spool_and_nothing_is_lost_when_the_control_plane_returns(
        tmp_path: Path) -> None:
    spool = tmp_path / "spool" / "logs.jsonl"
    spooled = write_spool(spool, SPOOL_BYTES)
    cp = ControlPlane()
    cp.failure = Unreachable("connection refused")

    async def body() -> None:
        box = Outbox("logs", spool, Item, cp.send, batch=1000)
        before = bytes_read()
        assert not await box.send_round()  # the first attempt: one batch from the spool's head
        first = bytes_read() - before
        assert first <= BATCH_BYTES + (1 << 20), f"the first attempt read {first} bytes of a {SPOOL_BYTES}-byte spool"
        for round_ in range(20):  # retries while the control plane stays away, new items arriving meanwhile
            for i in range(50):
                box.put(Item(n=spooled + round_ * 50 + i, line=LINE))
            before = bytes_read()
            assert not await box.send_round()
            retry = bytes_read() - before
            assert retry <= 64 << 10, f"retry {round_} read {retry} bytes of a {SPOOL_BYTES}-byte spool"
        assert cp.calls[1:] == [1] * 20  # each retry probes with the oldest item alone
        assert spool.stat().st_size > SPOOL_BYTES  # the new items were appended, none of the old dropped

        cp.failure = None
        while not await box.send_round() or spool.exists():
            pass
        assert max(cp.calls) <= 1000

    uvloop.run(body())
    assert [item.n for item in cp.received] == list(range(spooled + 20 * 50))
    assert not spool.exists() and not spool.with_name("logs.jsonl.head").exists()


def test_a_spool_half_delivered_before_an_agent_restart_resumes_where_it_stopped(tmp_path: Path) -> None:
    spool = tmp_path / "runs.jsonl"
    cp = ControlPlane()

    async def body() -> None:
        box = Outbox("task-runs", spool, Item, cp.send, batch=10)
        cp.failure = Unreachable("down")
        for i in range(35):
            box.put(Item(n=i))
        assert not await box.send_round()
        assert spool.exists()

        sent = 0

        async def cut_after_two(items: list[Item]) -> None:  # delivers two batches, then is away again
            nonlocal sent
            if sent == 2:
                raise Unreachable("down again")
            sent += 1
            cp.received.extend(items)

        box2 = Outbox("task-runs", spool, Item, cut_after_two, batch=10)
        assert not await box2.send_round()
        assert [item.n for item in cp.received] == list(range(20))
        # the next agent (another process, say) starts from the head the last one wrote
        box3 = Outbox("task-runs", spool, Item, cp.send, batch=10)
        cp.failure = None
        box3.put(Item(n=35))
        assert await box3.send_round()

    uvloop.run(body())
    assert [item.n for item in cp.received] == list(range(36))
    assert not spool.exists()


@pytest.mark.parametrize("status", [401, 403])
def test_items_refused_with_the_token_are_kept_and_delivered_once_it_is_accepted(tmp_path: Path,
                                                                                 status: int) -> None:
    spool = tmp_path / "spans.jsonl"
    cp = ControlPlane()

    async def body() -> None:
        box = Outbox("spans", spool, Item, cp.send, batch=10)
        for i in range(5):
            box.put(Item(n=i))
        assert await box.send_round()
        cp.failure = CredentialRefused(status, "the API token is not valid (revoked, or never issued)")
        for i in range(5, 30):
            box.put(Item(n=i))
        for _ in range(3):
            assert not await box.send_round()
        assert box.dropped == 0 and spool.exists()
        cp.failure = None
        assert await box.send_round()

    uvloop.run(body())
    assert [item.n for item in cp.received] == list(range(30))


def test_a_batch_refused_as_invalid_is_dropped_and_counted(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    cp = ControlPlane()

    async def body() -> None:
        box = Outbox("metrics", tmp_path / "metrics.jsonl", Item, cp.send, batch=10)
        cp.failure = ApiRefused(422, "invalid metrics batch (points[0].at: more than an hour in the future)")
        for i in range(7):
            box.put(Item(n=i))
        assert await box.send_round()
        assert box.dropped == 7
        cp.failure = None
        box.put(Item(n=7))
        assert await box.send_round()

    uvloop.run(body())
    assert [item.n for item in cp.received] == [7]
    assert "refused a batch of 7 items" in caplog.text


def test_a_batch_being_sent_when_stop_runs_out_of_time_is_kept_on_disk(tmp_path: Path) -> None:
    spool = tmp_path / "logs.jsonl"

    async def hangs(items: list[Item]) -> None:
        await asyncio.sleep(3600)  # a control plane that accepted the connection and never answers

    async def body() -> None:
        box = Outbox("logs", spool, Item, hangs, batch=10)
        for i in range(25):
            box.put(Item(n=i))
        await box.stop(flush_timeout=0.2)

    uvloop.run(body())
    assert [json.loads(line)["n"] for line in spool.read_text().splitlines()] == list(range(25))
