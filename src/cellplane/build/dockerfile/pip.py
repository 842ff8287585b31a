"""RUN pip install: requirement files, local projects and specifiers become the plan's Python dependency inputs.

The install itself is the platform's (``hooks.pip``, into the artifact's environment). In a build stage, pip
installs into a directory a later stage copies (``--prefix``, ``--target``, ``--user``, a virtual environment the
stage made, or ``pip wheel -w``): nothing runs there; the directory is recorded (:class:`PipOutput`) and the stage
that copies it gets those dependencies installed by the platform (:meth:`Copies._adopt_pip_output`)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

from cellplane.build.dockerfile.parsing import fail
from cellplane.build.dockerfile.shell import PYTHON, ShellCommands
from cellplane.build.dockerfile.stage import PipOutput
from cellplane.build.dockerfile.tree import image_abspath

_PIP = re.compile(r"pip(?:3(?:\.\d+)?)?")
# pip install options: those that take a value, those that do not, and those worth a note when ignored.
_PIP_VALUE_OPTIONS = frozenset(
    {
        "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url", "--extra-index-url",
        "-f", "--find-links", "--trusted-host", "-t", "--target", "--prefix", "--root", "--progress-bar",
        "--timeout", "--retries", "--platform", "--python-version", "--implementation", "--abi", "--only-binary",
        "--no-binary", "--root-user-action", "--cache-dir", "--src", "--upgrade-strategy", "--log", "--proxy",
        "--cert", "--client-cert", "--use-feature", "--use-deprecated", "--config-settings", "-C",
        "--global-option", "--exists-action", "-w", "--wheel-dir",
    }
)  # fmt: skip
_PIP_FLAGS = frozenset(
    {
        "--no-cache-dir", "--upgrade", "-U", "--user", "--prefer-binary", "--no-deps", "--quiet", "--verbose",
        "--compile", "--no-compile", "--force-reinstall", "--ignore-installed", "-I", "--pre",
        "--no-warn-script-location", "--disable-pip-version-check", "--break-system-packages",
        "--no-build-isolation", "--require-hashes", "--no-input", "--isolated", "--no-color", "--no-index",
    }
)  # fmt: skip
_PIP_NOTED = frozenset(
    {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "-t", "--target",
     "--prefix", "--root", "--no-index", "--user", "--no-deps"}
)  # fmt: skip
_PIP_SELF = frozenset({"pip", "setuptools", "wheel"})


class PipInstalls(ShellCommands):
    """RUN pip install."""

    def _pip(self, args: list[str], cwd: Path, line: int) -> None:
        self._require("pip", "python", line)
        index = 0
        while index < len(args) and args[index].startswith("-"):  # pip's general options
            index += 2 if args[index] in _PIP_VALUE_OPTIONS else 1
        subcommand = args[index] if index < len(args) else ""
        if not self.last:
            self._stage_pip(subcommand, args[:index] + args[index + 1 :], cwd, line)
            return
        if subcommand != "install":
            raise fail(
                line, f"RUN pip {subcommand or '(no command)'} is not supported without Docker (only pip install is)"
            )
        inputs, packages = self._pip_install(args[:index] + args[index + 1 :], cwd, line)
        if not inputs and not packages and self.pip_adopted:
            return  # only what a build stage's pip left here (its wheels): installed already
        if not inputs and all(_requirement_name(p) in _PIP_SELF for p in packages):
            shown = " ".join(packages) or "(nothing)"
            self._note(f"RUN pip install {shown} (line {line}) skipped: the platform manages pip")
            return
        if any(_requirement_name(p) == "pip" for p in packages):
            self._note(f"pip install pip (line {line}) skipped: the platform manages pip")
        self._add_python_dependencies(inputs, [p for p in packages if _requirement_name(p) != "pip"], line)

    def _stage_pip(self, subcommand: str, args: list[str], cwd: Path, line: int) -> None:
        """pip in a build stage: where it would install (or build wheels) is recorded with what it reads."""
        if subcommand not in ("install", "wheel"):
            raise fail(line, f"RUN pip {subcommand or '(no command)'} in a build stage is not supported without "
                             "Docker (supported there: pip install --prefix/--target/--user, pip wheel -w)")
        out: str | None = None
        kept: list[str] = []
        for option, value in _pip_options(args, line):
            if subcommand == "install" and option in ("--prefix", "-t", "--target"):
                out = value
            elif subcommand == "install" and option == "--user":
                out = "/root/.local"  # pip's user scheme under the python image's HOME
            elif subcommand == "wheel" and option in ("-w", "--wheel-dir"):
                out = value
            else:
                kept += [value] if option is None else [option, value] if value else [option]
        inputs, packages = self._pip_install(kept, cwd, line)
        if not inputs and all(_requirement_name(p) in _PIP_SELF for p in packages):
            shown = " ".join(packages) or "(nothing)"
            self._note(f"RUN pip {subcommand} {shown} (line {line}) skipped: the platform manages pip")
            return
        if out is None and subcommand == "install" and self.venvs:
            out = self.venvs[-1]  # the stage's virtual environment, first on its PATH
        elif out is None and subcommand == "wheel":
            out = self.tree.image(cwd)
        if out is None:
            raise fail(line, "RUN pip install in a build stage installs into that stage's own Python, which is not "
                             "kept without Docker; install with --prefix DIR, --target DIR or --user (or into a "
                             "virtual environment) and COPY --from that directory, build wheels with pip wheel -w "
                             "DIR, or install in the last stage")
        directory = self._host_path(out, cwd, line)
        self.tree.mkdir(directory, line)
        image = self.tree.image(directory)
        shown = self.stage.shown if self.stage else "this stage"
        made = self.pip_outputs.setdefault(image, PipOutput(self.tree, shown, line, [], []))
        made.requirements += ["/" + rel for rel in inputs if "/" + rel not in made.requirements]
        made.packages += [p for p in packages if p not in made.packages and _requirement_name(p) != "pip"]
        self._note(f"RUN pip {subcommand} (line {line}) not run in stage {shown}: the platform installs these Python "
                   f"dependencies for the stage that copies {image}")

    def _pip_install(self, args: list[str], cwd: Path, line: int) -> tuple[list[str], list[str]]:
        """``(requirement files and pyproject.toml paths relative to the tree, specifiers)`` of a pip install."""
        inputs: list[str] = []
        packages: list[str] = []
        for option, value in _pip_options(args, line):
            if option in ("-r", "--requirement"):
                inputs.append(self._requirements_file(value, cwd, line))
            elif option in (None, "-e", "--editable"):
                if _is_local_requirement(value) and (adopted := self._adopted(value, cwd)):
                    self._note(f"pip install {value} (line {line}) skipped: {adopted} holds what a build stage's pip "
                               "made, installed by the platform already")
                elif _is_local_requirement(value):
                    inputs.append(self._pip_project(value, cwd, line))
                else:
                    packages.append(value)
            elif option in ("-c", "--constraint"):
                self._note(f"pip constraints file {value} (line {line}) ignored")
            elif option in _PIP_NOTED:
                self._note(f"pip option {option} (line {line}) ignored: the platform's pip settings apply")
        return inputs, packages

    def _adopted(self, value: str, cwd: Path) -> str | None:
        """The directory a COPY --from of a build stage's pip output wrote that ``value`` (a path) is in, if any."""
        image = image_abspath(value if value.startswith("/") else posixpath.join(self.tree.image(cwd), value))
        return next((d for d in self.pip_adopted if image == d or image.startswith(d.rstrip("/") + "/")), None)

    def _requirements_file(self, value: str, cwd: Path, line: int) -> str:
        path = self._host_path(value, cwd, line)
        if not path.is_file():
            raise fail(
                line,
                f"pip install -r {value}: {self.tree.image(path)} is not in the image at this point "
                "(COPY it before this RUN)",
            )
        return self.tree.relative(path)

    def _pip_project(self, value: str, cwd: Path, line: int) -> str:
        """``pip install .`` (or ``-e ./pkg[extra]``): the directory's pyproject.toml becomes an input."""
        directory = self._host_path(re.sub(r"\[[^\]]*\]$", "", value), cwd, line)
        if directory.is_file():
            raise fail(line, f"pip install {value}: installing a local file is not supported without Docker")
        if not (directory / "pyproject.toml").is_file():
            raise fail(
                line,
                f"pip install {value}: {self.tree.image(directory)} has no pyproject.toml "
                "(a setup.py alone is not supported without Docker)",
            )
        if value.endswith("]"):
            self._note(f"pip install {value} (line {line}): the extras are not installed")
        return self.tree.relative(directory / "pyproject.toml")


def pip_arguments(argv: list[str]) -> list[str] | None:
    """The arguments after ``pip`` / ``python -m pip``, or None when the command is not pip."""
    name = posixpath.basename(argv[0])
    if _PIP.fullmatch(name):
        return argv[1:]
    if PYTHON.fullmatch(name) and argv[1:3] == ["-m", "pip"]:
        return argv[3:]
    return None


def _pip_options(args: list[str], line: int) -> Iterator[tuple[str | None, str]]:
    """``(option, value)`` pairs of a pip install; positional arguments come as ``(None, value)``."""
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not arg.startswith("-") or arg == "-":
            yield None, arg
            continue
        if arg.startswith("--") and "=" in arg:
            option, _, value = arg.partition("=")
            if option not in _PIP_VALUE_OPTIONS and option not in _PIP_FLAGS:
                raise fail(line, f"pip option {option} is not understood")
            yield option, value
            continue
        if not arg.startswith("--") and len(arg) > 2 and arg[:2] in _PIP_VALUE_OPTIONS:
            yield arg[:2], arg[2:]  # -rrequirements.txt
            continue
        if arg in _PIP_VALUE_OPTIONS:
            if index >= len(args):
                raise fail(line, f"pip option {arg} needs a value")
            yield arg, args[index]
            index += 1
        elif arg in _PIP_FLAGS or re.fullmatch(r"-[qvUI]+", arg):
            yield arg, ""
        else:
            raise fail(line, f"pip option {arg} is not understood")


def _is_local_requirement(value: str) -> bool:
    """``.``, ``./pkg``, ``/app``, ``.[dev]``: a directory, not a requirement specifier or URL."""
    return value.startswith((".", "/")) and "://" not in value


def _requirement_name(specifier: str) -> str:
    return re.split(r"[\s<>=!~\[;@]", specifier, maxsplit=1)[0].lower()
