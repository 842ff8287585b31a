"""Two repositories that carry OpenChoreo's workload descriptor (``workload.yaml``), taken as a new user would with
the real CLI: created from their directories, built, deployed on the local data plane, and called through the
gateway; the greeter reaches the quotes service through the connection its descriptor declares."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx

from buildkit import APPS
from dataplanekit import AgentProcess
from liveserver import ok, run_cli

QUOTES = """\
apiVersion: openchoreo.dev/v1alpha1
metadata:
  name: quotes
endpoints:
  - name: http
    type: HTTP
    port: 8080
    visibility: [project]
"""

GREETER = """\
apiVersion: openchoreo.dev/v1alpha1
metadata:
  name: greeter
endpoints:
  - name: http
    displayName: Greeter
    type: HTTP
    port: 8080
    visibility: [external]
dependencies:
  endpoints:
    - component: quotes
      name: http
      visibility: project
      envBindings:
        address: QUOTES_URL
configurations:
  env:
    - name: GREETING
      value: hello from workload.yaml
"""


def repository(tmp_path: Path, name: str, descriptor: str) -> Path:
    """A standard-library HTTP service (the echo fixture) with OpenChoreo's descriptor beside it."""
    source = tmp_path / name
    shutil.copytree(APPS / "echo", source)
    (source / "workload.yaml").write_text(descriptor)
    return source


def test_repositories_with_a_workload_descriptor_build_deploy_and_answer_through_the_gateway(
        build_server: Any, dataplane: AgentProcess, tmp_path: Path) -> None:
    server = build_server.server
    ok(run_cli(server, "create", "project", "ocrepo"))
    created = {}
    for name, descriptor in (("quotes", QUOTES), ("greeter", GREETER)):
        source = repository(tmp_path, name, descriptor)
        created[name] = ok(run_cli(server, "create", "component", name, "-p", "ocrepo", "--source", str(source)))
    assert created["quotes"].stdout.splitlines() == ["component/quotes created from workload.yaml",
                                                     "  endpoint http: port 8080 REST / (Project)"]
    assert created["greeter"].stdout.splitlines()[0] == "component/greeter created from workload.yaml"
    assert "endpoint http: port 8080 REST / (Project, Public)" in created["greeter"].stdout
    assert created["greeter"].stderr.splitlines() == [
        "warning: workload.yaml: metadata.name: the component's name is the one it is created with; ignored"]

    for name in ("quotes", "greeter"):
        ok(run_cli(server, "build", "start", name, "-p", "ocrepo", "-f"))
        deployed = ok(run_cli(server, "deploy", name, "--env", "development", "-p", "ocrepo"))
    curl = re.search(r"curl (\S+)", deployed.stdout)
    assert curl, deployed.stdout
    url = curl.group(1)

    answer = httpx.get(url + "/", timeout=10).json()
    assert (answer["component"], answer["greeting"]) == ("greeter", "hello from workload.yaml")
    called = httpx.get(url + "/call", params={"env": "QUOTES_URL"}, timeout=20).json()
    assert called["status"] == 200, called
    assert '"component": "quotes"' in called["body"], called
