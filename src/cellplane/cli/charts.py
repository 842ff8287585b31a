"""Small text helpers of the observability commands: durations given as options, numbers and times for people,
sparklines and waterfall bars."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from cellplane.cli.client import CliError
from cellplane.figures import compact as compact
from cellplane.figures import mib as mib
from cellplane.figures import ms as ms
from cellplane.figures import number as number
from cellplane.figures import percent as percent
from cellplane.figures import plural as plural
from cellplane.figures import rate as rate

BLOCKS = "▁▂▃▄▅▆▇█"
PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")  # as the control plane reads durations: 30s, 10m, 1h30m
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# -- options -------------------------------------------------------------------------------------------------------


def seconds(value: str) -> float | None:
    """The seconds of a duration like 10m or 1h30m; None for anything else (an ISO time)."""
    text, total, pos = value.strip().lower(), 0.0, 0
    for match in PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * UNITS[match.group(2)]
        pos = match.end()
    return total if text and pos == len(text) else None


def duration(value: str | None, option: str, timestamp: bool = False) -> str | None:
    """``value`` (30s, 10m, 1h, 2d, 1h30m; with ``timestamp``, an ISO 8601 time with its offset too) as the API
    takes it, or a CliError."""
    if value is None:
        return None
    text = value.strip()
    if seconds(text) is not None:
        return text.lower()
    if timestamp:
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if at.tzinfo is None:
                raise CliError(f"{option}: give the time's offset, e.g. {text}Z or {text}+02:00")
            return text
    raise CliError(f"{option}: give a duration like 10m or 1h" + (" (or an ISO 8601 time)" if timestamp else "")
                   + f", not '{value}'")


def milliseconds(value: str | None, option: str) -> int | None:
    """200ms, 1s, 0.5s or a bare number of milliseconds, in whole milliseconds."""
    if value is None:
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        found = seconds(text)
        number = found * 1000 if found is not None else -1
    if not 0 <= number < float("inf"):
        raise CliError(f"{option}: give a duration like 200ms, 1s or 0.5s (a bare number is milliseconds), "
                       f"not '{value}'")
    return round(number)


def span(since: str) -> str:
    """'in the last 1h' for a duration, 'since 14:02:03' for a time."""
    return f"in the last {since}" if seconds(since) is not None else f"since {when(since)}"


# -- times ---------------------------------------------------------------------------------------------------------


def when(at: str | None) -> str:
    """A timestamp in local time: HH:MM:SS today, else with its date."""
    if not at:
        return "-"
    try:
        t = datetime.fromisoformat(at).astimezone()
    except ValueError:
        return at
    return t.strftime("%H:%M:%S" if t.date() == datetime.now().astimezone().date() else "%Y-%m-%d %H:%M:%S")


# -- charts --------------------------------------------------------------------------------------------------------


def sparkline(values: Sequence[float | None], zero: bool = True) -> str:
    """One character per value, ▁ (lowest) to █ (highest); a missing value is a space.

    With ``zero``, the scale starts at 0 (so a steady 100 req/s is a flat high line, not noise); without it,
    at the lowest value (memory that grows from 40 to 48 MiB)."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    low, high = (min(0.0, min(known)) if zero else min(known)), max(known)
    top = len(BLOCKS) - 1
    chars = []
    for v in values:
        if v is None:
            chars.append(" ")
        elif high == low:
            chars.append(BLOCKS[top if zero and high > 0 else 0])
        else:
            chars.append(BLOCKS[round((v - low) / (high - low) * top)])
    return "".join(chars)


def squeeze(values: Sequence[float | None], width: int) -> list[float | None]:
    """At most ``width`` values: the means of runs of neighbours (a run of missing values stays missing)."""
    if len(values) <= width:
        return list(values)
    size = -(-len(values) // width)
    runs = [[v for v in values[i:i + size] if v is not None] for i in range(0, len(values), size)]
    return [sum(run) / len(run) if run else None for run in runs]


def bar(offset: float, length: float, total: float, width: int = 30) -> tuple[int, int]:
    """Where a span of a trace starts and how many of ``width`` columns it covers (at least one)."""
    if total <= 0:
        return 0, width
    start = min(int(offset / total * width), width - 1)
    end = max(start + 1, min(width, round((offset + length) / total * width)))
    return start, end - start
