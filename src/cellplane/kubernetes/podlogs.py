"""Service pods' output shipped as log lines, like the local data plane's processes' output, and a failing pod's
last lines for its status.

``LogFollower.sync`` is handed the running pods of the service deployments on each observation pass and keeps one
streaming request per container (the pod logs API with ``follow`` and ``timestamps``): each line becomes a
``LogLineSent`` (stream ``stdout``: the API merges a container's stdout and stderr; replica: the pod's index among
its release's pods) handed to the host. A stream that ends (the container restarted, the connection dropped) is
opened again on the next pass from where it stopped: ``sinceSeconds`` back to the last line's timestamp, and lines
at or before that timestamp skipped, so a line is shipped once. The marks (the last timestamp per container) are
kept in ``kube-logmarks.json`` in the agent's data directory, so a restarted agent resumes too, instead of shipping
the containers' whole logs again; a container it never saw starts at the agent's start.

``LastLines`` reads, for a failing pod's report, the last ``TAIL_LINES`` lines of its container (``tailLines``),
once per pod and restart count, in the background: a pod whose node does not answer (a fake node has no kubelet)
must not hold up the observation.

Bounded cost: at most ``MAX_STREAMS`` streams (one HTTP connection each to the API server, which proxies it to the
kubelet), further containers are not followed (said once); lines past ``MAX_LINES_PER_SECOND`` per stream wait
(the stream is read more slowly, the kubelet buffers). Cost: one task and one connection per followed container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from pydantic import ValidationError

from cellplane.contract import DesiredDeployment, LogLineSent
from cellplane.dataplane.localstate import read_json, write_json
from cellplane.kubernetes.client import message

log = logging.getLogger("cellplane.dataplane")
MAX_STREAMS = 100
MAX_LINES_PER_SECOND = 200
TAIL_LINES = 5
TAIL_TIMEOUT = 5.0  # seconds a failing pod's last lines are waited for
FIRST_BACKOFF, MAX_BACKOFF = 5.0, 300.0  # seconds before a failed stream is opened again (doubling)
MARKS = "kube-logmarks.json"
StreamKey = tuple[str, str, str]  # namespace, pod, container


def _parse(raw: str) -> tuple[str, str]:
    """(timestamp, text) of a line the API returned with ``timestamps=true``."""
    stamp, _, text = raw.rstrip("\n").partition(" ")
    return stamp, text


def sortable(stamp: str) -> str:
    """A log timestamp (RFC 3339 in UTC, its fraction of a second with trailing zeros trimmed, as the kubelet
    writes it) as text that sorts in time order: the fraction padded to nine digits."""
    head, dot, rest = stamp.rstrip("Z").partition(".")
    return f"{head}.{rest if dot else '':0<9}"


def _seconds_since(mark: str) -> int:
    """``sinceSeconds`` that reaches back to a ``sortable`` mark (a second more: the API takes whole seconds)."""
    try:
        then = datetime.strptime(mark[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return max(1, math.ceil(time.time() - then.timestamp()) + 1)


class LogFollower:
    """The streams of the service pods' containers (see the module's docstring)."""

    def __init__(self, client: AsyncClient, root: Path, ship: Callable[[LogLineSent], None]) -> None:
        self.client = client
        self.ship = ship
        self.path = root / MARKS
        raw = read_json(self.path, {})
        self.marks: dict[str, str] = raw if isinstance(raw, dict) else {}
        self.started = datetime.now(UTC).isoformat()
        self.streams: dict[StreamKey, asyncio.Task[None]] = {}
        self.retry_at: dict[StreamKey, tuple[float, float]] = {}  # a stream that failed: (when again, backoff)
        self._said_full = False
        self._dirty = False
        self.lines = 0  # lines shipped (for tests)

    def sync(self, pods: list[tuple[dict[str, Any], DesiredDeployment, int]]) -> None:
        """Follow the containers of these running pods ((pod, its deployment, its replica index)); stop following
        what is not among them."""
        wanted: dict[StreamKey, tuple[DesiredDeployment, int]] = {}
        for pod, d, index in pods:
            meta = pod["metadata"]
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                if (cs.get("state") or {}).get("running") is not None:
                    wanted[(meta["namespace"], meta["name"], cs["name"])] = (d, index)
        for key in [k for k in self.streams if k not in wanted]:
            self.streams.pop(key).cancel()
        self.retry_at = {k: v for k, v in self.retry_at.items() if k in wanted}
        now = time.monotonic()
        for key, (d, index) in wanted.items():
            task = self.streams.get(key)
            if (task is not None and not task.done()) or self.retry_at.get(key, (0.0, 0.0))[0] > now:
                continue
            if len([t for t in self.streams.values() if not t.done()]) >= MAX_STREAMS:
                if not self._said_full:
                    log.warning("pod logs: %d containers followed already; the others are not shipped", MAX_STREAMS)
                    self._said_full = True
                break
            self.streams[key] = asyncio.create_task(self._follow(key, d, index), name=f"logs-{key[1]}")
        if self._dirty:
            self._dirty = False
            alive = {"/".join(k) for k in wanted}
            self.marks = {k: v for k, v in self.marks.items() if k in alive}
            with contextlib.suppress(OSError):
                write_json(self.path, self.marks)

    async def _follow(self, key: StreamKey, d: DesiredDeployment, index: int) -> None:
        namespace, pod, container = key
        mark_key = "/".join(key)
        mark = sortable(self.marks.get(mark_key) or self.started.replace("+00:00", "Z"))
        budget, window = MAX_LINES_PER_SECOND, time.monotonic()
        try:
            async for raw in self.client.log(pod, namespace=namespace, container=container, follow=True,
                                             timestamps=True, since=_seconds_since(mark), newlines=False):
                stamp, text = _parse(raw)
                if sortable(stamp) <= mark:
                    continue
                mark = sortable(stamp)
                self.marks[mark_key] = stamp
                self._dirty = True
                try:
                    self.ship(LogLineSent(deployment=d.id, run=None, environment=d.environment, project=d.project,
                                          component=d.component, replica=index, stream="stdout", at=stamp,
                                          line=text.replace("\x00", "\ufffd")))
                    self.lines += 1
                except ValidationError:
                    continue
                budget -= 1
                if budget <= 0:
                    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - window)))
                    budget, window = MAX_LINES_PER_SECOND, time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # (no kubelet behind a fake node, a pod gone: opened again, later and later)
            log.debug("pod logs of %s/%s/%s: %s", namespace, pod, container, message(e))
            backoff = min(MAX_BACKOFF, 2 * self.retry_at.get(key, (0.0, FIRST_BACKOFF / 2))[1])
            self.retry_at[key] = (time.monotonic() + backoff, backoff)

    async def last_lines(self, namespace: str, pod: str, container: str = "app") -> str:
        """The last ``TAIL_LINES`` lines of a container, joined with `` | `` ("" when they cannot be read)."""
        async def read() -> list[str]:
            return [line async for line in self.client.log(pod, namespace=namespace, container=container,
                                                            tail_lines=TAIL_LINES, newlines=False)]

        try:
            lines = await asyncio.wait_for(read(), TAIL_TIMEOUT)
        except Exception:  # (a fake node has no kubelet to ask; a pod gone)
            return ""
        return " | ".join(line.strip() for line in lines if line.strip())[-1000:]

    async def close(self) -> None:
        tasks = list(self.streams.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.streams.clear()
        with contextlib.suppress(OSError):
            write_json(self.path, self.marks)


class LastLines:
    """The last lines of failing pods (see the module's docstring); ``changed`` is called when some came."""

    def __init__(self, follower: LogFollower, changed: Callable[[], None]) -> None:
        self.follower, self.changed = follower, changed
        self.lines: dict[tuple[str, int], tuple[str, str]] = {}  # (pod uid, restarts) -> (pod name, text)
        self.tasks: set[asyncio.Task[None]] = set()

    def want(self, pods: list[dict[str, Any]]) -> None:
        """Read the lines of these pods (not read yet at their restart count); forget the others'."""
        keys = set()
        for pod in pods:
            meta = pod["metadata"]
            key = (meta.get("uid", ""), sum(int(cs.get("restartCount") or 0)
                                            for cs in (pod.get("status") or {}).get("containerStatuses") or []))
            keys.add(key)
            if key not in self.lines:
                self.lines[key] = (meta["name"], "")
                task = asyncio.create_task(self._read(key, meta["namespace"], meta["name"]))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        self.lines = {k: v for k, v in self.lines.items() if k in keys}

    def by_pod(self) -> dict[str, str]:
        return {name: text for name, text in self.lines.values() if text}

    async def _read(self, key: tuple[str, int], namespace: str, pod: str) -> None:
        text = await self.follower.last_lines(namespace, pod)
        if text and key in self.lines:
            self.lines[key] = (pod, text)
            self.changed()

    async def close(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
