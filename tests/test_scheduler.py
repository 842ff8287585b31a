"""Cron for scheduled tasks, on the real clock, under uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import uvloop

from cellplane.dataplane.scheduler import Job, Scheduler

EVERY_SECOND = "* * * * * *"


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    uvloop.run(asyncio.wait_for(body(), 30))


class Runs:
    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.fired: list[tuple[str, datetime, datetime]] = []  # key, scheduled time, when it started
        self.skipped: list[tuple[str, datetime, str]] = []

    async def run(self, job: Job, at: datetime) -> None:
        self.fired.append((job.key, at, datetime.now(at.tzinfo)))
        await asyncio.sleep(self.seconds)

    def skip(self, job: Job, at: datetime, reason: str) -> None:
        self.skipped.append((job.key, at, reason))

    def of(self, key: str) -> list[datetime]:
        return [at for k, at, _ in self.fired if k == key]


def test_an_every_second_job_fires_on_time_in_its_zone_and_a_removed_job_stops() -> None:
    async def body() -> None:
        runs = Runs()
        sched = Scheduler(runs.run, runs.skip)
        keep, drop = Job("dep_keep", EVERY_SECOND, "Asia/Kolkata"), Job("dep_drop", EVERY_SECOND)
        sched.set_jobs([keep, drop])
        await sched.start()
        await asyncio.sleep(2.6)
        assert len(runs.of("dep_keep")) >= 2 and len(runs.of("dep_drop")) >= 2
        for key, at, started in runs.fired:
            assert at.microsecond == 0 and started >= at
            assert started - at < timedelta(seconds=0.5)
            assert at.utcoffset() == (timedelta(hours=5, minutes=30) if key == "dep_keep" else timedelta(0))
        timer = sched._timers["dep_keep"]
        sched.set_jobs([keep])
        assert sched._timers["dep_keep"] is timer  # unchanged: its timer is left alone
        dropped_at = len(runs.of("dep_drop"))
        kept_at = len(runs.of("dep_keep"))
        await asyncio.sleep(2.1)
        assert len(runs.of("dep_drop")) == dropped_at
        assert len(runs.of("dep_keep")) >= kept_at + 2
        await sched.stop()
        assert runs.skipped == []

    run(body)


def test_forbid_skips_a_fire_time_while_a_run_is_in_progress_and_allow_overlaps() -> None:
    async def body() -> None:
        runs = Runs(seconds=4)
        sched = Scheduler(runs.run, runs.skip)
        sched.set_jobs([Job("forbid", EVERY_SECOND), Job("allow", EVERY_SECOND, concurrency="Allow")])
        await sched.start()
        await asyncio.sleep(3.2)
        assert sched.running("forbid") == 1
        assert sched.running("allow") >= 2
        assert len(runs.of("forbid")) == 1 and len(runs.of("allow")) >= 3
        skipped = [(at, reason) for key, at, reason in runs.skipped if key == "forbid"]
        assert len(skipped) >= 2
        assert skipped[0][1] == "the previous run is still in progress (concurrency policy Forbid)"
        assert all(key == "forbid" for key, _, _ in runs.skipped)
        await sched.stop()  # cancels the runs in progress
        assert sched.running("forbid") == 0 and sched.running("allow") == 0
        assert sched.running("unknown") == 0

    run(body)


def test_a_changed_job_is_replaced_and_missed_fire_times_are_not_replayed() -> None:
    async def body() -> None:
        runs = Runs()
        sched = Scheduler(runs.run)
        sched.set_jobs([Job("job", "0 0 1 1 *")])  # once a year: it will not fire during the test
        await sched.start()
        sched.set_jobs([Job("job", EVERY_SECOND)])
        await asyncio.sleep(1.5)
        assert len(runs.of("job")) >= 1
        await sched.stop()
        stopped = len(runs.of("job"))
        await asyncio.sleep(2.2)
        assert len(runs.of("job")) == stopped  # nothing fires while stopped
        restarted = datetime.now(ZoneInfo("UTC"))
        await sched.start()
        await asyncio.sleep(1.3)
        later = runs.of("job")[stopped:]
        assert 1 <= len(later) <= 2 and all(at >= restarted for at in later)  # the missed ones are not replayed
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
