"""A restarted agent holds the first requests for a component that scales to zero (the default outside production)
until its replica is ready: from the moment its listeners accept, every request answers 200, none 404 or 503."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from buildkit import BuildServer
from dataplanekit import AgentProcess, build_app, deploy, deployment, poll, service, start_agent, wait_state


def test_a_restarted_agent_holds_requests_for_a_component_that_scales_to_zero_until_it_is_ready(
        build_server: BuildServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    server, c = build_server.server, build_server.client
    agent = start_agent(server, tmp_path_factory.mktemp("dp-held") / "data", build_server.cache)
    try:
        build_app(c, "held", "api", service())
        deploy(c, "held", "api")
        d = wait_state(c, "held", "api")
        assert d["scaling"]["minReplicas"] == 0  # the default outside production
        status = poll(lambda: deployment(c, "held", "api")["scalingStatus"], lambda s: s is not None)
        assert (status["current"], status["desired"]) == (1, 1)
        url = d["endpoints"][0]["urls"]["external"] + "/"
        assert httpx.get(url, timeout=10).status_code == 200
        assert agent.stop() == 0
        (agent.data_dir / "status.json").unlink()  # start_agent waits for the new agent's report

        started: list[AgentProcess] = []
        starting = threading.Thread(target=lambda: started.append(start_agent(server, agent.data_dir,
                                                                              build_server.cache)))
        answers: list[httpx.Response] = []
        with httpx.Client(timeout=30) as http:
            starting.start()
            deadline = time.monotonic() + 120
            while not answers:
                assert time.monotonic() < deadline
                try:
                    answers.append(http.get(url, headers={"Connection": "close"}))
                except httpx.TransportError:  # not listening yet
                    continue
            answers += [http.get(url) for _ in range(3)]
        starting.join()
        agent = started[0]
        assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
        assert "x-cellplane-cold-start" in answers[0].headers, "the first request was held while the replica started"
    finally:
        agent.stop()
