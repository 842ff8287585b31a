"""Cron for scheduled tasks: fire each job at the times its cron expression names, in its time zone.

Each job has a timer task of its own; ``set_jobs`` is level-triggered (the agent passes every job it wants
on every reconcile) and only touches timers whose job changed. A fire time is computed from the wall clock
in the job's zone and waited for in slices, so a changed clock or a suspended machine is noticed; a fire
time missed while the scheduler was stopped (or the machine slept) is not replayed — the timer moves on to
the next one that is still ahead.

The scheduler reads the time and waits through a ``Clock`` (``now`` in a zone, ``sleep_until`` an aware
time); ``RealClock``, the default, is the wall clock and asyncio's sleep, so tests can pass a clock of their
own and run cron, skip and overlap cases without waiting for real seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from cellplane.dataplane.tasks import cancel_all

log = logging.getLogger("cellplane.dataplane")
SLICE_SECONDS = 30.0  # the longest single sleep: the clock is looked at again after it


class Clock(Protocol):
    """Where the scheduler reads the time and waits for it."""

    def now(self, zone: tzinfo) -> datetime:
        """The current time in ``zone`` (aware)."""
        ...

    async def sleep_until(self, at: datetime) -> None:
        """Return once ``now`` has reached the aware time ``at`` (at once if it has already)."""
        ...


class RealClock:
    """The wall clock; waits in slices of at most ``SLICE_SECONDS`` and looks at the clock again after each,
    so a changed clock or a suspended machine is noticed within a slice."""

    def now(self, zone: tzinfo) -> datetime:
        return datetime.now(zone)

    async def sleep_until(self, at: datetime) -> None:
        # asyncio's clock may wake a little early (uvloop counts milliseconds): sleep until really due.
        while (left := (at - datetime.now(at.tzinfo)).total_seconds()) > 0:
            await asyncio.sleep(min(left, SLICE_SECONDS) + 0.001)


@dataclass(frozen=True)
class Job:
    key: str  # unique (the deployment id)
    cron: str  # 5 fields, or 6 with seconds last (croniter's convention: '* * * * * */2' is every 2 s)
    timezone: str = "UTC"
    concurrency: Literal["Forbid", "Allow"] = "Forbid"


class Scheduler:
    def __init__(self, run: Callable[[Job, datetime], Awaitable[None]],
                 on_skip: Callable[[Job, datetime, str], None] | None = None,
                 clock: Clock | None = None) -> None:
        self._run = run
        self._clock: Clock = clock if clock is not None else RealClock()
        self._on_skip = on_skip
        self._jobs: dict[str, Job] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._runs: dict[str, set[asyncio.Task[None]]] = {}
        self._started = False

    def set_jobs(self, jobs: Iterable[Job]) -> None:
        """Make the scheduled jobs exactly ``jobs``: add new ones, drop missing ones, replace changed ones.
        Raises ValueError (and changes nothing) for an invalid cron expression, an unknown time zone, an
        unknown concurrency policy or a key given twice. Runs in progress of a dropped job finish."""
        wanted: dict[str, Job] = {}
        for job in jobs:
            validate(job)
            if job.key in wanted:
                raise ValueError(f"job {job.key} is given twice")
            wanted[job.key] = job
        for key in [k for k, job in self._jobs.items() if wanted.get(k) != job]:
            del self._jobs[key]
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
        for key, job in wanted.items():
            if key not in self._jobs:
                self._jobs[key] = job
                if self._started:
                    self._arm(job)

    async def start(self) -> None:
        self._started = True
        for job in self._jobs.values():
            if job.key not in self._timers:
                self._arm(job)

    async def stop(self) -> None:
        """Stop firing, cancel the runs in progress and wait for them to end."""
        self._started = False
        tasks = [*self._timers.values(), *(t for runs in self._runs.values() for t in runs)]
        self._timers.clear()
        await cancel_all(tasks)
        self._runs.clear()

    def running(self, key: str) -> int:
        """How many runs of the job ``key`` are in progress."""
        return sum(1 for task in self._runs.get(key, ()) if not task.done())

    def _arm(self, job: Job) -> None:
        self._timers[job.key] = asyncio.create_task(self._timer(job), name=f"cron {job.key}")

    async def _timer(self, job: Job) -> None:
        zone = ZoneInfo(job.timezone)
        base = self._clock.now(zone)
        while True:
            at = croniter(job.cron, base).get_next(datetime)
            await self._clock.sleep_until(at)
            self._fire(job, at)
            base = max(at, self._clock.now(zone))  # a late wake-up does not replay the fire times it missed

    def _fire(self, job: Job, at: datetime) -> None:
        if job.concurrency == "Forbid" and self.running(job.key):
            self._skip(job, at, "the previous run is still in progress (concurrency policy Forbid)")
            return
        task = asyncio.create_task(self._one(job, at), name=f"cron run {job.key} {at.isoformat()}")
        self._runs.setdefault(job.key, set()).add(task)
        task.add_done_callback(lambda t: self._ended(job.key, t))

    def _ended(self, key: str, task: asyncio.Task[None]) -> None:
        runs = self._runs.get(key)
        if runs is not None:
            runs.discard(task)
            if not runs:
                del self._runs[key]

    async def _one(self, job: Job, at: datetime) -> None:
        try:
            await self._run(job, at)
        except Exception:  # one failed run must not stop the schedule
            log.exception("scheduled run of %s at %s failed", job.key, at.isoformat())

    def _skip(self, job: Job, at: datetime, reason: str) -> None:
        if self._on_skip is None:
            return
        try:
            self._on_skip(job, at, reason)
        except Exception:
            log.exception("on_skip callback failed for %s", job.key)


def validate(job: Job) -> None:
    """Raise ValueError when the scheduler cannot run ``job``."""
    try:
        ZoneInfo(job.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"job {job.key}: unknown time zone {job.timezone!r}") from None
    if not croniter.is_valid(job.cron):
        raise ValueError(f"job {job.key}: invalid cron expression {job.cron!r}")
    if job.concurrency not in ("Forbid", "Allow"):
        raise ValueError(f"job {job.key}: unknown concurrency policy {job.concurrency!r} (Forbid or Allow)")
