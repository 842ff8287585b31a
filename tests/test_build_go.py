"""Go builds end to end: a real control plane builds a Go REST service (a chi dependency through the module
proxy) and a Go task with the machine's go; the service is deployed on a real data plane and answers through
the gateway, the task runs to exit 0. The same source builds the same artifact again, offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, component, failed_why, log_text, upload, wait
from dataplanekit import AgentProcess, build_app, deploy, service, wait_state
from liveserver import run_cli

pytestmark = [pytest.mark.timeout(900), pytest.mark.usefixtures("go_installed")]


@pytest.fixture(scope="module")
def greeter(build_server: Any) -> dict[str, Any]:
    """The Go REST service, built once for the module."""
    return build_app(build_server.client, "go", "greeter", service(port=8080), app="go-chi")


def test_a_go_rest_service_builds_with_its_module_dependency_pinned(build_server: Any,
                                                                      greeter: dict[str, Any]) -> None:
    c = build_server.client
    detection = greeter["detection"]
    assert detection["strategy"] == "go" and detection["run"] == "bin/greeter"
    assert detection["reason"].startswith("Go module example.com/greeter (go.mod)")
    assert detection["languageVersion"] == "1.22"
    manifest = c.get(f"/organizations/default/projects/go/artifacts/{greeter['artifact']}/manifest").json()["manifest"]
    assert manifest["language"] == "go" and manifest["toolchain"].startswith("go1.")
    assert {"ecosystem": "Go", "name": "github.com/go-chi/chi/v5", "version": "v5.2.1"} in manifest["dependencies"]
    assert manifest["lock"] == {"go": "files/go.sum"}
    log = log_text(c, greeter["id"])
    assert "CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o bin/greeter ." in log
    shown = run_cli(build_server.server, "build", "show", greeter["id"])
    assert shown.returncode == 0 and "Go module example.com/greeter" in shown.stdout, shown.stdout + shown.stderr


def test_the_go_service_deploys_and_answers_through_the_gateway(build_server: Any, dataplane: AgentProcess,
                                                                  greeter: dict[str, Any]) -> None:
    c = build_server.client
    deploy(c, "go", "greeter")
    d = wait_state(c, "go", "greeter")
    url = d["endpoints"][0]["urls"]["external"]
    assert httpx.get(url + "/", timeout=10).json() == {"app": "go-chi"}
    assert httpx.get(url + "/greetings/ada", timeout=10).json() == {"app": "go-chi", "name": "ada"}


def test_the_same_go_source_rebuilds_to_the_same_artifact_without_the_network(build_server: Any,
                                                                              greeter: dict[str, Any]) -> None:
    c = build_server.client
    again = wait(c, upload(c, "go", "greeter", APPS / "go-chi"))
    assert again["state"] == "succeeded", failed_why(c, again)
    assert again["artifact"] == greeter["artifact"]
    assert "the build runs with GOPROXY=off" in log_text(c, again["id"])


def test_a_go_task_runs_and_exits_zero(build_server: Any, dataplane: AgentProcess) -> None:
    c = build_server.client
    info = build_app(c, "go", "report", {"type": "manual-task"}, app="go-task")
    assert info["detection"]["run"] == "bin/report" and "cmd/report" in info["detection"]["reason"]
    deploy(c, "go", "report")
    wait_state(c, "go", "report", states=("idle",))
    out = run_cli(build_server.server, "run", "report", "--env", "development", "-p", "go")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "go task done, exit 0" in out.stdout


def _failure(build_server: Any, name: str, source: Path) -> str:
    c = build_server.client
    component(c, "go", name)
    info = wait(c, upload(c, "go", name, source))
    assert info["state"] == "failed", info
    return str(info["error"])


def test_two_main_packages_without_a_procfile_fail_with_one_line(build_server: Any, tmp_path: Path) -> None:
    source = tmp_path / "two"
    shutil.copytree(APPS / "go-task", source)
    shutil.copytree(source / "cmd" / "report", source / "cmd" / "cleanup")
    error = _failure(build_server, "two", source)
    assert error.startswith("cannot tell which Go program to build: cmd/cleanup, cmd/report are all main "
                            "packages; add a Procfile"), error
    (source / "Procfile").write_text("job: bin/report\n")  # a Procfile builds both and says which runs
    c = build_server.client
    info = wait(c, upload(c, "go", "two", source))
    assert info["state"] == "succeeded", failed_why(c, info)
    assert "go build -trimpath -ldflags=\"-s -w\" -o bin/cleanup ./cmd/cleanup" in log_text(c, info["id"])


def test_a_compile_error_names_the_file_as_the_repository_has_it(build_server: Any, tmp_path: Path) -> None:
    source = tmp_path / "broken"
    shutil.copytree(APPS / "go-task", source)
    main = source / "cmd" / "report" / "main.go"
    main.write_text(main.read_text().replace("os.Exit(code)", "os.Exit(cod)"))
    error = _failure(build_server, "broken", source)
    assert "cmd/report/main.go:" in error and "undefined: cod" in error, error
    assert "/builds/" not in error and str(tmp_path) not in error, error


def test_a_go_line_newer_than_the_machines_go_fails_with_one_line(build_server: Any, tmp_path: Path) -> None:
    source = tmp_path / "future"
    shutil.copytree(APPS / "go-task", source)
    (source / "go.mod").write_text("module example.com/future\n\ngo 1.99\n")
    error = _failure(build_server, "future", source)
    assert error.startswith("go.mod asks for go 1.99, newer than the build machine's go1."), error


def test_the_modules_in_the_binary_are_checked_against_the_offline_osv_database(build_server: Any,
                                                                                 tmp_path: Path) -> None:
    """Last in the module: the advisory stays in the module's OSV directory (high: found, not blocking)."""
    (build_server.osv / "chi-test.json").write_text(json.dumps({
        "id": "CELLPLANE-TEST-CHI", "summary": "test advisory against chi before 5.2.2",
        "affected": [{"package": {"ecosystem": "Go", "name": "github.com/go-chi/chi/v5"},
                      "ranges": [{"type": "SEMVER", "events": [{"introduced": "5.0.0"}, {"fixed": "5.2.2"}]}]}],
        "database_specific": {"severity": "HIGH"}}))
    source = tmp_path / "scanned"
    shutil.copytree(APPS / "go-chi", source)
    (source / "NOTES.md").write_text("a change, so the build is new\n")
    c = build_server.client
    component(c, "go", "scanned", service(port=8080))
    info = wait(c, upload(c, "go", "scanned", source))
    assert info["state"] == "succeeded", failed_why(c, info)
    found = [f for f in info["findings"] if f["kind"] == "vulnerability"]
    assert [(f["rule"], f["severity"], f["file"]) for f in found] == [("CELLPLANE-TEST-CHI", "high", "go.sum")]
    assert found[0]["message"] == "github.com/go-chi/chi/v5@5.2.1: test advisory against chi before 5.2.2 " \
                                  "(fixed in 5.2.2)"
