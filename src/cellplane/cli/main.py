"""Entry point of the ``cellplane`` command: errors become one line on stderr and a non-zero exit.

Running ``cellplane`` (or a command group such as ``cellplane config``) without a command prints the
help on stdout and exits 2, as a usage error: no command was run.
"""

from __future__ import annotations

import contextlib
import importlib
import sys

import click
import typer

from cellplane.cli import (  # noqa: F401  (registers commands)
    commands_admin,
    commands_alerts,
    commands_builds,
    commands_dataplane,
    commands_deploy,
    commands_idp,
    commands_kubernetes,
    commands_observe,
    commands_release,
    commands_resources,
    commands_scale,
    commands_server,
)
from cellplane.cli.app import app
from cellplane.cli.client import CliError
from cellplane.errors import CellplaneError

USAGE_EXIT = 2


def _exceptions(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from click and from the copy of click that recent Typer versions vendor (``typer._click``)."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


NO_ARGS = _exceptions("NoArgsIsHelpError")
CLICK_ERRORS = _exceptions("ClickException")
EXITS = (typer.Exit, click.exceptions.Exit)
ABORTS = (typer.Abort, click.exceptions.Abort)


def _one_line(text: str) -> str:
    return " ".join(text.split())


GLOBAL_OPTIONS = ("--server", "--token", "--org")


def hoist_global_options(args: list[str]) -> list[str]:
    """Let global options follow the command too, as with kubectl: ``cellplane get projects --org acme``.

    ``login`` takes ``--server`` and ``--token`` as its own options, so its arguments stay where they are.
    """
    if "login" in args and not any(a.split("=", 1)[0] in GLOBAL_OPTIONS for a in args[:args.index("login")]):
        return args
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            if "=" in arg or i + 1 == len(args):
                front.append(arg)
                i += 1
            else:
                front += args[i:i + 2]
                i += 2
            continue
        rest.append(arg)
        i += 1
    return front + rest


def main() -> None:
    try:
        code = app(args=hoist_global_options(sys.argv[1:]), standalone_mode=False)
    except CliError as e:
        click.echo(f"error: {_one_line(str(e))}", err=True)
        sys.exit(e.code)
    except CellplaneError as e:
        details = "; ".join(f"{d.field}: {d.problem}" for d in e.details)
        click.echo(_one_line(f"error: {e.message}" + (f": {details}" if details else "")), err=True)
        sys.exit(1)
    except ABORTS:
        click.echo("aborted", err=True)
        sys.exit(130)
    except NO_ARGS as e:  # the help; Typer's rich help is printed already and leaves the message empty
        help_text = e.format_message()  # type: ignore[attr-defined]
        if help_text.strip():
            click.echo(help_text)
        sys.exit(USAGE_EXIT)
    except CLICK_ERRORS as e:  # usage errors: one line, without click's usage header
        message = _one_line(e.format_message()) or type(e).__name__  # type: ignore[attr-defined]
        click.echo(f"error: {message} (see --help)", err=True)
        sys.exit(getattr(e, "exit_code", USAGE_EXIT))
    except EXITS as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # the last line of defence: still one line, never a traceback
        click.echo(_one_line(f"error: unexpected {type(e).__name__}: {e}"), err=True)
        sys.exit(1)
    # Without standalone mode, Typer returns the exit code of ``--help`` or of a typer.Exit.
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
