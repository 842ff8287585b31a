"""Killing a process tree so that nothing survives: used by build workers and the data plane's supervisor.

Every process is frozen (SIGSTOP) before any is killed, so none can fork a replacement between the kills.
The caller's own child (``owned``) is killed but never waited for here: psutil would reap it, and asyncio,
which reaps its own children, would then wait for its exit status forever.
"""

from __future__ import annotations

import contextlib
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
    if others:
        psutil.wait_procs(others, timeout=wait)
    return bool(others)
