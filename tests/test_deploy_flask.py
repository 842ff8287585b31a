"""`cellplane deploy` of real Flask apps: one that takes $PORT (gunicorn from a Procfile), and one whose
Dockerfile binds its declared port 5000 itself, which must run on that port and roll out by replacing it."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from buildkit import APPS
from dataplanekit import AgentProcess, build_app, deployment, logs, service, wait_state
from liveserver import run_cli


def test_deploy_prints_a_url_that_answers(build_server: Any, dataplane: AgentProcess) -> None:
    c = build_server.client
    build_app(c, "web", "flask", service(port=8000, health={"readiness": {"path": "/healthz"}}),
              app="flask-procfile")
    out = run_cli(build_server.server, "deploy", "flask", "--env", "development", "-p", "web")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Deployed flask" in out.stdout
    curl = re.search(r"curl (\S+)", out.stdout)
    assert curl, out.stdout
    r = httpx.get(curl.group(1) + "/", timeout=10)
    assert r.status_code == 200 and r.json() == {"app": "flask-procfile"}

    listing = run_cli(build_server.server, "get", "deployments", "--env", "development", "-p", "web")
    assert listing.returncode == 0 and "flask" in listing.stdout and "ready" in listing.stdout
    described = run_cli(build_server.server, "describe", "component", "flask", "-p", "web")
    assert described.returncode == 0 and curl.group(1) in described.stdout


def test_a_flask_app_without_descriptors_through_the_cli_alone(build_server: Any, dataplane: AgentProcess) -> None:
    """What a new user does: create from a plain Flask directory, build, deploy, call the printed URL."""
    server, source = build_server.server, str(APPS / "flask-procfile")
    said = []
    for args in (("create", "project", "plain"),
                 ("create", "component", "bare", "-p", "plain", "--source", source),
                 ("create", "component", "site", "-p", "plain", "--source", source, "--port", "8000"),
                 ("build", "start", "bare", "-p", "plain", "-f"),
                 ("build", "start", "site", "-p", "plain", "-f")):
        out = run_cli(server, *args)
        assert out.returncode == 0, (args, out.stdout + out.stderr)
        said.append(out.stdout)
    assert "endpoint web: port 8000 REST / (Public)" in said[2] and "endpoint" not in said[1]

    bare = run_cli(server, "deploy", "bare", "--env", "development", "-p", "plain")
    assert bare.returncode == 0, bare.stdout + bare.stderr
    assert "declares no endpoints" in bare.stdout and "curl" not in bare.stdout

    site = run_cli(server, "deploy", "site", "--env", "development", "-p", "plain")
    assert site.returncode == 0, site.stdout + site.stderr
    curl = re.search(r"curl (\S+)", site.stdout)
    assert curl and curl.group(1).endswith("/plain/site/v1"), site.stdout
    r = httpx.get(curl.group(1) + "/", timeout=10)
    assert r.status_code == 200 and r.json() == {"app": "flask-procfile"}
    release = deployment(build_server.client, "plain", "site")["release"]
    events = system_lines(build_server.client, "plain", "site", f"release {release} is ready and serving")
    assert f"release {release}: started 1 replica(s)" in events

    wrong = run_cli(server, "create", "component", "odd", "-p", "plain", "--source", source, "--port", "8000",
                    "--visibility", "Everyone")
    assert wrong.returncode != 0 and "visibility" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    assert run_cli(server, "get", "component", "odd", "-p", "plain").returncode != 0  # nothing was created
    alone = run_cli(server, "create", "component", "odd", "-p", "plain", "--source", source, "--visibility", "Project")
    assert alone.returncode != 0 and "give --port too" in alone.stderr


def test_app_binding_its_declared_port_runs_there_and_is_replaced_on_rollout(build_server: Any,
                                                                             dataplane: AgentProcess) -> None:
    c = build_server.client
    build_app(c, "web", "docker", service(port=5000), app="flask-dockerfile")
    out = run_cli(build_server.server, "deploy", "docker", "--env", "development", "-p", "web")
    assert out.returncode == 0, out.stdout + out.stderr
    d = deployment(c, "web", "docker")
    assert d["replicas"][0]["port"] == 5000
    url = d["endpoints"][0]["urls"]["external"] + "/"
    assert httpx.get(url, timeout=10).status_code == 200

    r = c.put("/organizations/default/projects/web/components/docker/config/MODE", json={"value": "two"},
              params={"env": "development"})
    assert r.status_code in (200, 201), r.text
    release = deployment(c, "web", "docker")["release"]
    assert release != d["release"]
    d2 = wait_state(c, "web", "docker", release=release)
    assert d2["replicas"][0]["port"] == 5000
    system_lines(c, "web", "docker", f"release {d['release']} stopped first: the app binds its declared port")
    deadline = time.monotonic() + 30
    while httpx.get(url, timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_deploy_failure_shows_the_reason_and_last_lines(build_server: Any, dataplane: AgentProcess) -> None:
    c = build_server.client
    # the echo app listens on $PORT, but this readiness check asks a path that does not answer 2xx/3xx... it
    # answers 200 for any path, so point the probe at a port nothing listens on instead
    build_app(c, "web", "never", service(health={"readiness": {"port": 1, "periodSeconds": 0.2,
                                                               "failureThreshold": 1}}))
    out = run_cli(build_server.server, "deploy", "never", "--env", "development", "-p", "web", "--timeout", "8")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "did not become ready within 8s" in out.stderr  # the reason
    assert "echo listening on" in out.stderr  # the last log lines


def test_a_service_that_keeps_exiting_is_shown_in_crash_loop(build_server: Any, dataplane: AgentProcess) -> None:
    c = build_server.client
    # the task fixture runs to completion: as a service it exits again and again
    build_app(c, "web", "quitter", service(configuration={"env": [{"name": "EXIT_CODE", "value": "4"}]}),
              app="task")
    out = run_cli(build_server.server, "deploy", "quitter", "--env", "development", "-p", "web", "--timeout", "60")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "crash-loop" in out.stderr and "exited with 4" in out.stderr, out.stderr
    assert "task done, exit 4" in out.stderr  # the last log lines
    d = deployment(c, "web", "quitter")
    assert d["state"] == "crash-loop" and d["replicas"][0]["restarts"] >= 2
    # every exit is an event in the component's log, up to the crash loop
    events = system_lines(c, "web", "quitter", f"replica 0 of release {d['release']} (crash-loop): ")
    assert any(e.startswith(f"replica 0 of release {d['release']}: exited with 4") and "restarting in" in e
               for e in events), events


def system_lines(c: Any, project: str, name: str, until: str) -> list[str]:
    """The deployment's events (its log's system lines), once one of them contains ``until``."""
    deadline = time.monotonic() + 30
    while True:
        events = [x["line"] for x in logs(c, project, name) if x["stream"] == "system"]
        if any(until in e for e in events):
            return events
        assert time.monotonic() < deadline, events
        time.sleep(0.3)
