"""Reports that must reach the control plane (log lines, task runs), buffered on disk while it is away.

Items go to memory first; a sender task posts them in batches. When the control plane is unreachable,
the pending batch and everything after it is appended to a spool file (JSON lines) and sent from there,
oldest first, once it answers again: order is kept and nothing is lost across an agent restart. The spool
is bounded; past the bound the oldest lines are dropped and a line says how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cellplane.dataplane.cpclient import ApiRefused, Unreachable

log = logging.getLogger("cellplane.dataplane")
Send = Callable[[list[dict[str, Any]]], Awaitable[None]]


class Outbox:
    def __init__(self, name: str, spool: Path, send: Send, batch: int = 1000, interval: float = 0.5,
                 max_spool_bytes: int = 64 << 20) -> None:
        self.name = name
        self.spool = spool
        self._send = send
        self._batch = batch
        self._interval = interval
        self._max_spool = max_spool_bytes
        self._memory: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def put(self, item: dict[str, Any]) -> None:
        """Queue an item; never touches the disk (it runs on the request path of the gateway)."""
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                await self._flush()
                delay = self._interval
            except Unreachable:
                await asyncio.to_thread(self._to_spool)  # file work off the event loop
                delay = min(max(delay * 2, 1.0), 10.0)
            except Exception as e:  # a refused batch is dropped, never retried forever
                log.warning("%s: the control plane refused a batch (%s); dropped", self.name, e)
                delay = self._interval

    async def _flush(self) -> None:
        """Send what is queued now. Items that arrive meanwhile wait for the next round (the interval, or a full
        batch): draining until empty would post a stream of tiny batches while items keep coming."""
        if self.spool.exists():
            await self._flush_spool()
        left = len(self._memory)
        while left > 0 and self._memory:
            items = [self._memory.popleft() for _ in range(min(self._batch, left, len(self._memory)))]
            left -= len(items)
            try:
                await self._send(items)
            except Unreachable:
                self._memory.extendleft(reversed(items))
                raise

    def _read_spool(self) -> list[dict[str, Any]]:
        items = []
        for line in self.spool.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                items.append(json.loads(line))
        return items

    async def _flush_spool(self) -> None:
        items = await asyncio.to_thread(self._read_spool)
        for start in range(0, len(items), self._batch):
            try:
                await self._send(items[start:start + self._batch])
            except ApiRefused as e:
                log.warning("%s: the control plane refused spooled items (%s); dropped", self.name, e)
            except Unreachable:
                if start:  # what was delivered leaves the spool; an unchanged spool is left as it is
                    rest = "".join(json.dumps(i) + "\n" for i in items[start:])
                    await asyncio.to_thread(self._write_spool, rest)
                raise
        self.spool.unlink(missing_ok=True)

    def _write_spool(self, text: str) -> None:
        tmp = self.spool.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.spool)

    def _to_spool(self) -> None:
        if not self._memory:
            return
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a") as f:
            while self._memory:
                f.write(json.dumps(self._memory.popleft()) + "\n")
        if self.spool.stat().st_size > self._max_spool:
            self._trim()

    def _trim(self) -> None:
        lines = self.spool.read_text(errors="replace").splitlines()
        keep: list[str] = []
        size = 0
        for line in reversed(lines):
            size += len(line) + 1
            if size > self._max_spool // 2:
                break
            keep.append(line)
        self.dropped += len(lines) - len(keep)
        keep.reverse()
        self._write_spool("".join(line + "\n" for line in keep))
        log.warning("%s: spool over %d bytes; dropped the oldest %d items", self.name, self._max_spool,
                    len(lines) - len(keep))
