"""What every benchmark suite returns, and the small tools they share.

A suite is a module with ``run(args) -> Suite``. Each figure is measured in the same run as its reference
(direct upstream, nginx, ...) because this machine's absolute timings vary from run to run; ``target`` is the
issue's goal, written as a comparison that ``met`` checks.
"""

from __future__ import annotations

import operator
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test kits start real control planes and agents

_COMPARE = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt}


@dataclass
class Figure:
    """One measured figure: ``value`` in ``unit``, next to its reference (measured in the same run) and the
    target it should meet (``op`` ``target``, e.g. ``<=`` 1.0)."""

    name: str
    value: float | None
    unit: str
    reference: str = ""  # e.g. "nginx: 41,200 req/s"
    op: str | None = None
    target: float | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.op is None or self.target is None or self.value is None:
            return None
        return _COMPARE[self.op](self.value, self.target)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


@dataclass
class Suite:
    name: str  # gateway, deploy, zero-downtime, builds, controlplane
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # raw numbers behind the figures
    error: str | None = None  # the suite could not run: why

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "figures": [f.as_dict() for f in self.figures], "details": self.details,
                "error": self.error}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` with linear interpolation (statistics.quantiles' inclusive method)."""
    data = sorted(values)
    if not data:
        raise ValueError("no values")
    if len(data) == 1:
        return data[0]
    position = q * (len(data) - 1)
    low = int(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def cpu_probe(rounds: int = 7) -> float:
    """Milliseconds a fixed piece of pure Python takes on this machine now (the median of ``rounds``).

    The same work every time, run while nothing else of the benchmark runs: it tells how fast the cores were
    around a suite. On a shared virtual machine it varies by half and more from hour to hour, and every absolute
    figure (latencies above all) with it; the ratios to references measured in the same run vary far less."""
    import time

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def wake_probe(rounds: int = 5, trips: int = 2000) -> float:
    """Microseconds of one round trip of a byte between two processes over a socket pair (the median of
    ``rounds``): two wake-ups of a sleeping process, what every proxied request and every API request handed to a
    thread pays more than once. On this virtual machine it costs several times what it does on bare metal, and
    it varies with the host's load independently of ``cpu_probe``."""
    import os
    import socket
    import time

    times = []
    for _ in range(rounds):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the echo: nothing but the socket calls
            ours.close()
            for _ in range(trips):
                theirs.recv(1)
                theirs.send(b"x")
            os._exit(0)
        theirs.close()
        started = time.perf_counter()
        for _ in range(trips):
            ours.send(b"x")
            ours.recv(1)
        times.append((time.perf_counter() - started) / trips * 1e6)
        os.waitpid(pid, 0)
        ours.close()
    return round(statistics.median(times), 1)
