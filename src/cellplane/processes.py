"""Killing a process tree so that nothing survives: used by build workers and the data plane's supervisor.

Every process is frozen (SIGSTOP) before any is killed, so none can fork a replacement between the kills.
The caller's own child (``owned``) is killed but never waited for here: psutil would reap it, and asyncio,
which reaps its own children, would then wait for its exit status forever.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

import psutil


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
