"""The agent's Prometheus endpoint answers only scrapers holding its bearer token (a real agent process)."""

from __future__ import annotations

import time

import httpx

from dataplanekit import AgentProcess


def test_the_agents_metrics_need_the_bearer_token_from_its_data_directory(dataplane: AgentProcess) -> None:
    deadline = time.monotonic() + 30
    while not (url := dataplane.status().get("metricsUrl")):
        assert time.monotonic() < deadline, "the agent reported no metricsUrl"
        time.sleep(0.2)
    token_file = dataplane.data_dir / "metrics.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 43
    assert f"bearer token in {token_file}" in dataplane.log()  # said at start, where to find it
    refused = [httpx.get(url, timeout=10), httpx.get(url, headers={"Authorization": "Bearer " + token[:-1]}),
               httpx.get(url, headers={"Authorization": "Basic " + token}),
               httpx.get(url, headers=[("Authorization", "Bearer " + token), ("Authorization", "Bearer x")]),
               httpx.get(url.replace("/metrics", "/other"), timeout=10)]
    for r in refused:
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="cellplane-agent"'
        assert "cellplane_" not in r.text and "metrics.token" in r.text
    for scheme in ("Bearer", "bearer"):
        r = httpx.get(url, headers={"Authorization": f"{scheme} {token}"}, timeout=10)
        assert r.status_code == 200
        assert "cellplane_agent_access_lines_unshipped_total" in r.text
    assert token not in dataplane.log()
