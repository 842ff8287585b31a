"""Reports that must reach the control plane (log lines, task runs, telemetry), buffered on disk while it is away.

An outbox holds one kind of item: a model of the contract (``LogLineSent``, ``TaskRunSent``, ...), which the
control-plane client turns into JSON when it sends a batch. Items go to memory first; a sender task posts them in
batches. When the control plane is unreachable, or refuses the data plane's token (401/403: the operator may put a
new one in the token file), the pending batch and everything after it is appended to a spool file (JSON lines) and
sent from there, oldest first, once it answers again: order is kept and nothing is lost across an agent restart. A
batch the control plane refuses as invalid (any other 4xx) is dropped, and the log says how many items it held.

What a retry costs does not depend on how much is spooled:

* The spool is read from its head, one batch at a time; the byte offset of the first unsent line is kept in a
  small file next to it (``<spool>.head``), written after each delivered batch. Delivered lines are not rewritten
  away; the file is removed once everything in it is delivered.
* While the control plane fails, each retry first sends a probe: the single oldest item (one line read from the
  spool's head, or the first item in memory). Only when that is delivered does the outbox read and send more.
* New items are appended to the end (never reading what is there); the file's size comes from ``fstat``.
* Past ``max_spool_bytes`` the oldest unsent lines are dropped: the lines kept (the newest half of the bound) are
  copied to a new file and the dropped ones counted, in 1 MiB chunks (once per half a bound of appended bytes).

A crash between a delivery and the write of the head offset sends that batch again (at least once, in order).

A spooled line is an item's JSON (``model_dump_json``, the keys it was given); it is read back with the item's model
(``model_validate_json``), so a spool written when the items were dicts (``json.dumps`` of the same keys) is read and
sent as it was. A line that does not parse as an item is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from cellplane.dataplane.cpclient import ApiRefused, CredentialRefused, Unreachable

log = logging.getLogger("cellplane.dataplane")
Item = TypeVar("Item", bound=BaseModel)
RETRIED = (Unreachable, CredentialRefused)  # kept and sent again later; any other refusal drops the batch
BATCH_BYTES = 4 << 20  # a batch read from the spool stops after this many bytes, whatever its item count
CHUNK = 1 << 20


class Outbox(Generic[Item]):
    def __init__(self, name: str, spool: Path, item: type[Item], send: Callable[[list[Item]], Awaitable[None]],
                 batch: int = 1000, interval: float = 0.5, max_spool_bytes: int = 64 << 20) -> None:
        self.name = name
        self.item = item
        self.spool = spool
        self.head_file = spool.with_name(spool.name + ".head")
        self._send = send
        self._batch = batch
        self._interval = interval
        self._max_spool = max_spool_bytes
        self._memory: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # the last send failed: the next round starts with a one-item probe
        self.dropped = 0  # items dropped: over the bounds of memory or spool, or refused as invalid
        self.spool_bytes_read = 0  # bytes of spooled lines read to be sent (what a retry costs)

    def put(self, item: Item) -> None:
        """Queue an item; never touches the disk (it runs on the event loop, with the gateway's requests)."""
        self._memory.append(item)
        if len(self._memory) >= self._batch:
            self._wake.set()
        if len(self._memory) > self._batch * 100:  # faster than even the spool takes them: keep memory bounded
            self._memory.popleft()
            self.dropped += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"outbox-{self.name}")

    async def stop(self, flush_timeout: float = 3.0) -> None:
        """Try to send what is left for a moment, then keep the rest on disk for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush(), flush_timeout)
        await asyncio.to_thread(self._to_spool)

    async def _loop(self) -> None:
        delay = self._interval
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for can swallow a cancel (Python 3.11)
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            try:
                delivered = await self.send_round()
            except Exception:  # never let the sender die; the items stay where they are
                log.exception("%s: sending failed", self.name)
                delivered = False
            delay = self._interval if delivered else min(max(delay * 2, 1.0), 10.0)

    async def send_round(self) -> bool:
        """One round of the sender: send what is queued, the spool first. When the control plane is away or refuses
        the token, what is in memory goes to the spool. Whether the round delivered (or dropped as invalid) all it
        tried."""
        try:
            await self._flush()
        except RETRIED:
            await asyncio.to_thread(self._to_spool)  # file work off the event loop
            return False
        return True

    async def _deliver(self, items: list[Item]) -> None:
        """Send one batch. Raises what is retried (the batch is then still the caller's); a batch refused as
        invalid is dropped here and counted."""
        try:
            await self._send(items)
        except RETRIED:
            self._failing = True
            raise
        except ApiRefused as e:
            self.dropped += len(items)
            log.warning("%s: the control plane refused a batch of %d items (%s); dropped", self.name, len(items), e)
        self._failing = False

    async def _flush(self) -> None:
        """Send what is queued now. Items that arrive meanwhile wait for the next round (the interval, or a full
        batch): draining until empty would post a stream of tiny batches while items keep coming."""
        if self._failing:
            await self._probe()
        if self.spool.exists():
            await self._flush_spool()
        left = len(self._memory)
        while left > 0 and self._memory:
            items = [self._memory.popleft() for _ in range(min(self._batch, left, len(self._memory)))]
            left -= len(items)
            try:
                await self._deliver(items)
            except (*RETRIED, asyncio.CancelledError):  # cancelled: stop()'s flush ran out of time; keep them
                self._memory.extendleft(reversed(items))
                raise

    async def _probe(self) -> None:
        """After a failure: send only the oldest item, so that a control plane still away costs one short read."""
        while self._failing and self.spool.exists():
            items, start, end = await asyncio.to_thread(self._read_head, 1)
            if end == start:
                break
            if items:
                await self._deliver(items)  # on a failure the head stays where it is
            await asyncio.to_thread(self._advance, end)
        if self._failing and self._memory:
            item = self._memory.popleft()
            try:
                await self._deliver([item])
            except (*RETRIED, asyncio.CancelledError):
                self._memory.appendleft(item)
                raise
        self._failing = False  # nothing left to probe with: the next send tells

    async def _flush_spool(self) -> None:
        while self.spool.exists():
            items, start, end = await asyncio.to_thread(self._read_head, self._batch)
            if end == start:
                return  # no whole line left (the rest of one cut short by a crash)
            if items:
                await self._deliver(items)
            await asyncio.to_thread(self._advance, end)

    # -- the spool file (these run in a worker thread) -----------------------------------------------------------

    def _head(self) -> int:
        try:
            return int(self.head_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _read_head(self, limit: int) -> tuple[list[Item], int, int]:
        """Up to ``limit`` items from the spool's head (and at most BATCH_BYTES): the items, and the offsets of the
        first line read and of the line after the last (equal when there is no whole line to read)."""
        items: list[Item] = []
        try:
            f = self.spool.open("rb")
        except FileNotFoundError:
            return items, 0, 0
        with f:
            start = self._head()
            f.seek(start)
            read = 0
            while len(items) < limit and read < BATCH_BYTES:
                line = f.readline()
                if not line.endswith(b"\n"):  # the end (or a line cut short by a crash while it was written)
                    break
                read += len(line)
                try:
                    items.append(self.item.model_validate_json(line))
                except ValueError:  # not JSON, or not an item (pydantic's ValidationError is a ValueError)
                    self.dropped += 1
        self.spool_bytes_read += read
        return items, start, start + read

    def _advance(self, offset: int) -> None:
        """Mark everything before ``offset`` delivered; the spool goes once all of it is."""
        try:
            size = self.spool.stat().st_size
        except FileNotFoundError:
            size = 0
        if offset >= size:
            self.spool.unlink(missing_ok=True)
            self.head_file.unlink(missing_ok=True)
        else:
            self._write_head(offset)

    def _write_head(self, offset: int) -> None:
        tmp = self.head_file.with_suffix(".tmp")
        tmp.write_text(f"{offset}\n")
        tmp.replace(self.head_file)

    def _to_spool(self) -> None:
        if not self._memory:
            return
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a", encoding="utf-8") as f:
            while self._memory:
                f.write(self._memory.popleft().model_dump_json(exclude_unset=True) + "\n")
            f.flush()
            size = os.fstat(f.fileno()).st_size
        if size > self._max_spool:
            self._trim(size)

    def _trim(self, size: int) -> None:
        """Keep the newest lines, up to half the bound, in a new file; count the unsent lines dropped."""
        head = self._head()
        with self.spool.open("rb") as f:
            start = max(head, size - self._max_spool // 2)
            if start > head:  # begin at the first whole line at or after ``start``
                f.seek(start - 1)
                f.readline()
                start = f.tell()
            dropped = _count_lines(f, head, start)
            tmp = self.spool.with_suffix(".tmp")
            with tmp.open("wb") as out:
                f.seek(start)
                while chunk := f.read(CHUNK):
                    out.write(chunk)
        self._write_head(0)  # before the new file replaces the old: a crash in between sends lines twice, not never
        tmp.replace(self.spool)
        self.dropped += dropped
        if dropped:
            log.warning("%s: spool over %d bytes; dropped the oldest %d items", self.name, self._max_spool,
                        dropped)


def _count_lines(f: Any, start: int, end: int) -> int:
    f.seek(start)
    count, left = 0, end - start
    while left > 0 and (chunk := f.read(min(CHUNK, left))):
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count
