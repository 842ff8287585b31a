from liveserver import LiveServer, run_cli


def test_server_answers_version(live_server: LiveServer) -> None:
    r = live_server.client().get("/version")
    assert r.status_code == 200
    assert r.json()["database"] == "sqlite"


def test_cli_lists_default_environments(live_server: LiveServer) -> None:
    result = run_cli(live_server, "get", "environments", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert "production" in result.stdout
