"""PHP and Ruby end to end: a PHP service (composer.json, no Packagist packages) served by PHP's built-in
server, and a Ruby service started by its Procfile, each built by a real control plane, deployed on a real
data plane and answering through the gateway; a composer.json that needs Packagist fails with one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, component, failed_why, git_repo, start, upload, wait
from conftest import _in_ci
from dataplanekit import AgentProcess, build_app, deploy, service, wait_state

pytestmark = pytest.mark.timeout(900)


def _needs(program: str) -> None:
    if shutil.which(program) is None:
        message = f"{program} is not installed (make buildtools installs it)"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def test_a_php_service_is_served_by_phps_built_in_server_through_the_gateway(build_server: Any,
                                                                            dataplane: AgentProcess) -> None:
    _needs("php")
    c = build_server.client
    info = build_app(c, "langs", "orders", service(port=8000), app="php-service")
    assert info["detection"]["strategy"] == "php"
    assert info["detection"]["run"] == "php -S 0.0.0.0:$PORT -t public"
    assert info["detection"]["languageVersion"] == ">=8.1"
    deploy(c, "langs", "orders")
    url = wait_state(c, "langs", "orders")["endpoints"][0]["urls"]["external"]
    assert httpx.get(url + "/", timeout=10).json() == {"app": "php-service"}
    assert httpx.get(url + "/orders/42", timeout=10).json() == {"app": "php-service", "order": 42}


def test_a_ruby_service_starts_from_its_procfile_through_the_gateway(build_server: Any,
                                                                    dataplane: AgentProcess) -> None:
    _needs("ruby")
    c = build_server.client
    info = build_app(c, "langs", "rubyweb", service(port=8000), app="ruby-procfile")
    assert (info["detection"]["strategy"], info["detection"]["language"]) == ("procfile", "ruby")
    deploy(c, "langs", "rubyweb")
    url = wait_state(c, "langs", "rubyweb")["endpoints"][0]["urls"]["external"]
    assert httpx.get(url + "/hello", timeout=10).json() == {"app": "ruby-procfile", "path": "/hello"}


def test_vendored_gems_are_installed_by_the_build_and_pinned_and_unvendored_ones_are_refused(
        build_server: Any, dataplane: AgentProcess, tmp_path: Path) -> None:
    _needs("ruby")
    _needs("bundle")
    c = build_server.client
    component(c, "langs", "gems", service(port=8000))
    refused = wait(c, upload(c, "langs", "gems", APPS / "ruby-gems"))
    assert refused["state"] == "failed"
    assert refused["error"].startswith("the Gemfile asks for greeting from rubygems.org, which the build machine "
                                       "cannot reach; vendor them (bundle cache, then commit vendor/cache)")

    source = tmp_path / "ruby-gems"
    shutil.copytree(APPS / "ruby-gems", source)
    (source / "vendor" / "cache").mkdir(parents=True)
    gem = subprocess.run(["gem", "build", "greeting.gemspec"], cwd=source / "gems" / "greeting", capture_output=True,
                         text=True, check=False)
    assert gem.returncode == 0, gem.stdout + gem.stderr
    shutil.move(source / "gems" / "greeting" / "greeting-0.1.0.gem", source / "vendor" / "cache")
    info = wait(c, upload(c, "langs", "gems", source))
    assert info["state"] == "succeeded", failed_why(c, info)
    assert info["detection"]["languageVersion"] == "3.1.2"
    manifest = c.get(f"/organizations/default/projects/langs/artifacts/{info['artifact']}/manifest").json()["manifest"]
    assert {"ecosystem": "RubyGems", "name": "greeting", "version": "0.1.0"} in manifest["dependencies"]
    assert manifest["lock"] == {"ruby": "files/Gemfile.lock"}
    deploy(c, "langs", "gems")
    url = wait_state(c, "langs", "gems")["endpoints"][0]["urls"]["external"]
    assert httpx.get(url + "/ada", timeout=10).json() == {"app": "ruby-gems", "greeting": "hello ada"}


def test_packages_from_packagist_fail_the_build_with_one_line(build_server: Any, tmp_path: Path) -> None:
    source = tmp_path / "slim"
    shutil.copytree(APPS / "php-service", source)
    (source / "composer.json").write_text('{"require": {"php": ">=8.1", "slim/slim": "^4.12"}}')
    c = build_server.client
    component(c, "langs", "slim")
    info = wait(c, upload(c, "langs", "slim", source))
    assert info["state"] == "failed"
    assert info["error"] == ("composer.json requires slim/slim from Packagist, which the build machine cannot reach; "
                             "commit vendor/ (composer install, then add it) or remove the requirement")


def test_sources_that_cannot_be_built_fail_naming_paths_as_the_repository_has_them(build_server: Any,
                                                                                    tmp_path: Path) -> None:
    """A .NET project and a directory of documents, at a source.path of a git repository: the failure names the
    project file and the sub-path, never the build machine's directories."""
    repo = tmp_path / "repo"
    (repo / "services" / "orders").mkdir(parents=True)
    (repo / "services" / "orders" / "Orders.csproj").write_text("<Project Sdk=\"Microsoft.NET.Sdk.Web\"/>\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "README.md").write_text("# notes\n")
    git_repo_dir = git_repo(tmp_path, repo)
    c = build_server.client
    errors = []
    for name, path in (("dotnet", "services/orders"), ("notes", "docs")):
        component(c, "langs", name, {"source": {"repository": f"file://{git_repo_dir}", "path": path}})
        info = wait(c, start(c, "langs", name))
        assert info["state"] == "failed"
        errors.append(info["error"])
    assert errors[0].startswith("Orders.csproj makes this a .NET (C#) project, and this build machine has no "
                                ".NET SDK: Cellplane builds Go, Java, Node.js, PHP, Python, Ruby"), errors[0]
    assert errors[1].startswith("cannot tell how to build docs (source.path): looked for a Procfile"), errors[1]
    assert not any("/builds/" in e or str(tmp_path) in e for e in errors), errors
