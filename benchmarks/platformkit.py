"""A real control plane and a real local agent process on loopback, components applied and built: what the deploy
and scaling benchmarks measure against, and the small HTTP and log helpers they share.

``start_platform`` starts the control plane (tests/liveserver.py) and the agent (``cellplane dataplane run``,
tests/dataplanekit.py), applies the documents and builds each component from its source directory once (an
upload, as ``cellplane build --source`` does); nothing is deployed yet. Everything lives in a temporary directory
that ``Platform.close`` removes.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import yaml
from common import ROOT  # common also puts tests/ on sys.path

DEMO = ROOT / "examples" / "demo"
ORG = "/organizations/default"


class BenchError(Exception):
    """The benchmark cannot go on: the reason, for Suite.error."""


@dataclass
class Platform:
    """A control plane, an agent, and the components' builds (component name -> build id)."""

    tmp: tempfile.TemporaryDirectory[str]
    server: Any = None  # liveserver.LiveServer
    agent: Any = None  # dataplanekit.AgentProcess
    client: httpx.Client | None = None
    builds: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.agent is not None:
                self.agent.stop()
        with contextlib.suppress(Exception):
            if self.server is not None:
                self.server.stop()
        with contextlib.suppress(Exception):
            self.tmp.cleanup()

    def why(self) -> str:
        """The last lines of the agent's and the control plane's logs (for an error message)."""
        parts = []
        for name, who in (("agent", self.agent), ("control plane", self.server)):
            with contextlib.suppress(Exception):
                parts.append(f"{name} log:\n" + "\n".join(who.log().splitlines()[-15:]))
        return "\n".join(parts)


def demo_documents(names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The demo's project and the named components, as examples/demo/demo.yaml declares them."""
    docs = [d for d in yaml.safe_load_all((DEMO / "demo.yaml").read_text()) if d]
    chosen = [d for d in docs if d["kind"] == "Project" or d["metadata"]["name"] in names]
    for d in chosen:
        d["metadata"].setdefault("organization", "default")
    return chosen


def start_platform(prefix: str, documents: list[dict[str, Any]], sources: dict[tuple[str, str], Path],
                   into: Platform | None = None) -> Platform:
    """Start a control plane and an agent, apply ``documents`` and build each (project, component) of ``sources``
    from its directory; raises BenchError (with the logs' last lines) when any of it fails. ``into``: fill this
    Platform (a subclass's) instead of a new one."""
    from buildkit import upload, wait
    from dataplanekit import start_agent
    from liveserver import start_server

    p = into if into is not None else Platform(tempfile.TemporaryDirectory(prefix=prefix))
    try:
        tmp = Path(p.tmp.name)
        cache = tmp / "cache"
        p.server = start_server(tmp / "data", env={"CELLPLANE_CACHE_DIR": str(cache)})
        p.agent = start_agent(p.server, tmp / "dp", cache)
        c = p.client = p.server.client()
        r = c.post("/apply", json={"documents": documents})
        if r.status_code != 200:
            raise BenchError(f"applying the components failed: {r.status_code} {r.text[:300]}")
        for (project, name), source in sources.items():
            info = wait(c, upload(c, project, name, source), timeout=300)
            if info["state"] != "succeeded":
                raise BenchError(f"building {name} {info['state']}: {info.get('error')}")
            p.builds[name] = info["id"]
        return p
    except BaseException as e:
        why = p.why()
        p.close()
        if isinstance(e, BenchError | AssertionError | RuntimeError | httpx.HTTPError | OSError):
            raise BenchError(f"{type(e).__name__}: {e}\n{why}".strip()) from e
        raise


# -- the control plane's API -----------------------------------------------------------------------------------


def deployment_path(project: str, name: str) -> str:
    return f"{ORG}/projects/{project}/components/{name}/deployments"


def deploy(c: httpx.Client, project: str, name: str, environment: str = "development") -> dict[str, Any]:
    r = c.post(deployment_path(project, name), json={"environment": environment})
    if r.status_code not in (200, 201):
        raise BenchError(f"deploying {name}: {r.status_code} {r.text[:300]}")
    return r.json()


def deployment(c: httpx.Client, project: str, name: str, environment: str = "development") -> dict[str, Any] | None:
    r = c.get(deployment_path(project, name) + f"/{environment}")
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise BenchError(f"reading {name}'s deployment: {r.status_code} {r.text[:300]}")
    return r.json()


def wait_ready(c: httpx.Client, project: str, name: str, release: str | None = None, timeout: float = 120,
               period: float = 0.05) -> dict[str, Any]:
    """The deployment once the data plane reports ``release`` (default: the one rolling out) ready. The data plane
    reports the deployment's ``rollout`` (its release plus a digest of its resolved connections)."""
    deadline = time.monotonic() + timeout
    while True:
        d = deployment(c, project, name)
        if d is not None and d["observedRelease"] == (release or d["rollout"]) and d["state"] == "ready":
            return d
        if time.monotonic() > deadline:
            state = f"{d['state']} ({d['message']})" if d else "no deployment"
            raise BenchError(f"{name} not ready after {timeout:g}s: {state}")
        time.sleep(period)


def at(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["at"].replace("Z", "+00:00")).timestamp()


def system_lines(c: httpx.Client, project: str, name: str, since: float, wanted: int,
                 timeout: float = 5) -> list[tuple[float, str]]:
    """The component's system log lines (agent time, text) since ``since``; waits up to ``timeout`` for ``wanted``
    of them (the agent ships them every half second)."""
    started = datetime.fromtimestamp(since).astimezone().isoformat()
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"{ORG}/projects/{project}/components/{name}/logs",
                  params={"environment": "development", "stream": "system", "since": started, "limit": 1000})
        lines = [(at(i), i["line"]) for i in r.json().get("items", [])] if r.status_code == 200 else []
        if len(lines) >= wanted or time.monotonic() > deadline:
            return sorted(lines)
        time.sleep(0.3)


def first_after(lines: list[tuple[float, str]], start: float, end: float, pattern: str) -> float | None:
    return next((t for t, text in lines if start <= t < end and re.search(pattern, text)), None)


# -- HTTP and processes ----------------------------------------------------------------------------------------


def probe(url: str, timeout: float = 1.0) -> int | None:
    """The status of one GET over a fresh connection; None when no answer came."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def until(what: str, check: Callable[[], Any], timeout: float = 60, period: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:g}s")
        time.sleep(period)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
