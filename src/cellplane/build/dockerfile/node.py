"""RUN npm ci / npm install / yarn: the package.json in the current directory installed through ``hooks.npm``."""

from __future__ import annotations

from pathlib import Path

from cellplane.build.dockerfile.parsing import fail
from cellplane.build.dockerfile.shell import ShellCommands, positional_args
from cellplane.build.dockerfile.stage import NodeInstall
from cellplane.build.dockerfile.words import Command

_NPM_VALUE_OPTIONS = frozenset({"--loglevel", "--registry", "--cache", "--omit", "--include", "--prefix", "-w"})
_YARN_VALUE_OPTIONS = frozenset({"--network-timeout", "--cache-folder", "--modules-folder", "--registry"})


class NodeInstalls(ShellCommands):
    """RUN npm and yarn."""

    def _npm(self, command: Command, cwd: Path, env: dict[str, str], line: int) -> None:
        self._require("npm", "node", line)
        args = [word.text for word in command.words[1:]]
        positional = positional_args(args, _NPM_VALUE_OPTIONS)
        subcommand = positional[0] if positional else ""
        if subcommand in ("ci", "clean-install", "install", "i", "add"):
            what = f"npm {subcommand}"
            self._node_install(
                what, args, positional[1:], cwd, line, lock_required=subcommand in ("ci", "clean-install")
            )
        elif subcommand in ("run", "run-script"):
            self._shell(command, cwd, env, line)
        elif subcommand in ("cache", "prune"):
            self._note(f"RUN npm {subcommand} (line {line}) skipped")
        else:
            raise fail(
                line,
                f"RUN npm {subcommand} is not supported without Docker (supported: npm ci, npm install, npm run)",
            )

    def _yarn(self, command: Command, cwd: Path, env: dict[str, str], line: int) -> None:
        self._require("yarn", "node", line)
        args = [word.text for word in command.words[1:]]
        positional = positional_args(args, _YARN_VALUE_OPTIONS)
        subcommand = positional[0] if positional else "install"
        if subcommand in ("install", "add", "global"):
            what = "yarn " + subcommand if positional else "yarn"
            self._node_install(what, args, positional[1:], cwd, line, lock_required=False)
        elif subcommand in ("build", "run"):
            self._shell(command, cwd, env, line)
        elif subcommand == "cache":
            self._note(f"RUN yarn cache (line {line}) skipped")
        else:
            raise fail(
                line,
                f"RUN yarn {subcommand} is not supported without Docker "
                "(supported: yarn install, yarn build, yarn run)",
            )

    def _node_install(
        self, what: str, args: list[str], packages: list[str], cwd: Path, line: int, *, lock_required: bool
    ) -> None:
        """``npm ci`` / ``npm install`` / ``yarn``: the dependencies of the package.json in ``cwd``."""
        if any(arg in ("-g", "--global") or arg.startswith("--global=") for arg in args):
            raise fail(line, f"RUN {what} -g installs globally, which is not supported without Docker")
        if packages or what.endswith((" add", " global")):
            raise fail(
                line,
                f"RUN {what} {' '.join(packages)} installs named packages, which is not supported without Docker; "
                "declare them in package.json",
            )
        image = self.tree.image(cwd)
        if not (cwd / "package.json").is_file():
            raise fail(line, f"RUN {what}: there is no package.json in {image} at this point (COPY it first)")
        locked = (cwd / "package-lock.json").is_file() or (cwd / "npm-shrinkwrap.json").is_file()
        if lock_required and not locked:
            raise fail(line, f"RUN {what} needs a package-lock.json in {image}")
        kind: NodeInstall = "ci" if locked else "install"
        options = [arg for arg in args if arg.startswith("-")]
        if options:
            self._note(f"RUN {what} (line {line}): options {' '.join(options)} ignored")
        if what.startswith("yarn") and (cwd / "yarn.lock").is_file():
            self._note(f"RUN {what} (line {line}) runs as npm {kind}: yarn.lock is not used")
        self.node_install = kind
        self.hooks.npm(cwd, kind, line)
