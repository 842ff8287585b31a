"""ENTRYPOINT and CMD combined as Docker does, as one shell command line relative to the workdir."""

from __future__ import annotations

import posixpath
import re
import shlex

from cellplane.build.dockerfile.stage import StageBuilder
from cellplane.build.dockerfile.tree import HOST_DEVICES, image_abspath

_SHELL_PATH = re.compile(r"(?<![^\s='\"])/[^\s'\";&|<>()`]*")


class StartCommand(StageBuilder):
    """The start command of the stage, from its ENTRYPOINT and CMD."""

    def _start_argv(self) -> list[str]:
        """The start command's words (a shell form counts as its words), for telling what it runs."""
        argv: list[str] = []
        for form in (self.entrypoint, self.cmd):
            if form is not None:
                argv += form.argv if form.argv is not None else form.shell.split()
        return argv

    def _start_command(self) -> str | None:
        """ENTRYPOINT and CMD combined as Docker does, as one shell command line."""
        entrypoint, cmd = self.entrypoint, self.cmd
        if entrypoint is not None and entrypoint.argv is None:
            if cmd is not None:
                self._note("CMD ignored: a shell-form ENTRYPOINT does not take CMD arguments")
            return self._rewrite_shell_line(entrypoint.shell)
        argv = list(entrypoint.argv) if entrypoint is not None and entrypoint.argv is not None else []
        if cmd is not None and cmd.argv is None:
            if not argv:
                return self._rewrite_shell_line(cmd.shell)
            argv += ["/bin/sh", "-c", cmd.shell]
        elif cmd is not None and cmd.argv is not None:
            argv += cmd.argv
        if not argv:
            return None
        if len(argv) >= 3 and posixpath.basename(argv[0]) in ("sh", "bash") and argv[1] == "-c":
            argv[2] = self._rewrite_shell_line(argv[2])
        return shlex.join([self._start_arg(arg, executable=index == 0) for index, arg in enumerate(argv)])

    def _start_arg(self, text: str, *, executable: bool) -> str:
        """An absolute image path into the tree, relative to the workdir (``./x`` for a program)."""
        if text.startswith("-") and "=" in text:
            option, _, value = text.partition("=")
            return f"{option}={self._start_arg(value, executable=False)}"
        if not text.startswith("/") or text in HOST_DEVICES or not self.tree.points_into(text):
            return text
        rel = posixpath.relpath(image_abspath(text), self.workdir)
        return "./" + rel if executable and "/" not in rel and rel != "." else rel

    def _rewrite_shell_line(self, line: str) -> str:
        def replace(match: re.Match[str]) -> str:
            rewritten = self._start_arg(match.group(), executable=True)
            return match.group() if rewritten == match.group() else shlex.quote(rewritten)

        return _SHELL_PATH.sub(replace, line.strip())

    def _env_path_notes(self) -> None:
        for name, value in self.env.items():
            for piece in value.split(":"):
                if piece.startswith("/") and self.tree.points_into(piece):
                    self._note(f"ENV {name} names the image path {piece}; the work tree is not at / when the app runs")
                    break
