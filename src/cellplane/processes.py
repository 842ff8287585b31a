"""Killing a process tree so that nothing survives: used by build workers and the data plane's supervisor, and
by the agent at start to end what a crashed predecessor left running.

Every process is frozen (SIGSTOP) before any is killed, so none can fork a replacement between the kills.
The caller's own child (``owned``) is killed but never waited for here: psutil would reap it, and asyncio,
which reaps its own children, would then wait for its exit status forever.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable

import psutil

CREATE_TIME_SLACK = 0.02  # seconds: create times are counted in clock ticks (10 ms)


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def freeze_and_kill(procs: Iterable[psutil.Process], owned: int | None = None, wait: float = 2.0) -> bool:
    """SIGKILL every live process of ``procs``; returns False when none was alive (nothing left to do)."""
    live = [p for p in procs if alive(p)]
    if not live:
        return False
    for p in live:
        with contextlib.suppress(psutil.Error):
            p.suspend()
    for p in live:
        with contextlib.suppress(psutil.Error):
            p.kill()
    others = [p for p in live if p.pid != owned]
    # Until each is dead. A zombie is dead: it is not our child, and whoever reaps it (init, when its parent died
    # first) may take a second or more to do so; psutil.wait_procs would wait for that.
    deadline = time.monotonic() + wait
    delay = 0.001
    while any(alive(p) for p in others) and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return bool(others)


def same_process(pid: int, created: float) -> psutil.Process | None:
    """The live process ``pid`` if it is still the one created at ``created`` (psutil's ``create_time``); None when
    it is gone or the pid now names another process (the kernel reuses pids): what makes a recorded pid safe to
    kill after the recorder died."""
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - created) > CREATE_TIME_SLACK:
            return None
    except psutil.Error:
        return None
    return p if alive(p) else None


def session_members(sid: int, since: float) -> list[psutil.Process]:
    """The live processes of session ``sid`` created at ``since`` or later: what a replica started in a session of its
    own left, including processes that moved to other process groups or lost their parent. One pass over the
    process table."""
    members = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.create_time() >= since - CREATE_TIME_SLACK and alive(p):
                members.append(p)
        except (OSError, psutil.Error):
            continue
    return members
