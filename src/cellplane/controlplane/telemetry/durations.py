"""Durations as people write them in query strings and rule definitions: 30s, 10m, 1h, 2d (and 1h30m)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cellplane.errors import FieldProblem, InvalidError
from cellplane.store.tables import now

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(text: str, field: str, low: float = 0.0, high: float = 90 * 86400.0) -> float:
    """``text`` as seconds; an InvalidError naming ``field`` when it is not a duration in [low, high]."""
    value = text.strip().lower()
    total, pos = 0.0, 0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise InvalidError(f"{field}: '{text}' is not a duration; write it like 30s, 10m, 1h or 2d",
                           [FieldProblem(field, "not a duration")])
    if not low <= total <= high:
        raise InvalidError(f"{field}: {text} is out of range ({show(low)} to {show(high)})",
                           [FieldProblem(field, "out of range")])
    return total


def since(text: str | None, default: float, field: str = "since", high: float = 90 * 86400.0) -> datetime:
    """The start of a time range: ``text`` ago (a duration) or an ISO timestamp; ``default`` seconds ago when
    absent."""
    if text is None or not text.strip():
        return now() - timedelta(seconds=default)
    if text[:1].isdigit() and ("-" in text or "T" in text):
        try:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidError(f"{field}: '{text}' is neither a duration (10m) nor an ISO timestamp",
                               [FieldProblem(field, "not a duration or timestamp")]) from None
        if at.tzinfo is None:
            raise InvalidError(f"{field}: give the timestamp's offset (Z or +00:00)",
                               [FieldProblem(field, "timestamp without offset")])
        try:
            at = at.astimezone(UTC)
        except OverflowError:
            raise InvalidError(f"{field}: {text} is out of range", [FieldProblem(field, "out of range")]) from None
        if at < now() - timedelta(seconds=high):
            raise InvalidError(f"{field}: {text} is more than {show(high)} ago", [FieldProblem(field, "too far back")])
        return at
    return now() - timedelta(seconds=seconds(text, field, 0.0, high))


def show(value: float) -> str:
    """Seconds the way they are written: 300 -> 5m, 90 -> 90s, 86400 -> 1d."""
    for unit in ("d", "h", "m"):
        size = _UNIT[unit]
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"
