"""The state one stage's replay builds up (base image, ARG/ENV, workdir, start command, dependency steps, notes).

:class:`StageBuilder` holds it; the instruction families are mixins over it (:mod:`.settings`,
:mod:`.copying`, :mod:`.run`, :mod:`.laststage`), joined in :class:`cellplane.build.dockerfile.builder.Builder`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cellplane.build.baseimages import BaseImage
from cellplane.build.dockerfile.context import Context
from cellplane.build.dockerfile.parsing import fail
from cellplane.build.dockerfile.tree import Tree
from cellplane.build.plan import StepHooks
from cellplane.build.stages import StageInfo

NodeInstall = Literal["ci", "install"]


@dataclass
class PipOutput:
    """What a build stage's ``pip install --prefix/--target/--user`` (or ``pip wheel -w``) put in a directory, not
    run: the requirement files it read (image paths in ``tree``, the stage's), the specifiers, and its line."""

    tree: Tree
    stage: str
    line: int
    requirements: list[str]
    packages: list[str]


@dataclass
class StartForm:
    """A CMD or ENTRYPOINT: exec form (``argv``) or shell form (``shell``)."""

    argv: list[str] | None
    shell: str


class StageBuilder:
    """One target stage of a Dockerfile (its lineage: ancestors first) replayed against its own directory.

    The last stage's directory is the work tree that becomes the artifact; a build stage's is a
    scratch directory that later stages ``COPY --from``. ``built`` holds the finished targets."""

    def __init__(
        self,
        context: Path,
        root: Path,
        hooks: StepHooks,
        build_args: Mapping[str, str],
        display: str,
        graph: list[StageInfo] | None = None,
        built: Mapping[int, StageBuilder] | None = None,
    ) -> None:
        self.tree = Tree(root)
        self.context = Context(context, self.tree)
        self.hooks = hooks
        self.build_args = dict(build_args)
        self.display = display
        self.graph = graph or []
        self.built = built or {}
        self.stage: StageInfo | None = None
        self.last = True
        self.global_args: dict[str, str] = {}
        self.args: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.workdir = "/"
        self.image = BaseImage("", "python", "python", None)
        self.port: int | None = None
        self.extra_ports: list[str] = []
        self.cmd: StartForm | None = None
        self.entrypoint: StartForm | None = None
        self.pip_inputs: list[str] = []
        self.pip_packages: list[str] = []
        self.pip_outputs: dict[str, PipOutput] = {}  # image directory -> what a build stage's pip put there
        self.pip_adopted: list[str] = []  # image directories a COPY --from of pip's output wrote (last stage)
        self.venvs: list[str] = []  # virtual environments a build stage made (python -m venv DIR)
        self.node_install: NodeInstall | None = None
        self.labels: dict[str, str] = {}
        self.readiness: dict[str, Any] | None = None
        self.liveness: dict[str, Any] | None = None
        self.notes: list[str] = []

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _scope(self) -> dict[str, str]:
        """What ``$VAR`` means at this point: ARG values, overridden by ENV values."""
        return {**self.args, **self.env}

    def _add_python_dependencies(self, inputs: list[str], packages: list[str], line: int) -> None:
        """Requirement files (relative to the tree) and specifiers the platform installs for the last stage."""
        for item in inputs:
            if item not in self.pip_inputs:
                self.pip_inputs.append(item)
        for package in packages:
            if package not in self.pip_packages:
                self.pip_packages.append(package)
        self.hooks.pip(list(self.pip_inputs), list(self.pip_packages), line)

    def _require(self, tool: str, kind: str, line: int) -> None:
        if self.image.kind != kind:
            raise fail(line, f"RUN {tool} needs a {kind}:* base image, not {self.image.ref}")
