"""Runtimes from locks: resolving with uv and with pip (the fallback), once per lock, from the shared cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cellplane.build.plan import BuildFailure
from cellplane.build.scans import parse_requirements_pins
from cellplane.runtime.materialize import COMPLETE, DependencyCache, pyproject_dependencies, python_lock, python_venv


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_lock_and_its_environment_with_each_installer(tmp_path: Path, build_cache: Path, installer: str) -> None:
    cache = DependencyCache(build_cache / installer, installer)
    work = tmp_path / "work"
    work.mkdir()
    (work / "requirements.txt").write_text("six>=1.16\n")
    (work / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1"\ndependencies = ["idna>=3"]\n')
    lines = []
    text = python_lock([work / "requirements.txt", work / "pyproject.toml"], [], work, cache, lines.append)
    pins = [(name.lower(), version) for name, version, _ in parse_requirements_pins(text)]
    names = {name for name, _ in pins}
    assert names == {"six", "idna"}  # exact pins of both declarations, never the project itself
    lock = tmp_path / "requirements.lock"
    lock.write_text(text)
    venv = python_venv(lock, cache, lines.append)
    assert (venv / COMPLETE).exists()
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import six, idna; print(six.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert ("six", out) in pins

    # the same inputs again: no resolution, and the same environment
    again: list[str] = []
    assert python_lock([work / "requirements.txt", work / "pyproject.toml"], [], work, cache, again.append) == text
    assert python_venv(lock, cache, again.append) == venv
    assert any("reusing its lock" in line for line in again)
    assert any("using the cached Python environment" in line for line in again)


def test_an_unresolvable_requirement_names_the_step(tmp_path: Path, build_cache: Path) -> None:
    (tmp_path / "requirements.txt").write_text("this-package-does-not-exist-cellplane==0.0.1\n")
    with pytest.raises(BuildFailure, match="resolving the Python dependencies failed"):
        python_lock([tmp_path / "requirements.txt"], [], tmp_path, DependencyCache(build_cache / "uv", "uv"))


def test_pyproject_dependencies(tmp_path: Path) -> None:
    p = tmp_path / "pyproject.toml"
    p.write_text('[project]\nname = "x"\ndependencies = ["a>=1", "b"]\n')
    assert pyproject_dependencies(p) == ["a>=1", "b"]
    p.write_text("[project\n")
    with pytest.raises(BuildFailure, match=r"pyproject\.toml"):
        pyproject_dependencies(p)
