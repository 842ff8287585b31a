"""How the platform's figures and names are written for people, alike in the CLI and the web console: durations
(90s, 5m), counts with their word, latencies, request rates, percentages, MiB, and a connection's target."""

from __future__ import annotations

from typing import Any


def compact(value: float | str | None) -> str:
    """Seconds as 90s, 5m, 2h, 1d (a string, like '1m', as it is)."""
    if value is None or isinstance(value, str):
        return value or "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{number(value)}s"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0ms"
    if value >= 1000:
        return f"{value / 1000:.2f}s"
    if value >= 100:
        return f"{value:.0f}ms"
    if value >= 10:
        return f"{value:.1f}ms"
    return f"{value:.2f}ms"


def rate(value: float | None) -> str:
    """Requests per second."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def percent(ratio: float | None) -> str:
    """A ratio 0..1 as a percentage."""
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}f}"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1048576:.1f}"


def target_label(to: dict[str, Any], project: str | None) -> str:
    """A connection's target in the project graph (GET .../graph): its URL, or [project/]component/endpoint with the
    project named only when it is another one."""
    if to.get("url"):
        return str(to["url"])
    parts = [to.get("component"), to.get("endpoint")]
    if to.get("project") and to.get("project") != project:
        parts.insert(0, to["project"])
    return "/".join(str(p) for p in parts if p)
