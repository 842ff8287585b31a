"""A node:* last stage that serves built files (``npx serve -s build``, ``serve -s dist``, ``http-server dist``)
becomes a static site on the platform's static server, with the SPA fallback when ``-s`` asks for it.

The translation tests run in this process (the fixture's ``RUN node build.js`` executed for real); the end-to-end
test builds the node-serve fixture through a real control plane, deploys it on the local data plane and calls it
through the gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS
from cellplane.build.dockerfile import prepare
from cellplane.build.plan import BuildFailure, Plan
from dataplanekit import AgentProcess, build_app, deploy, service, wait_state

pytestmark = pytest.mark.timeout(900)


class _Steps:
    """The runner's side of a Dockerfile, enough for these: shell steps run for real, no installs."""

    def pip(self, inputs: list[str], packages: list[str], line: int) -> None:
        raise AssertionError("no pip install expected")

    def npm(self, cwd: Path, install: Any, line: int) -> None:
        raise AssertionError("no npm install expected")

    def shell(self, cwd: Path, command: str, env: dict[str, str], line: int) -> None:
        subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env={**os.environ, **env}, check=True)


def _prepare(tmp_path: Path, dockerfile: str | None = None, site: str | None = "dist") -> Plan:
    """The fixture's Dockerfile, or ``dockerfile`` over a context whose ``site`` directory holds an index.html."""
    context, work = tmp_path / "src", tmp_path / "work"
    work.mkdir()
    if dockerfile is None:
        shutil.copytree(APPS / "node-serve", context)
    else:
        context.mkdir()
        (context / "Dockerfile").write_text(dockerfile)
        if site is not None:
            (context / site).mkdir(parents=True, exist_ok=True)
            (context / site / "index.html").write_text("<p>site</p>")
    return prepare(context / "Dockerfile", context, work, _Steps())


def test_a_node_stage_serving_its_build_with_serve_dash_s_becomes_a_static_site_with_spa_fallback(
        tmp_path: Path) -> None:
    plan = _prepare(tmp_path)
    assert (plan.language, plan.static_root, plan.spa, plan.run, plan.port) == ("static", "app/build", True, None,
                                                                                 None)
    assert (tmp_path / "work" / "app" / "build" / "index.html").is_file()  # RUN node build.js ran
    assert "serve serves /app/build: the platform's static server serves it instead (single-page-app fallback on, " \
           "as -s asks)" in plan.notes
    assert "EXPOSE 3000 is not used: the static server listens on the port the platform gives" in plan.notes


@pytest.mark.parametrize(
    ("command", "site", "root", "spa"),
    [
        ('["serve", "-s", "dist"]', "dist", "app/dist", True),
        ('["npx", "--yes", "serve@14", "--single", "-l", "tcp://0.0.0.0:3000", "dist"]', "dist", "app/dist", True),
        ("npx http-server dist -p 8080 -c-1", "dist", "app/dist", False),
        ('["./node_modules/.bin/http-server"]', "public", "app/public", False),  # http-server's default: ./public
        ('["npx", "serve"]', ".", "app", False),  # serve's default: the working directory
    ],
)
def test_serve_and_http_server_map_onto_the_static_server(tmp_path: Path, command: str, site: str, root: str,
                                                          spa: bool) -> None:
    plan = _prepare(tmp_path, f"FROM node:20\nWORKDIR /app\nCOPY . .\nCMD {command}\n", site)
    assert (plan.language, plan.static_root, plan.spa) == ("static", root, spa)


def test_a_node_server_of_its_own_stays_a_node_app(tmp_path: Path) -> None:
    plan = _prepare(tmp_path, 'FROM node:20\nWORKDIR /app\nCOPY . .\nCMD ["node", "server.js"]\n')
    assert (plan.language, plan.run) == ("node", "node server.js")


def test_serving_a_directory_without_an_index_html_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BuildFailure) as caught:
        _prepare(tmp_path, 'FROM node:20\nWORKDIR /app\nCOPY . .\nCMD ["npx", "serve", "-s", "build"]\n', "dist")
    assert str(caught.value) == ("the last stage starts serve, which serves /app/build, but there is no index.html "
                                 "there; build the site into it (RUN npm run build) or COPY it there")
    assert caught.value.where == "Dockerfile"


def test_the_served_app_answers_through_the_gateway_with_its_spa_fallback(build_server: Any,
                                                                          dataplane: AgentProcess) -> None:
    c = build_server.client
    info = build_app(c, "served", "web", service(port=3000), app="node-serve")
    assert info["detection"]["language"] == "static"
    manifest = c.get(f"/organizations/default/projects/served/artifacts/{info['artifact']}/manifest").json()
    assert manifest["manifest"]["static"] == {"root": "files", "spa": True}
    deploy(c, "served", "web")
    url = wait_state(c, "served", "web", timeout=180)["endpoints"][0]["urls"]["external"]
    index = httpx.get(url + "/", timeout=10)
    assert index.status_code == 200 and "<title>node-serve</title>" in index.text
    route = httpx.get(url + "/orders/42", timeout=10, headers={"accept": "text/html"})
    assert route.status_code == 200 and route.text == index.text  # the SPA fallback
    script = httpx.get(url + "/static/app.js", timeout=10)
    assert script.status_code == 200 and "node-serve at" in script.text
