"""What detection decides and the runner carries out.

A :class:`Plan` is plain data: which strategy was chosen and why, the language runtime the
application needs, how its dependencies are declared, what to run to build it, and how to start
it. Paths in a plan are relative, POSIX-style, and never leave the tree they are relative to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Strategy = Literal["explicit", "procfile", "dockerfile", "python", "node", "static", "go", "java", "php"]
# go: a Go binary; java: a jar run with the machine's java; php, ruby: their interpreter; binary: any other native
# program (a Dockerfile's last stage on alpine/debian/distroless/scratch...), started as its CMD/ENTRYPOINT says.
Language = Literal["python", "node", "static", "go", "java", "php", "ruby", "binary"]


class BuildFailure(Exception):
    """The build cannot go on; ``str(e)`` is the one line a user reads, ``where`` names the file or setting."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where


@dataclass
class Plan:
    strategy: Strategy
    reason: str  # one sentence: why this strategy won ("Procfile found with a web process")
    language: Language
    # Where processes start, relative to the artifact's files (the build's work tree): "" is its top.
    workdir: str = ""
    # Python dependency declarations, relative to the work tree: requirements files and/or pyproject.toml.
    python_inputs: list[str] = field(default_factory=list)
    # Extra requirement specifiers ("gunicorn==22.0.0"), e.g. from a Dockerfile's `RUN pip install x`.
    python_packages: list[str] = field(default_factory=list)
    # "ci" (a lockfile exists), "install" (no lockfile: npm writes one), or None (no package.json deps).
    node_install: Literal["ci", "install"] | None = None
    # Shell command lines run in `workdir`, in order, after dependencies are installed.
    build_commands: list[str] = field(default_factory=list)
    # For static sites: the directory (relative to `workdir`) that holds the site once built;
    # None with language "static" means "build/ or dist/, whichever exists after the build commands".
    static_root: str | None = None
    spa: bool = True  # static sites: unknown pages fall back to index.html (a Dockerfile's `serve` without -s: not)
    # The start command (a shell command line; $PORT is set at run time); None for static sites.
    run: str | None = None
    # Named processes (a Procfile's, for example): name -> command line. "web" serves the endpoints.
    processes: dict[str, str] = field(default_factory=dict)
    port: int | None = None  # the port the application declares (endpoint, EXPOSE), if any
    env: dict[str, str] = field(default_factory=dict)  # environment the app is built and run with
    test: str | None = None  # unit-test command line, run in `workdir` with the dependencies installed
    language_version: str | None = None  # what the source asks for ("3.11", "20"); informational
    notes: list[str] = field(default_factory=list)  # things the user should know (ignored instructions...)
    labels: dict[str, str] = field(default_factory=dict)  # a Dockerfile's LABELs, recorded in the manifest
    # A Dockerfile's HEALTHCHECK as a readiness probe: {"path", "timeoutSeconds"?, "failureThreshold"?}
    readiness: dict[str, Any] | None = None
    # ... and, when it has --retries, as the liveness probe: the same, with "periodSeconds", "initialDelaySeconds"
    liveness: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepHooks(Protocol):
    """What a translated Dockerfile asks the runner to do, in Dockerfile order."""

    def pip(self, inputs: list[str], packages: list[str], line: int) -> None:
        """Install Python requirements: files relative to the work tree, and specifiers (cumulative)."""

    def npm(self, cwd: Path, install: Literal["ci", "install"], line: int) -> None:
        """Install Node.js dependencies of the package.json in ``cwd``."""

    def shell(self, cwd: Path, command: str, env: dict[str, str], line: int) -> None:
        """Run a shell command line in ``cwd`` (inside the work tree)."""
