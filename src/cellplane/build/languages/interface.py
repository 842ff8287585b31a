"""The seam between one build (:mod:`cellplane.build.runner`) and what its language adds to each step.

:class:`LanguageBuild` has a method per step the runner takes; each does nothing by default, and one subclass
per language (:mod:`cellplane.build.languages.builds`, registered in its ``BUILDS`` table) overrides only the
steps its language has. What every language shares stays in the runner, driven by the plan, not the language:
Python requirements a plan names (a Dockerfile's ``RUN pip install`` on any last stage), ``npm ci`` for a
package.json, build and test commands, the secret scan, the Python lock in the manifest.

The runner calls, in order: :meth:`~LanguageBuild.from_dockerfile` (Dockerfile builds) or
:meth:`~LanguageBuild.check_toolchain` then :meth:`~LanguageBuild.install` (other builds);
:meth:`~LanguageBuild.env` / :meth:`~LanguageBuild.path` for every command it runs; :meth:`~LanguageBuild.build`
before the build commands and :meth:`~LanguageBuild.built` after them; :meth:`~LanguageBuild.scan_inputs` at the
scan; :meth:`~LanguageBuild.package` and :meth:`~LanguageBuild.pins` when it writes the artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cellplane.build.plan import Plan

# What is never copied into an artifact's files.
SKIP = {".git", "node_modules", ".venv", "venv", "__pycache__"}


class SourceFiles(Protocol):
    """Read-only access to a tree that never leaves it (what a language reads build files through)."""

    def is_file(self, rel: str, strict: bool = True) -> bool: ...

    def read(self, rel: str) -> str: ...


class BuildSite(Protocol):
    """What a language sees of the build it is part of (``cellplane.build.runner.Build``)."""

    @property
    def plan(self) -> Plan | None: ...

    @property
    def work(self) -> Path:
        """The work tree (the source, or a Dockerfile's last stage), which becomes the artifact's files."""

    @property
    def workdir(self) -> Path:
        """Where the plan's commands run: ``work / plan.workdir``."""

    @property
    def stages(self) -> Path:
        """Where a Dockerfile's build stages were built, one directory each."""

    @property
    def cache_root(self) -> Path:
        """The build cache shared between builds (Go's module cache, Maven's repository...)."""

    @property
    def component_type(self) -> str: ...

    def log(self, line: str) -> None: ...

    def files(self) -> SourceFiles:
        """The workdir's files, read-only."""

    def env(self) -> dict[str, str]:
        """The environment the build's commands run with (this language's :meth:`LanguageBuild.env` included)."""


@dataclass
class ScanInputs:
    """What the dependency scan reads besides the Python and npm locks: Go and Maven pins, and the file Maven
    findings point to."""

    go_pins: list[tuple[str, str]] = field(default_factory=list)
    maven_pins: list[tuple[str, str]] = field(default_factory=list)
    maven_file: str = "pom.xml"


class LanguageBuild:
    """One language's part of one build; the base is a language with no step of its own (``binary``)."""

    def __init__(self, site: BuildSite) -> None:
        self.site = site
        self.toolchain: str | None = None  # the compiler or interpreter version that built the artifact, if it matters

    @property
    def plan(self) -> Plan:
        plan = self.site.plan
        assert plan is not None
        return plan

    def env(self) -> dict[str, str]:
        """Environment variables the language's tools need (caches under the build cache)."""
        return {}

    def path(self) -> list[str]:
        """Directories added to the end of the build's PATH (the machine's toolchain)."""
        return []

    def uses_python(self) -> bool:
        """Whether the Python dependencies are installed (always for Python; else when the plan names some)."""
        return bool(self.plan.python_inputs or self.plan.python_packages)

    def check_toolchain(self) -> None:
        """Fail with one line (BuildFailure) naming what is missing when the machine cannot build the language."""

    def install(self) -> bool:
        """The language's own dependency step; False when it has none."""
        return False

    def from_dockerfile(self, source: Path, dockerfile: str) -> None:
        """After a Dockerfile's stages are built into the work tree: what the last stage runs tells the pins."""

    def has_build_tool(self) -> bool:
        """Whether the language's build tool runs in the build step even without build commands."""
        return False

    def build(self) -> bool:
        """Run the language's build tool, before the build commands; True when the plan changed (is reported again)."""
        return False

    def built(self) -> None:
        """After the build commands: read the pins of what was built."""

    def scans_python_code(self) -> bool:
        """Whether static analysis of Python code runs even when the tree has no ``.py`` file at its top."""
        return False

    def scan_inputs(self) -> ScanInputs:
        return ScanInputs()

    def package(self, files: Path, manifest: dict[str, Any]) -> bool:
        """Copy what runs into the artifact's ``files``; False: the whole work tree is copied."""
        return False

    def pins(self, manifest: dict[str, Any]) -> None:
        """Add the language's locks (``manifest["lock"]``) and pinned dependencies to the manifest."""
