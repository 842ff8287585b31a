"""Rendering for people (tables) and for programs (json, yaml)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

# Piped output is not cut to any width: tables stay one line per row for grep and friends (a table is as
# wide as its content, never padded to the console's width). No emoji codes: ':smile:' is shown as stored.
PIPE_WIDTH = 100_000
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else PIPE_WIDTH, emoji=False,
              highlight=False)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else PIPE_WIDTH, emoji=False,
              highlight=False)


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def dump(data: Any, fmt: Format) -> None:
    if fmt == Format.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def age(timestamp: str | None) -> str:
    if not timestamp:
        return ""
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return ""
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]],
          empty: str = "No resources found.") -> None:
    if not rows:
        err.print(empty)
        return
    t = Table(box=None, pad_edge=False, header_style="bold")
    for title, _ in columns:
        t.add_column(title)
    for row in rows:
        t.add_row(*[_cell(fn(row)) for _, fn in columns])
    out.print(t)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("[", r"\[")


def _endpoints(doc: dict[str, Any]) -> str:
    eps = doc["spec"].get("endpoints") or []
    return ", ".join(f"{e['name']}:{e['port']}{e.get('basePath', '/') if e.get('basePath', '/') != '/' else ''}"
                     f" ({'/'.join(e.get('visibility', []))})" for e in eps) or "-"


def _paths(doc: dict[str, Any]) -> str:
    return ", ".join(f"{p['source']}→{'|'.join(t['name'] for t in p['targets'])}"
                     for p in doc["spec"].get("promotionPaths") or []) or "-"


Getter = Callable[[dict[str, Any]], Any]
NAME: tuple[str, Getter] = ("NAME", lambda d: d["metadata"]["name"])
AGE: tuple[str, Getter] = ("AGE", lambda d: age(d["metadata"].get("creationTimestamp")))

COLUMNS: dict[str, list[tuple[str, Getter]]] = {
    "Organization": [NAME, ("DISPLAY NAME", lambda d: d["spec"].get("displayName")), AGE],
    "Project": [NAME, ("PIPELINE", lambda d: d["spec"].get("deploymentPipeline")),
                ("DESCRIPTION", lambda d: d["spec"].get("description")), AGE],
    "Component": [NAME, ("PROJECT", lambda d: d["metadata"].get("project")), ("TYPE", lambda d: d["spec"].get("type")),
                  ("ENDPOINTS", _endpoints), AGE],
    "Environment": [NAME, ("DATA PLANE", lambda d: d["spec"].get("dataPlane")),
                    ("PRODUCTION", lambda d: d["spec"].get("production")), AGE],
    "DeploymentPipeline": [NAME, ("PROMOTION PATHS", _paths), AGE],
    "DataPlane": [NAME, ("TYPE", lambda d: d["spec"].get("type")), AGE],
}


# -- deployments and endpoints (documents of the deployments API, not resource kinds) --------------------------

URL_KINDS = (("external", "Public"), ("internal", "Organization"), ("project", "Project"))


def endpoint_urls(endpoint: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(who may call it, URL or None while the data plane has not reported its gateways) per URL of an endpoint.

    ``external`` exists for Public endpoints, ``internal`` for Organization or Public ones, ``project`` (the
    project's cell listener) always."""
    visibility = set(endpoint.get("visibility") or [])
    urls = endpoint.get("urls") or {}
    kinds = {"external": "Public" in visibility, "internal": bool(visibility & {"Public", "Organization"}),
             "project": True}
    return [(label, urls.get(kind)) for kind, label in URL_KINDS if kinds[kind] or urls.get(kind)]


def replicas_ready(d: dict[str, Any]) -> str:
    replicas = d.get("replicas") or []
    return f"{sum(r.get('state') == 'ready' for r in replicas)}/{len(replicas)}" if replicas else "-"


def scaling_range(scaling: dict[str, Any] | None) -> str:
    """A resolved scaling as a replica range ("0-3"), or "fixed" (its fixed replicas run)."""
    return f"{scaling['minReplicas']}-{scaling['maxReplicas']}" if scaling else "fixed"


def scaling_replicas(d: dict[str, Any]) -> str | None:
    """A deployment's replicas as its scaler reports them: "2" (current), "2→3" (it wants 3), "0 (scaled to zero)";
    None for a deployment with fixed replicas or no report yet."""
    status = d.get("scalingStatus")
    if not status:
        return None
    current, desired = status.get("current"), status.get("desired")
    if d.get("state") == "scaled-to-zero" or current == desired == 0:
        return "0 (scaled to zero)"
    return f"{current}" if current == desired else f"{current}→{desired}"


def build_number(d: dict[str, Any]) -> str | None:
    build = d.get("build") or {}
    return f"#{build['number']}" if build.get("number") is not None else build.get("id")


def endpoint_rows(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per URL of each endpoint: ``items`` are entries of GET .../endpoints (or a deployment's
    endpoints with environment, project and component added)."""
    return [{**e, "reach": label, "url": url} for e in items for label, url in endpoint_urls(e)]


DEPLOYMENT_COLUMNS: list[tuple[str, Getter]] = [
    ("NAME", lambda d: d["component"]), ("PROJECT", lambda d: d["project"]),
    ("ENVIRONMENT", lambda d: d["environment"]), ("TRACK", lambda d: d.get("track")),
    ("VERSION", lambda d: d.get("version")), ("STATE", lambda d: d.get("state")),
    ("RELEASE", lambda d: d.get("release")), ("BUILD", build_number), ("READY", replicas_ready),
    ("SCALING", lambda d: scaling_range(d.get("scaling"))), ("REPLICAS", scaling_replicas),
    ("AGE", lambda d: age(d.get("updatedAt")))]
ENDPOINT_COLUMNS: list[tuple[str, Getter]] = [
    ("ENVIRONMENT", lambda e: e["environment"]), ("PROJECT", lambda e: e["project"]),
    ("COMPONENT", lambda e: e["component"]), ("ENDPOINT", lambda e: e.get("endpoint") or e.get("name")),
    ("VISIBILITY", lambda e: e["reach"]), ("URL", lambda e: e["url"])]
