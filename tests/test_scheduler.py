"""Cron for scheduled tasks under uvloop: the cron, skip and overlap cases on a fake clock (no real waiting),
one case on the real clock proving the wiring to the wall clock and asyncio's sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import uvloop

from cellplane.dataplane.scheduler import Job, Scheduler

EVERY_SECOND = "* * * * * *"


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    uvloop.run(asyncio.wait_for(body(), 30))


class FakeClock:
    """A scheduler clock that moves only when ``advance`` says so; sleepers wake in time order, and the event
    loop is let run after each wake-up so the timers and runs it sets off can react before time moves on."""

    def __init__(self, start: datetime = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)) -> None:
        self._now = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self, zone: tzinfo) -> datetime:
        return self._now.astimezone(zone)

    async def sleep_until(self, at: datetime) -> None:
        if at <= self._now:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((at, fut))
        await fut

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + timedelta(seconds=seconds))

    async def advance(self, seconds: float) -> None:
        target = self._now + timedelta(seconds=seconds)
        await settle()
        while due := [at for at, fut in self._sleepers if at <= target and not fut.done()]:
            self._now = max(self._now, min(due))
            waking = [(at, fut) for at, fut in self._sleepers if at <= self._now]
            self._sleepers = [(at, fut) for at, fut in self._sleepers if at > self._now]
            for _, fut in waking:
                if not fut.done():
                    fut.set_result(None)
            await settle()
        self._now = target
        self._sleepers = [(at, fut) for at, fut in self._sleepers if not fut.done()]


async def settle() -> None:
    """Let every task that is ready run, and the ones they wake, before the fake clock moves on."""
    for _ in range(20):
        await asyncio.sleep(0)


class Runs:
    def __init__(self, clock: FakeClock | None = None, seconds: float = 0.0) -> None:
        self.clock = clock
        self.seconds = seconds
        self.fired: list[tuple[str, datetime, datetime]] = []  # key, scheduled time, when it started
        self.skipped: list[tuple[str, datetime, str]] = []

    async def run(self, job: Job, at: datetime) -> None:
        now = self.clock.now(at.tzinfo or UTC) if self.clock else datetime.now(at.tzinfo)
        self.fired.append((job.key, at, now))
        if self.clock is not None:
            await self.clock.sleep(self.seconds)
        else:
            await asyncio.sleep(self.seconds)

    def skip(self, job: Job, at: datetime, reason: str) -> None:
        self.skipped.append((job.key, at, reason))

    def of(self, key: str) -> list[datetime]:
        return [at for k, at, _ in self.fired if k == key]


def test_on_the_real_clock_an_every_second_job_fires_on_time_in_its_zone() -> None:
    async def body() -> None:
        runs = Runs()
        sched = Scheduler(runs.run, runs.skip)  # the default clock: the wall clock and asyncio's sleep
        sched.set_jobs([Job("dep_keep", EVERY_SECOND, "Asia/Kolkata")])
        await sched.start()
        while len(runs.fired) < 2:
            await asyncio.sleep(0.05)
        await sched.stop()
        for _key, at, started in runs.fired:
            assert at.microsecond == 0 and started >= at
            assert started - at < timedelta(seconds=0.5)
            assert at.utcoffset() == timedelta(hours=5, minutes=30)
        assert runs.fired[1][1] - runs.fired[0][1] == timedelta(seconds=1)
        assert runs.skipped == []

    run(body)


def test_an_every_second_job_fires_on_time_in_its_zone_and_a_removed_job_stops() -> None:
    async def body() -> None:
        clock = FakeClock()
        runs = Runs(clock)
        sched = Scheduler(runs.run, runs.skip, clock=clock)
        keep, drop = Job("dep_keep", EVERY_SECOND, "Asia/Kolkata"), Job("dep_drop", EVERY_SECOND)
        sched.set_jobs([keep, drop])
        await sched.start()
        await clock.advance(2.6)
        assert len(runs.of("dep_keep")) == 2 and len(runs.of("dep_drop")) == 2
        for key, at, started in runs.fired:
            assert at.microsecond == 0 and started == at
            assert at.utcoffset() == (timedelta(hours=5, minutes=30) if key == "dep_keep" else timedelta(0))
        timer = sched._timers["dep_keep"]
        sched.set_jobs([keep])
        assert sched._timers["dep_keep"] is timer  # unchanged: its timer is left alone
        dropped_at = len(runs.of("dep_drop"))
        kept_at = len(runs.of("dep_keep"))
        await clock.advance(2.1)
        assert len(runs.of("dep_drop")) == dropped_at
        assert len(runs.of("dep_keep")) == kept_at + 2
        await sched.stop()
        assert runs.skipped == []

    run(body)


def test_forbid_skips_a_fire_time_while_a_run_is_in_progress_and_allow_overlaps() -> None:
    async def body() -> None:
        clock = FakeClock()
        runs = Runs(clock, seconds=3.5)
        sched = Scheduler(runs.run, runs.skip, clock=clock)
        sched.set_jobs([Job("forbid", EVERY_SECOND), Job("allow", EVERY_SECOND, concurrency="Allow")])
        await sched.start()
        await clock.advance(3.2)
        assert sched.running("forbid") == 1
        assert sched.running("allow") == 3
        assert len(runs.of("forbid")) == 1 and len(runs.of("allow")) == 3
        skipped = [(at, reason) for key, at, reason in runs.skipped if key == "forbid"]
        assert len(skipped) == 2
        assert skipped[0][1] == "the previous run is still in progress (concurrency policy Forbid)"
        assert all(key == "forbid" for key, _, _ in runs.skipped)
        await clock.advance(2.0)  # the first run ends half a second after the 4th fire time: the 5th runs
        assert len(runs.of("forbid")) == 2 and sched.running("forbid") == 1
        assert len([key for key, _, _ in runs.skipped if key == "forbid"]) == 3
        assert len(runs.of("allow")) == 5 and sched.running("allow") == 4  # the first one has ended
        await sched.stop()  # cancels the runs in progress
        assert sched.running("forbid") == 0 and sched.running("allow") == 0
        assert sched.running("unknown") == 0

    run(body)


def test_a_changed_job_is_replaced_and_missed_fire_times_are_not_replayed() -> None:
    async def body() -> None:
        clock = FakeClock()
        runs = Runs(clock)
        sched = Scheduler(runs.run, clock=clock)
        sched.set_jobs([Job("job", "0 0 1 1 *")])  # once a year: it will not fire during the test
        await sched.start()
        sched.set_jobs([Job("job", EVERY_SECOND)])
        await clock.advance(1.5)
        assert len(runs.of("job")) == 1
        await sched.stop()
        stopped = len(runs.of("job"))
        await clock.advance(2.2)
        assert len(runs.of("job")) == stopped  # nothing fires while stopped
        restarted = clock.now(ZoneInfo("UTC"))
        await sched.start()
        await clock.advance(1.3)
        later = runs.of("job")[stopped:]
        # the fire times missed while stopped (2 and 3 s) are not replayed; 4 and 5 s come after the restart
        assert later == [restarted.replace(second=4, microsecond=0), restarted.replace(second=5, microsecond=0)]
        assert all(at >= restarted for at in later)
        await sched.stop()

    run(body)


@pytest.mark.parametrize(("job", "message"), [
    (Job("a", EVERY_SECOND, timezone="Mars/Olympus_Mons"), "unknown time zone 'Mars/Olympus_Mons'"),
    (Job("a", "every tuesday"), "invalid cron expression"),
    (Job("a", EVERY_SECOND, concurrency="Replace"), "unknown concurrency policy"),  # type: ignore[arg-type]
])
def test_invalid_jobs_are_refused_and_change_nothing(job: Job, message: str) -> None:
    async def noop(job: Job, at: datetime) -> None:
        return None

    sched = Scheduler(noop)
    sched.set_jobs([Job("kept", "*/5 * * * *")])
    with pytest.raises(ValueError, match=message):
        sched.set_jobs([job])
    with pytest.raises(ValueError, match="given twice"):
        sched.set_jobs([Job("b", EVERY_SECOND), Job("b", EVERY_SECOND)])
    assert list(sched._jobs) == ["kept"]
