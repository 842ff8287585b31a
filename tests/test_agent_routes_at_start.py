"""A restarted agent never answers 404 for what its cached desired state routes: from the moment its listeners
accept, a deployed component's path is routed (503 while no replica of it is ready yet, then 200). A component that
scales to zero is held instead of answered 503 (docs/scaling.md), so this one has a fixed replica count."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from buildkit import BuildServer
from dataplanekit import AgentProcess, build_app, deploy, service, start_agent, wait_state


def test_a_restarted_agent_answers_503_never_404_until_its_replicas_are_ready(
        build_server: BuildServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    server, c = build_server.server, build_server.client
    agent = start_agent(server, tmp_path_factory.mktemp("dp-routes") / "data", build_server.cache)
    try:
        build_app(c, "early", "api", service(scaling={"fixed": True}))
        deploy(c, "early", "api")
        url = wait_state(c, "early", "api")["endpoints"][0]["urls"]["external"] + "/"
        assert httpx.get(url, timeout=10).status_code == 200
        assert agent.stop() == 0
        (agent.data_dir / "status.json").unlink()  # start_agent waits for the new agent's report

        started: list[AgentProcess] = []
        starting = threading.Thread(target=lambda: started.append(start_agent(server, agent.data_dir,
                                                                              build_server.cache)))
        answers: list[tuple[int, str]] = []
        with httpx.Client(timeout=10) as http:
            starting.start()
            deadline = time.monotonic() + 120
            while not answers or answers[-1][0] != 200:
                assert time.monotonic() < deadline, answers[-5:]
                try:
                    r = http.get(url, headers={"Connection": "close"})
                except httpx.TransportError:  # not listening yet
                    continue
                answers.append((r.status_code, r.text))
        starting.join()
        agent = started[0]
        assert [a for a in answers if a[0] not in (200, 503)] == [], "only 503 until a replica is ready, then 200"
        assert all("no ready replica" in text for status, text in answers if status == 503), answers
        assert answers[0][0] == 503, "the listener accepted before the replica was ready (the case at stake)"
    finally:
        agent.stop()
