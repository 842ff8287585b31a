"""A Dockerfile's HEALTHCHECK with --retries becomes the liveness probe as well as the readiness probe (Docker marks
the container unhealthy after that many failures in a row); the data plane reads it from the artifact's manifest
for a component that declares no liveness probe of its own. In-process: the translation and the probe spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cellplane.build.dockerfile import prepare
from cellplane.build.plan import Plan
from cellplane.dataplane.launchspec import manifest_probe
from cellplane.dataplane.probes import ProbeSpec


class _NoSteps:
    def pip(self, inputs: list[str], packages: list[str], line: int) -> None:
        raise AssertionError("no pip install expected")

    def npm(self, cwd: Path, install: Any, line: int) -> None:
        raise AssertionError("no npm install expected")

    def shell(self, cwd: Path, command: str, env: dict[str, str], line: int) -> None:
        raise AssertionError("no shell step expected")


def _plan(tmp_path: Path, healthcheck: str) -> Plan:
    context, work = tmp_path / "src", tmp_path / "work"
    context.mkdir()
    work.mkdir()
    (context / "Dockerfile").write_text(f"FROM node:20\nHEALTHCHECK {healthcheck}\nCMD node server.js\n")
    return prepare(context / "Dockerfile", context, work, _NoSteps())


@pytest.mark.parametrize(
    ("healthcheck", "liveness"),
    [
        ("--interval=10s --timeout=3s --start-period=30s --retries=5 CMD curl -fsS http://localhost:8080/healthz",
         {"path": "/healthz", "timeoutSeconds": 3.0, "failureThreshold": 5, "periodSeconds": 10.0,
          "initialDelaySeconds": 30.0}),
        ('--retries=2 CMD ["wget", "-qO-", "http://127.0.0.1/ready"]', {"path": "/ready", "failureThreshold": 2}),
        ("--interval=10s CMD curl -f http://localhost/healthz", None),  # no --retries: readiness only
        ("--retries=3 CMD pg_isready", None),  # not an HTTP check: neither
        ("NONE", None),
    ],
)
def test_a_healthcheck_with_retries_is_also_the_liveness_probe(tmp_path: Path, healthcheck: str,
                                                               liveness: dict[str, Any] | None) -> None:
    plan = _plan(tmp_path, healthcheck)
    assert plan.liveness == liveness
    said = [note for note in plan.notes if "liveness probe too" in note]
    if liveness:
        assert plan.readiness is not None and plan.readiness["path"] == liveness["path"]
        assert "periodSeconds" not in plan.readiness  # readiness keeps what it had
        assert said == [f"HEALTHCHECK (line 2) has --retries, so it is the liveness probe too: "
                        f"{liveness['failureThreshold']} failures in a row restart the replica"]
    else:
        assert said == []


def test_the_data_plane_reads_the_liveness_probe_from_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(
        '{"readiness": {"path": "/healthz", "failureThreshold": 5},'
        ' "liveness": {"path": "/healthz", "timeoutSeconds": 3.0, "failureThreshold": 5, "periodSeconds": 10.0,'
        ' "initialDelaySeconds": 30.0}}')
    assert manifest_probe(tmp_path, "liveness") == ProbeSpec(path="/healthz", timeout=3.0, failure_threshold=5,
                                                             period=10.0, initial_delay=30.0)
    assert manifest_probe(tmp_path) == ProbeSpec(path="/healthz", failure_threshold=5)
    (tmp_path / "manifest.json").write_text('{"readiness": {"path": "/healthz"}}')
    assert manifest_probe(tmp_path, "liveness") is None  # no --retries: no liveness probe
