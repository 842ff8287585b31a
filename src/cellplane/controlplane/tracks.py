"""Deployment tracks and API versions: which version a track serves, and which deployment serves a route.

A component's tracks are declared in ``spec.tracks``; a track that is not declared (a component without
tracks has exactly one, its source branch or ``default``) serves version 1.0. Routes carry the major version
(``v1``); inside one major version the newest minor version serves the route and replaces the others, and
between two deployments of the same version the one deployed last wins.
"""

from __future__ import annotations

from typing import Any

DEFAULT_VERSION = "1.0"


def declared(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in spec.get("tracks") or [] if isinstance(t, dict)]


def track(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The track as declared, or an undeclared one's defaults."""
    for t in declared(spec):
        if t.get("name") == name:
            return {"name": name, "version": t.get("version") or DEFAULT_VERSION,
                    "autoDeploy": bool(t.get("autoDeploy"))}
    return {"name": name, "version": DEFAULT_VERSION, "autoDeploy": False}


def default_track(spec: dict[str, Any]) -> str:
    """The track a build without one belongs to: the source branch, else the first declared track, else default."""
    branch = (spec.get("source") or {}).get("branch")
    if branch:
        return str(branch)
    tracks = declared(spec)
    return str(tracks[0]["name"]) if tracks else "default"


def version(spec: dict[str, Any], name: str) -> str:
    return str(track(spec, name)["version"])


def major(version_: str) -> str:
    """'1.3' -> 'v1' (the route's version)."""
    return "v" + version_.removeprefix("v").split(".", 1)[0]


def order(version_: str) -> tuple[int, int]:
    head, _, tail = version_.removeprefix("v").partition(".")
    return int(head or 0), int(tail or 0)


def route_version(spec: dict[str, Any], name: str) -> str:
    return major(version(spec, name))


def default_major(spec: dict[str, Any]) -> str:
    """The version a connection without one gets: that of the default track."""
    return route_version(spec, default_track(spec))
