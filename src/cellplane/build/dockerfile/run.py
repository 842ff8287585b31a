"""RUN: a line split into simple commands, each sent to the family that handles it (pip, npm/yarn, tools, shell)."""

from __future__ import annotations

import posixpath
from pathlib import Path

from cellplane.build.dockerfile.bases import TOOL_KINDS
from cellplane.build.dockerfile.node import NodeInstalls
from cellplane.build.dockerfile.parsing import Instruction, fail, split_flags
from cellplane.build.dockerfile.pip import PipInstalls, pip_arguments
from cellplane.build.dockerfile.shell import PYTHON
from cellplane.build.dockerfile.tools import PACKAGE_MANAGERS, Toolchains
from cellplane.build.dockerfile.words import ASSIGNMENT, Command, Word, shell_commands

_USER_COMMANDS = frozenset(
    {"adduser", "addgroup", "useradd", "groupadd", "usermod", "groupmod", "deluser", "delgroup", "chown", "chgrp"}
)
_SYSTEM_NOOPS = frozenset({"update-ca-certificates", "ldconfig"})
_FILE_COMMANDS = frozenset({"mkdir", "cp", "mv", "rm", "touch", "echo", "chmod", "ln", "ls", "cat", "sed"})
_SCRIPT_COMMANDS = frozenset({"node", "npx"})
_ALLOWED_RUN = (
    "pip install, npm ci/install, npm run, yarn install/build/run, npx, python, node, "
    "mkdir, cp, mv, rm, touch, echo, chmod, ln, cd, ls, cat, sed, true"
)


class Runs(PipInstalls, NodeInstalls, Toolchains):
    """RUN: each simple command of the line sent to its family."""

    def _run(self, instruction: Instruction) -> None:
        line = instruction.line
        flags, rest = split_flags(instruction.args)
        for flag in flags:
            name = flag.partition("=")[0]
            if name not in ("--mount", "--network", "--security"):
                raise fail(line, f"RUN option {name} is not supported without Docker")
            self._note(f"RUN {name} (line {line}) ignored")
        unknown: list[str] = []
        argv = instruction.json_form
        if argv is None:
            commands = shell_commands(rest, self._scope(), line, unknown)
        elif len(argv) >= 3 and posixpath.basename(argv[0]) in ("sh", "bash") and argv[1] == "-c":
            commands = shell_commands(argv[2], self._scope(), line, unknown)
        else:
            commands = [Command([Word(arg) for arg in argv])] if argv else []
        for name in unknown:
            self._note(f"RUN (line {line}): ${name} is not set by the Dockerfile and was replaced by nothing")
        cwd = self.tree.host(self.workdir)
        for command in commands:
            cwd = self._run_command(command, cwd, line)

    def _remember_venv(self, args: list[str], cwd: Path, line: int) -> None:
        """A build stage's virtual environment: its directory is made (empty), for pip and a later COPY --from."""
        where = next((arg for arg in args if not arg.startswith("-")), None)
        if where is not None:
            directory = self._host_path(where, cwd, line)
            self.tree.mkdir(directory, line)
            self.venvs.append(self.tree.image(directory))

    def _run_command(self, command: Command, cwd: Path, line: int) -> Path:
        """Translate one simple command; returns the directory the next command of the RUN starts in."""
        words = list(command.words)
        assignments: dict[str, str] = {}
        while words and ASSIGNMENT.match(words[0].text):
            name, _, value = words.pop(0).text.partition("=")
            assignments[name] = value
        if not words:
            raise fail(line, "a RUN that only sets shell variables is not supported; use ENV or ARG")
        command = Command(words, command.redirect)
        argv = [word.text for word in words]
        name = posixpath.basename(argv[0])
        pip_args = pip_arguments(argv)
        if name == "cd":
            return self._cd(argv, cwd, line)
        if name in ("true", ":") or (name == "set" and all(arg.startswith(("-", "+")) for arg in argv[1:])):
            pass
        elif name in _USER_COMMANDS:
            self._note(f"RUN {name} (line {line}) skipped: Cellplane runs processes as the platform's user")
        elif name in PACKAGE_MANAGERS:
            self._system_packages(name, argv, line)
        elif name in _SYSTEM_NOOPS:
            self._note(f"RUN {name} (line {line}) skipped: the machine's own system files are used")
        elif name in TOOL_KINDS:
            self._tool(name, command, cwd, assignments, line)
        elif pip_args is not None:
            self._pip(pip_args, cwd, line)
        elif name == "virtualenv" or (PYTHON.fullmatch(name) and argv[1:3] == ["-m", "venv"]):
            self._note(f"RUN {name} (line {line}) skipped: the platform provides the virtual environment")
            if not self.last:
                self._remember_venv(argv[1:] if name == "virtualenv" else argv[3:], cwd, line)
        elif name == "npm":
            self._npm(command, cwd, assignments, line)
        elif name == "yarn":
            self._yarn(command, cwd, assignments, line)
        elif name in _FILE_COMMANDS or name in _SCRIPT_COMMANDS or PYTHON.fullmatch(name):
            self._shell(command, cwd, assignments, line)
        else:
            raise fail(line, f"RUN {name} is not supported without Docker (allowed: {_ALLOWED_RUN})")
        return cwd
