"""The Typer application, its global options, and the shared per-invocation state."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import typer

from cellplane.cli.client import Client, CliError
from cellplane.cli.context import Settings, resolve

if TYPE_CHECKING:  # the model (pydantic) is imported only by commands that need it: it halves the start-up time
    from cellplane.model import KindInfo

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Cellplane: an internal developer platform. "
                  "The CLI is a client of the control plane's REST API.",
                  context_settings={"help_option_names": ["-h", "--help"]})


@dataclass
class State:
    settings: Settings

    @cached_property
    def client(self) -> Client:
        return Client(self.settings.server, self.settings.token)

    @property
    def org(self) -> str:
        return self.settings.organization

    def project(self, flag: str | None, required: bool = True) -> str | None:
        project = flag or self.settings.project
        if required and not project:
            raise CliError("no project given: pass --project P (or log in with a default project)")
        return project

    def base(self, info: KindInfo, project: str | None = None) -> str:
        if info.scope == "cluster":
            return f"/{info.plural}"
        if info.scope == "organization":
            return f"/organizations/{self.org}/{info.plural}"
        if project is None:
            return f"/organizations/{self.org}/{info.plural}"
        return f"/organizations/{self.org}/projects/{project}/{info.plural}"


def state(ctx: typer.Context) -> State:
    return ctx.obj


def kind_or_fail(word: str) -> KindInfo:
    from cellplane.model import kind_info

    info = kind_info(word)
    if info is None:
        raise CliError(f"'{word}' is not a kind; use one of: organizations, projects, components, environments, "
                       "deploymentpipelines, dataplanes")
    return info


@app.callback()
def main_options(
    ctx: typer.Context,
    server: str = typer.Option(None, "--server", help="control plane URL [env: CELLPLANE_SERVER]"),
    token: str = typer.Option(None, "--token", help="API token [env: CELLPLANE_TOKEN]"),
    org: str = typer.Option(None, "--org", help="organization [env: CELLPLANE_ORG; default: default]"),
    project: str = typer.Option(None, "--project", "-p", help="default project [env: CELLPLANE_PROJECT]"),
) -> None:
    ctx.obj = State(resolve(server, token, org, project))
