"""RUN of system package managers (no-ops for what the machine has, else refused) and of the stage image's build tools.

``go``, ``mvn``, ``./mvnw``, ``gradle``, ``java``... run on the machine's toolchain (:mod:`cellplane.build.toolchains`)
when the stage's base image provides that tool."""

from __future__ import annotations

import re
from pathlib import Path

from cellplane.build import toolchains
from cellplane.build.dockerfile.bases import GO_SUBCOMMANDS, STAGE_TOOLS, TOOL_KINDS, go_arch
from cellplane.build.dockerfile.parsing import fail
from cellplane.build.dockerfile.shell import ShellCommands, positional_args
from cellplane.build.dockerfile.words import Command, Word

PACKAGE_MANAGERS = frozenset(
    {"apt-get", "apt", "aptitude", "dpkg", "apk", "yum", "dnf", "microdnf", "rpm", "zypper", "pacman"}
)
_SYSTEM_MAINTENANCE = frozenset({"update", "upgrade", "clean", "autoclean", "autoremove", "cache", "makecache"})
_SYSTEM_VALUE_OPTIONS = frozenset({"-t", "--virtual", "-o", "--option", "-X", "--repository", "--setopt"})
# dumb-init: an init for PID 1) the platform's supervisor does their job.
_RUNTIME_EXTRAS = frozenset({"ca-certificates", "tzdata", "curl", "wget", "tini", "dumb-init"})


class Toolchains(ShellCommands):
    """RUN of system package managers and of the stage image's build tools."""

    def _system_packages(self, name: str, argv: list[str], line: int) -> None:
        """``apk add`` / ``apt-get install`` of what the machine has anyway is a no-op; anything else fails."""
        positional = positional_args(argv[1:], _SYSTEM_VALUE_OPTIONS)
        subcommand = positional[0] if positional else ""
        if subcommand in _SYSTEM_MAINTENANCE:
            self._note(f"RUN {name} {subcommand} (line {line}) skipped: no system packages are installed")
            return
        if subcommand not in ("add", "install"):
            raise fail(line, f"RUN {name} {subcommand} is not supported without Docker (system packages cannot be "
                              "installed)")
        packages = [re.split(r"[=<>~]", package, maxsplit=1)[0] for package in positional[1:]]
        refused = [package for package in packages if package not in _RUNTIME_EXTRAS]
        if refused:
            raise fail(
                line,
                f"RUN {name} {subcommand} {' '.join(refused)} is not supported without Docker: system packages "
                f"cannot be installed; only {', '.join(sorted(_RUNTIME_EXTRAS))} are accepted (as no-ops, the "
                "machine has them or the platform does their job)",
            )
        self._note(f"RUN {name} {subcommand} {' '.join(packages)} (line {line}) skipped: the machine's own are used")

    def _tool(self, name: str, command: Command, cwd: Path, assignments: dict[str, str], line: int) -> None:
        """``go build``, ``mvn package``, ``./mvnw``, ``gradle``, ``java``: on this machine's toolchain."""
        if name not in STAGE_TOOLS.get(self.image.kind, frozenset()):
            raise fail(line, f"RUN {name} needs {TOOL_KINDS[name]} as the stage's base image, not {self.image.ref}")
        argv = [word.text for word in command.words]
        if name == "go":
            subcommand = next((arg for arg in argv[1:] if not arg.startswith("-")), "")
            if subcommand not in GO_SUBCOMMANDS:
                raise fail(line, f"RUN go {subcommand} is not supported without Docker "
                                  f"(supported: go {', go '.join(sorted(GO_SUBCOMMANDS))})")
            for variable, value in (("GOOS", "linux"), ("GOARCH", go_arch())):
                if assignments.get(variable, value) != value:
                    self._note(f"RUN (line {line}): {variable}={assignments.pop(variable)} ignored: "
                               "the binary is built for this machine")
        if name in ("mvnw", "gradlew"):
            wrapper = self._host_path(argv[0], cwd, line)
            if not wrapper.is_file():
                raise fail(line, f"RUN {argv[0]}: there is no {name} in {self.tree.image(cwd)} at this point "
                                  "(COPY it first)")
            tool = "mvn" if name == "mvnw" else "gradle"
            if toolchains.find(tool) is not None:  # the machine's, instead of one the wrapper would download
                self._note(f"RUN {argv[0]} (line {line}) runs the machine's {tool}")
                command = Command([Word(tool), *command.words[1:]], command.redirect)
            elif name == "gradlew":
                raise fail(line, f"RUN {argv[0]} needs Gradle: the wrapper downloads it from services.gradle.org, "
                                  "which builds cannot reach; install Gradle on the build machine")
        elif toolchains.find(name) is None:
            raise fail(line, f"RUN {name} needs {toolchains.describe(name)}, which is not installed on this machine "
                              f"(install it, or build the app outside its Dockerfile)")
        self._shell(command, cwd, assignments, line)
