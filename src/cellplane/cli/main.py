"""Entry point of the ``cellplane`` command: errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys

import click

from cellplane.cli import commands_admin, commands_resources, commands_server  # noqa: F401  (registers commands)
from cellplane.cli.app import app
from cellplane.cli.client import CliError
from cellplane.errors import CellplaneError


def main() -> None:
    try:
        app(standalone_mode=False)
    except CliError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.code)
    except CellplaneError as e:
        details = "; ".join(f"{d.field}: {d.problem}" for d in e.details)
        click.echo(f"error: {e.message}" + (f": {details}" if details else ""), err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # the last line of defence: still one line, never a traceback
        click.echo(f"error: unexpected {type(e).__name__}: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
