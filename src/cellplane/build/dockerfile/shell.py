"""RUN commands allowed to run on the machine (file commands, scripts, build tools), with image paths rewritten.

``/app/x`` becomes ``<stage tree>/app/x``; every argument that looks like a path must stay inside the
tree (symlinks followed); globs expand against the tree like ``sh`` would. The command then runs
through ``hooks.shell`` (a real process, in the stage's directory)."""

from __future__ import annotations

import glob
import os
import posixpath
import re
import shlex
from pathlib import Path

from cellplane.build.dockerfile.parsing import fail
from cellplane.build.dockerfile.stage import StageBuilder
from cellplane.build.dockerfile.tree import HOST_DEVICES
from cellplane.build.dockerfile.words import Command, Word

PYTHON = re.compile(r"python(?:3(?:\.\d+)?)?")


class ShellCommands(StageBuilder):
    """Allowed RUN commands run through the hooks, their image paths rewritten into the stage's tree."""

    def _cd(self, argv: list[str], cwd: Path, line: int) -> Path:
        if len(argv) != 2:
            raise fail(line, "RUN cd needs exactly one directory")
        target = self._host_path(argv[1], cwd, line)
        if not target.is_dir():
            raise fail(line, f"RUN cd {argv[1]}: {self.tree.image(target)} is not a directory in the image")
        return target

    def _shell(self, command: Command, cwd: Path, assignments: dict[str, str], line: int) -> None:
        """Run an allowed command through the hooks, image paths rewritten into the work tree."""
        first = command.words[0].text
        name = posixpath.basename(first)
        program = name if "/" in first else first
        if name in ("mvnw", "gradlew"):
            program = self._rewrite_arg(first, cwd, line)
        args = self._shell_args(name, command.words[1:], cwd, line)
        if name == "rm" and any(arg.rstrip("/") == str(self.tree.root) for arg in args):
            raise fail(line, "RUN rm of / would delete the whole image file tree")
        if name == "rm" and not any(re.fullmatch(r"-[a-zA-Z]*f[a-zA-Z]*|--force", arg) for arg in args):
            args = self._existing_only(args, cwd, line)
            if not any(not arg.startswith("-") for arg in args):
                return
        text = shlex.join([program, *args])
        if command.redirect:
            operator, target = command.redirect
            text += f" {operator} {shlex.quote(self._rewrite_arg(target.text, cwd, line, path=True))}"
        env = {**self._scope(), **assignments}
        if self.image.kind == "go":  # the golang image's GOPATH, inside this stage's tree
            env["GOPATH"] = str(self.tree.check(self.tree.host(env.get("GOPATH") or "/go"), line, "GOPATH"))
        self.hooks.shell(cwd, text, env, line)

    def _existing_only(self, args: list[str], cwd: Path, line: int) -> list[str]:
        """``rm`` of files the base image would hold (nginx's default.conf) but this tree does not: left out."""
        kept = []
        for arg in args:
            if arg.startswith("-") or os.path.lexists(cwd / arg):
                kept.append(arg)
            else:
                shown = self.tree.image(Path(arg)) if Path(arg).is_relative_to(self.tree.root) else arg
                self._note(f"RUN rm (line {line}): {shown} is not in the image's file tree here, nothing to remove")
        return kept

    def _shell_args(self, name: str, words: list[Word], cwd: Path, line: int) -> list[str]:
        texts = [word.text for word in words]
        if name == "ln":
            return self._ln_args(texts, cwd, line)
        out: list[str] = []
        for word, role in zip(words, _argument_roles(name, texts), strict=True):
            if role == "text":
                out.append(word.text)
            else:
                out.extend(self._path_args(word, cwd, line))
        return out

    def _path_args(self, word: Word, cwd: Path, line: int) -> list[str]:
        """An argument that may be a path: globs expanded like ``sh`` would, absolute paths rewritten."""
        if word.pattern is not None:
            if word.pattern.startswith("/"):
                found = glob.glob(glob.escape(str(self.tree.root)) + word.pattern)
                matches = [self.tree.image(Path(match)) for match in found]
            else:
                matches = glob.glob(word.pattern, root_dir=cwd)
            if matches:
                return [self._rewrite_arg(match, cwd, line) for match in sorted(matches)]
        return [self._rewrite_arg(word.text, cwd, line)]

    def _rewrite_arg(self, text: str, cwd: Path, line: int, *, path: bool = False) -> str:
        """``/app/x`` becomes ``<work>/app/x``; whatever looks like a path must stay inside the tree."""
        if text in HOST_DEVICES:
            return text
        if text.startswith("/"):
            host = self.tree.check(self.tree.host(text), line, text)
            return str(host) + ("/" if text.endswith("/") and text != "/" else "")
        if text.startswith("-"):
            option, equals, value = text.partition("=")
            return f"{option}={self._rewrite_arg(value, cwd, line)}" if equals and value else text
        if path or "/" in text or text == "..":
            self.tree.check(cwd / text, line, text)
        return text

    def _host_path(self, text: str, cwd: Path, line: int) -> Path:
        """A path argument as a path in the work tree (absolute: from its root; relative: from ``cwd``)."""
        path = self.tree.host(text) if text.startswith("/") else cwd / text
        return self.tree.check(path, line, text)

    def _ln_args(self, args: list[str], cwd: Path, line: int) -> list[str]:
        """``ln -s TARGET LINK``: an absolute target becomes relative to the link, so the tree can move."""
        positions = [index for index, arg in enumerate(args) if not arg.startswith("-")]
        symbolic = "--symbolic" in args or any(re.fullmatch(r"-[a-zA-Z]*s[a-zA-Z]*", arg) for arg in args)
        if not symbolic or len(positions) != 2:
            return [self._rewrite_arg(arg, cwd, line) for arg in args]
        out = list(args)
        target, link = (args[index] for index in positions)
        link_path = self._host_path(link, cwd, line)
        base = link_path if link_path.is_dir() else link_path.parent
        if target.startswith("/"):
            host = self.tree.check(self.tree.host(target), line, target)
            out[positions[0]] = os.path.relpath(host, base)
        else:
            self.tree.check(base / target, line, target)
        out[positions[1]] = self._rewrite_arg(link, cwd, line)
        return out


def positional_args(args: list[str], value_options: frozenset[str]) -> list[str]:
    """The arguments that are not options (nor the values of options that take one)."""
    out, index = [], 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("-"):
            index += 2 if arg in value_options else 1
        else:
            out.append(arg)
            index += 1
    return out


def _argument_roles(name: str, args: list[str]) -> list[str]:
    """For each argument of an allowed command: "path" (checked, rewritten) or "text" (left alone)."""
    if name == "echo":
        return ["text"] * len(args)
    roles = ["path"] * len(args)
    if name == "sed":
        _sed_roles(args, roles)
    elif PYTHON.fullmatch(name) or name == "node":
        code_options = ("-c", "-m") if name != "node" else ("-e", "--eval", "-p", "--print")
        for index, arg in enumerate(args[:-1]):
            if arg in code_options:
                roles[index + 1] = "text"
                break
    return roles


def _sed_roles(args: list[str], roles: list[str]) -> None:
    """sed scripts (``-e SCRIPT`` or the first operand) are text; the files after them are paths."""
    script_given = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-e", "--expression") and index + 1 < len(args):
            roles[index + 1] = "text"
            script_given = True
            index += 2
            continue
        if arg.startswith("--expression="):
            roles[index] = "text"
            script_given = True
        elif arg == "-f" and index + 1 < len(args):
            script_given = True
            index += 2
            continue
        elif not arg.startswith("-") and not script_given:
            roles[index] = "text"
            script_given = True
        index += 1
