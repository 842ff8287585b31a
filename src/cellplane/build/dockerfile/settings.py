"""FROM, ARG, ENV, WORKDIR, USER, LABEL, HEALTHCHECK, EXPOSE, CMD and ENTRYPOINT: the instructions that set, not build.

Each records into the stage's state; only WORKDIR touches the file tree (it creates the directory)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from cellplane.build.dockerfile.bases import base_image
from cellplane.build.dockerfile.parsing import Instruction, fail, head, json_array, split_flags
from cellplane.build.dockerfile.stage import StageBuilder, StartForm
from cellplane.build.dockerfile.tree import image_abspath
from cellplane.build.dockerfile.words import NAME, RAW_WORD, expand, split_words

_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?", re.I)
_LOCAL_URL = re.compile(r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::\d+)?(/[^\s'\"|;&]*)?")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


class Settings(StageBuilder):
    """FROM and the instructions that only set state (ARG, ENV, WORKDIR, EXPOSE, LABEL, HEALTHCHECK, USER, CMD...)."""

    def _from(self, instruction: Instruction) -> None:
        words = from_words(instruction, self.global_args)
        if any(w.startswith("--platform") for w in split_words(instruction.args, self.global_args, instruction.line)):
            self._note(f"FROM --platform (line {instruction.line}) ignored: stages build for this machine")
        self.image = base_image(words[0], instruction.line)

    def _arg(self, instruction: Instruction) -> None:
        self._declare_args(instruction, self.args, self.env, self.global_args)

    def _declare_args(
        self, instruction: Instruction, target: dict[str, str], env: Mapping[str, str], inherited: Mapping[str, str]
    ) -> None:
        """``ARG NAME[=default] ...``: a build argument overrides the default; no default inherits a global ARG."""
        raws = RAW_WORD.findall(instruction.args)
        if not raws:
            raise fail(instruction.line, "ARG needs a name")
        for raw in raws:
            name, equals, default = raw.partition("=")
            if not NAME.fullmatch(name):
                raise fail(instruction.line, f"ARG name '{name}' is not a valid name")
            if name in self.build_args:
                target[name] = self.build_args[name]
            elif equals:
                target[name] = expand(default, {**target, **env}, instruction.line)
            elif name in inherited:
                target[name] = inherited[name]

    def _workdir(self, instruction: Instruction) -> None:
        path = expand(instruction.args, self._scope(), instruction.line)
        if not path:
            raise fail(instruction.line, "WORKDIR needs a path")
        self.workdir = image_abspath(posixpath.join(self.workdir, path))
        self.tree.mkdir(self.tree.host(self.workdir), instruction.line)

    def _env(self, instruction: Instruction) -> None:
        scope, line = self._scope(), instruction.line
        raws = RAW_WORD.findall(instruction.args)
        if not raws:
            raise fail(line, "ENV needs NAME=VALUE")
        if "=" not in raws[0]:  # the legacy form: ENV NAME the rest of the line
            name, value = head(instruction.args)
            if not value:
                raise fail(line, f"ENV {name} needs a value")
            pairs = [(name, expand(value, scope, line))]
        else:
            pairs = []
            for raw in raws:
                name, equals, value = raw.partition("=")
                if not equals or not name:
                    raise fail(line, f"ENV expects NAME=VALUE pairs, not '{raw}'")
                pairs.append((expand(name, scope, line), expand(value, scope, line)))
        for name, value in pairs:
            if name == "PATH":
                self._note(f"ENV PATH (line {line}) ignored: the platform sets PATH for its runtimes")
            else:
                self.env[name] = value

    def _expose(self, instruction: Instruction) -> None:
        words = split_words(instruction.args, self._scope(), instruction.line)
        if not words:
            raise fail(instruction.line, "EXPOSE needs a port")
        for word in words:
            match = _PORT.fullmatch(word)
            if not match or not 1 <= int(match.group(1)) <= 65535:
                raise fail(instruction.line, f"EXPOSE '{word}' is not a port")
            if self.port is None:
                self.port = int(match.group(1))
            else:
                self.extra_ports.append(word)

    def _label(self, instruction: Instruction) -> None:
        """``LABEL key=value ...``: recorded in the artifact's manifest."""
        scope, line = self._scope(), instruction.line
        raws = RAW_WORD.findall(instruction.args)
        if not raws:
            raise fail(line, "LABEL needs key=value")
        for raw in raws:
            key, equals, value = raw.partition("=")
            if not equals or not key:
                raise fail(line, f"LABEL expects key=value pairs, not '{raw}'")
            self.labels[expand(key, scope, line)] = expand(value, scope, line)

    def _healthcheck(self, instruction: Instruction) -> None:
        """``HEALTHCHECK CMD curl/wget http://localhost[:port]/path`` becomes an HTTP readiness probe of that path,
        and with ``--retries`` the liveness probe too: Docker marks the container unhealthy after that many failures
        in a row, which is when an orchestrator replaces it; the data plane restarts the replica."""
        line = instruction.line
        flags, rest = split_flags(instruction.args)
        keyword, command = head(rest)
        if keyword.upper() == "NONE":
            self.readiness = self.liveness = None
            return
        if keyword.upper() != "CMD" or not command:
            raise fail(line, "HEALTHCHECK expects CMD <command> or NONE")
        argv = json_array(command)
        text = " ".join(argv) if argv is not None else command
        words = text.split()
        program = posixpath.basename(words[0]) if words else ""
        url = _LOCAL_URL.search(text)
        if program not in ("curl", "wget") or url is None:
            self._note(f"HEALTHCHECK (line {line}) not used: only curl or wget of a local URL becomes the "
                       "readiness probe (the default probe connects to the port)")
            self.readiness = self.liveness = None
            return
        probe: dict[str, Any] = {"path": url.group(1) or "/"}
        timing: dict[str, float] = {}  # what Docker's liveness has that readiness does not use
        for flag in flags:
            name, _, value = flag.partition("=")
            if name == "--timeout" and (seconds := _duration(value)):
                probe["timeoutSeconds"] = min(seconds, 600.0)
            elif name == "--retries" and value.isdigit() and 1 <= int(value) <= 100:
                probe["failureThreshold"] = int(value)
            elif name == "--interval" and (seconds := _duration(value)):
                timing["periodSeconds"] = min(seconds, 3600.0)
            elif name == "--start-period" and (seconds := _duration(value)):
                timing["initialDelaySeconds"] = min(seconds, 3600.0)
        self.readiness = probe
        self._note(f"HEALTHCHECK (line {line}) becomes the readiness probe: HTTP GET {probe['path']} on the "
                   "replica's port")
        self.liveness = {**probe, **timing} if "failureThreshold" in probe else None
        if self.liveness:
            self._note(f"HEALTHCHECK (line {line}) has --retries, so it is the liveness probe too: "
                       f"{probe['failureThreshold']} failures in a row restart the replica")

    def _user(self, instruction: Instruction) -> None:
        user = expand(instruction.args, self._scope(), instruction.line)
        self._note(f"USER {user} (line {instruction.line}) ignored: processes run as the platform's user")

    def _cmd(self, instruction: Instruction) -> None:
        self.cmd = StartForm(instruction.json_form, instruction.args)

    def _entrypoint(self, instruction: Instruction) -> None:
        self.entrypoint = StartForm(instruction.json_form, instruction.args)


def from_words(instruction: Instruction, global_args: Mapping[str, str]) -> list[str]:
    """``[image]`` or ``[image, "AS", name]`` of a FROM line, ``--platform`` left out."""
    words = [w for w in split_words(instruction.args, global_args, instruction.line) if not w.startswith("--")]
    if not (len(words) == 1 or (len(words) == 3 and words[1].lower() == "as")):
        raise fail(instruction.line, "FROM expects an image, optionally followed by AS <name>")
    return words


def _duration(text: str) -> float | None:
    """Seconds in a Docker duration (``30s``, ``1m30s``, ``500ms``), None when it is not one."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)
