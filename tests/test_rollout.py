"""Rollouts without errors: a client keeps sending requests through the gateway while the component is
redeployed again and again (each configuration change is a new release); not one request may fail."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from dataplanekit import AgentProcess, build_app, deploy, deployment, service, wait_state

REDEPLOYS = 5


def test_no_request_fails_during_repeated_rollouts(build_server: Any, dataplane: AgentProcess) -> None:
    c = build_server.client
    build_app(c, "roll", "api", service(replicas=2))
    deploy(c, "roll", "api")
    d = wait_state(c, "roll", "api")
    url = d["endpoints"][0]["urls"]["external"] + "/"

    failures: list[str] = []
    seen: set[str] = set()
    count = 0
    stop = threading.Event()

    def client() -> None:
        nonlocal count
        with httpx.Client(timeout=10) as http:  # keep-alive, like a real client
            while not stop.is_set():
                try:
                    r = http.get(url)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        seen.add(r.json()["greeting"] or "")
                except httpx.HTTPError as e:
                    failures.append(f"{type(e).__name__}: {e}")
                count += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        releases = {d["release"]}
        for n in range(1, REDEPLOYS + 1):
            r = c.put("/organizations/default/projects/roll/components/api/config/GREETING",
                      json={"value": f"v{n}"}, params={"env": "development"})
            assert r.status_code in (200, 201), r.text
            d = deployment(c, "roll", "api")
            assert d["release"] not in releases, "a configuration change is a new release"
            releases.add(d["release"])
            wait_state(c, "roll", "api", release=d["release"])
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert count > 100
    assert not failures, f"{len(failures)} of {count} requests failed: {failures[:5]}"
    assert f"v{REDEPLOYS}" in seen
    assert httpx.get(url, timeout=10).json()["greeting"] == f"v{REDEPLOYS}"
