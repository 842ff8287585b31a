"""A Go binary built by a multi-stage Dockerfile (golang -> alpine) carries its module pins like a plain Go build:
a real control plane builds the go-multistage fixture (github.com/google/uuid through the module proxy), the
artifact's manifest lists the modules compiled into the binary (the build stage's go.sum is its Go lock), and
the offline OSV scan reads them."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from typing import Any

import pytest

from buildkit import APPS, component, failed_why, log_text, upload, wait
from dataplanekit import service

pytestmark = [pytest.mark.timeout(900), pytest.mark.usefixtures("go_installed")]


@pytest.fixture(scope="module")
def scanned(build_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fixture built once, with a (test) advisory against the uuid module in the OSV database."""
    (build_server.osv / "uuid-test.json").write_text(json.dumps({
        "id": "CELLPLANE-TEST-UUID", "summary": "test advisory against uuid before 1.6.1",
        "affected": [{"package": {"ecosystem": "Go", "name": "github.com/google/uuid"},
                      "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.6.1"}]}]}],
        "database_specific": {"severity": "HIGH"}}))
    source = tmp_path_factory.mktemp("pins") / "greeter"
    shutil.copytree(APPS / "go-multistage", source)
    c = build_server.client
    component(c, "gopins", "greeter", service(port=8080))
    info = wait(c, upload(c, "gopins", "greeter", source), timeout=600)
    assert info["state"] == "succeeded", failed_why(c, info)
    return info


def test_the_manifest_of_a_golang_to_alpine_dockerfile_build_lists_the_go_modules_in_its_binary(
        build_server: Any, scanned: dict[str, Any]) -> None:
    c = build_server.client
    assert scanned["detection"]["language"] == "go"
    manifest = c.get(f"/organizations/default/projects/gopins/artifacts/{scanned['artifact']}/manifest").json()
    dependencies = manifest["manifest"]["dependencies"]
    assert dependencies == [{"ecosystem": "Go", "name": "github.com/google/uuid", "version": "v1.6.0"}]
    log = log_text(c, scanned["id"])
    assert "usr/local/bin/greeter: 1 pinned Go modules" in log


def test_the_go_sum_of_the_build_stage_s_module_is_the_artifact_s_go_lock(build_server: Any,
                                                                          scanned: dict[str, Any]) -> None:
    c = build_server.client
    base = f"/organizations/default/projects/gopins/artifacts/{scanned['artifact']}"
    assert c.get(base + "/manifest").json()["manifest"]["lock"] == {"go": "go.sum"}
    with tarfile.open(fileobj=io.BytesIO(c.get(base).content), mode="r:gz") as artifact:
        member = artifact.extractfile("go.sum")
        assert member is not None and member.read() == (APPS / "go-multistage" / "go.sum").read_bytes()
        assert not any(name.startswith("files/src") for name in artifact.getnames())  # the sources stay out


def test_the_vulnerability_scan_reads_the_go_pins_of_the_dockerfile_binary(scanned: dict[str, Any]) -> None:
    found = [f for f in scanned["findings"] if f["kind"] == "vulnerability"]
    assert [(f["rule"], f["severity"], f["file"]) for f in found] == [("CELLPLANE-TEST-UUID", "high", "go.sum")]
    assert found[0]["message"] == "github.com/google/uuid@1.6.0: test advisory against uuid before 1.6.1 " \
                                  "(fixed in 1.6.1)"
