"""pip in a Dockerfile's build stage, into a directory a later stage copies (``--prefix``, ``--target``, ``--user``,
a virtual environment, ``pip wheel -w``): the stage that copies it gets those Python dependencies installed by the
platform, as if it had run pip itself; pip into the stage's own Python is refused with a line naming what works.

The translation tests run in this process (the hooks record what the runner would install); the end-to-end test
builds the flask-pip-stages fixture through a real control plane (Flask and gunicorn from PyPI), deploys it on the
local data plane and calls it through the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cellplane.build.dockerfile import prepare
from cellplane.build.plan import BuildFailure, Plan
from dataplanekit import AgentProcess, build_app, deploy, service, wait_state

pytestmark = pytest.mark.timeout(900)


class _Steps:
    """Records the runner's Python installs; no other step is expected."""

    def __init__(self) -> None:
        self.pip_calls: list[tuple[list[str], list[str], int]] = []

    def pip(self, inputs: list[str], packages: list[str], line: int) -> None:
        self.pip_calls.append((inputs, packages, line))

    def npm(self, cwd: Path, install: Any, line: int) -> None:
        raise AssertionError("no npm install expected")

    def shell(self, cwd: Path, command: str, env: dict[str, str], line: int) -> None:
        raise AssertionError(f"no shell step expected: {command}")


def _prepare(tmp_path: Path, dockerfile: str) -> tuple[Plan, _Steps]:
    context, work = tmp_path / "src", tmp_path / "work"
    context.mkdir()
    work.mkdir()
    (context / "requirements.txt").write_text("flask>=3,<4\n")
    (context / "app.py").write_text("app = None\n")
    (context / "Dockerfile").write_text(dockerfile)
    steps = _Steps()
    return prepare(context / "Dockerfile", context, work, steps), steps


_LAST = 'FROM python:3.12-slim\nWORKDIR /app\n{copy}\nCOPY . .\nCMD ["gunicorn", "app:app"]\n'


@pytest.mark.parametrize(
    ("install", "copy"),
    [
        ("RUN pip install --no-cache-dir --prefix=/install -r requirements.txt",
         "COPY --from=builder /install /usr/local"),
        ("RUN pip install --target /deps -r requirements.txt", "COPY --from=builder /deps /app/deps"),
        ("RUN pip install --user --no-warn-script-location -r requirements.txt",
         "COPY --from=builder /root/.local /root/.local"),
        ("RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip && "
         "/opt/venv/bin/pip install -r requirements.txt", "COPY --from=builder /opt/venv /opt/venv"),
    ],
)
def test_what_a_build_stage_pip_installs_into_a_copied_directory_is_installed_for_the_last_stage(
        tmp_path: Path, install: str, copy: str) -> None:
    plan, steps = _prepare(tmp_path, "FROM python:3.12-slim AS builder\nWORKDIR /app\nCOPY requirements.txt .\n"
                                     f"{install}\n" + _LAST.format(copy=copy))
    assert plan.python_inputs == ["app/requirements.txt"]
    assert steps.pip_calls == [(["app/requirements.txt"], [], 7)]  # at the COPY --from line
    assert any(note.startswith("COPY --from (line 7) of ") and "are installed by the platform" in note
               for note in plan.notes), plan.notes
    assert (tmp_path / "work" / "app" / "requirements.txt").read_text() == "flask>=3,<4\n"


def test_wheels_built_in_a_stage_and_installed_from_in_the_last_stage(tmp_path: Path) -> None:
    plan, steps = _prepare(tmp_path, (
        "FROM python:3.12 AS wheels\nWORKDIR /src\nCOPY requirements.txt .\n"
        "RUN pip wheel --no-cache-dir -w /wheels -r requirements.txt gunicorn==23.0.0\n"
        "FROM python:3.12-slim\nWORKDIR /app\nCOPY --from=wheels /wheels /wheels\n"
        "RUN pip install --no-cache-dir /wheels/*\nCOPY . .\nCMD [\"gunicorn\", \"app:app\"]\n"))
    assert (plan.python_inputs, plan.python_packages) == (["src/requirements.txt"], ["gunicorn==23.0.0"])
    assert steps.pip_calls == [(["src/requirements.txt"], ["gunicorn==23.0.0"], 7)]  # the wheels' install adds none
    assert "/src/requirements.txt copied from stage 'wheels': the platform installs the Python dependencies it " \
           "lists" in plan.notes
    assert "pip install /wheels/* (line 8) skipped: /wheels holds what a build stage's pip made, installed by the " \
           "platform already" in plan.notes


def test_pip_into_a_build_stage_s_own_python_is_refused_naming_what_works(tmp_path: Path) -> None:
    with pytest.raises(BuildFailure) as caught:
        _prepare(tmp_path, "FROM python:3.12 AS builder\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\n"
                           + _LAST.format(copy="COPY --from=builder /usr/local /usr/local"))
    assert str(caught.value) == (
        "Dockerfile line 3: RUN pip install in a build stage installs into that stage's own Python, which is not "
        "kept without Docker; install with --prefix DIR, --target DIR or --user (or into a virtual environment) and "
        "COPY --from that directory, build wheels with pip wheel -w DIR, or install in the last stage")


def test_upgrading_pip_in_a_build_stage_is_a_noted_no_op(tmp_path: Path) -> None:
    plan, steps = _prepare(tmp_path, "FROM python:3.12 AS builder\nRUN pip install --upgrade pip setuptools\n"
                                     "WORKDIR /out\n" + _LAST.format(copy="COPY --from=builder /out /out"))
    assert steps.pip_calls == [] and plan.python_inputs == []
    assert "RUN pip install pip setuptools (line 2) skipped: the platform manages pip" in plan.notes


def test_pip_packages_copied_onto_a_last_stage_without_python_fail_naming_the_stage(tmp_path: Path) -> None:
    with pytest.raises(BuildFailure) as caught:
        _prepare(tmp_path, "FROM python:3.12 AS builder\nCOPY requirements.txt .\n"
                           "RUN pip install --prefix /install -r requirements.txt\n"
                           "FROM alpine:3.20\nCOPY --from=builder /install /usr/local\n")
    assert str(caught.value) == (
        "Dockerfile line 5: COPY --from: /install holds Python packages pip installed in stage 'builder' (line 3); "
        "they need a python:* last stage, not alpine:3.20")


def test_a_flask_app_whose_dependencies_a_build_stage_installs_answers_through_the_gateway(
        build_server: Any, dataplane: AgentProcess) -> None:
    c = build_server.client
    info = build_app(c, "pipstages", "api", service(port=8080), app="flask-pip-stages")
    manifest = c.get(f"/organizations/default/projects/pipstages/artifacts/{info['artifact']}/manifest").json()
    names = {d["name"].lower() for d in manifest["manifest"]["dependencies"]}
    assert {"flask", "gunicorn"} <= names and manifest["manifest"]["lock"] == {"python": "requirements.lock"}
    deploy(c, "pipstages", "api")
    url = wait_state(c, "pipstages", "api", timeout=180)["endpoints"][0]["urls"]["external"]
    r = httpx.get(url + "/", timeout=10)
    assert r.status_code == 200 and r.json()["app"] == "flask-pip-stages"
