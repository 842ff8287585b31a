"""Rollouts without errors: a client keeps sending requests through the gateway while the component is
redeployed again and again (each configuration change is a new release); not one request may fail."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import psutil

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


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_release_that_arrives_while_the_old_one_drains_leaves_no_process_behind(
        build_server: Any, dataplane: AgentProcess) -> None:
    """Release 2 takes over while a slow request holds release 1 draining; release 3 arrives during that
    drain. The slow request still gets its answer, and neither release 1 nor release 2 is left running."""
    c = build_server.client
    build_app(c, "drain", "api", service())
    deploy(c, "drain", "api")
    first = wait_state(c, "drain", "api")
    url = first["endpoints"][0]["urls"]["external"]
    slow: list[int] = []
    caller = threading.Thread(target=lambda: slow.append(httpx.get(url + "/slow?s=6", timeout=30).status_code))
    caller.start()
    time.sleep(0.5)
    pids = [first["replicas"][0]["pid"]]
    for n in (2, 3):
        r = c.put("/organizations/default/projects/drain/components/api/config/GREETING",
                  json={"value": f"v{n}"}, params={"env": "development"})
        assert r.status_code in (200, 201), r.text
        d = wait_state(c, "drain", "api", release=deployment(c, "drain", "api")["release"])
        pids.append(d["replicas"][0]["pid"])
    caller.join()
    assert slow == [200]
    assert httpx.get(url + "/", timeout=10).json()["greeting"] == "v3"
    deadline = time.monotonic() + 30
    while any(_running(p) for p in pids[:2]):
        assert time.monotonic() < deadline, [(p, _running(p)) for p in pids]
        time.sleep(0.2)
    assert _running(pids[2])
