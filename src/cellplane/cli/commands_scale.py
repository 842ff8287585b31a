"""`scale`: a component's scaling in one environment (spec.scaling.environments.<env>, see docs/scaling.md)."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from cellplane.cli import charts
from cellplane.cli.app import app, state
from cellplane.cli.client import CliError
from cellplane.cli.commands_builds import component_path
from cellplane.cli.output import Format, dump, out, scaling_range, table

OUTPUT = typer.Option(Format.table, "-o", "--output", help="table, json or yaml")


def _seconds(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    seconds = charts.seconds(value)
    if seconds is None:
        raise CliError(f"{option}: give a duration like 30s or 5m, not '{value}'")
    return seconds


@app.command()
def scale(
    ctx: typer.Context,
    component: str = typer.Argument(..., help="the component to scale"),
    env: str = typer.Option(..., "--env", "-e", help="the environment whose scaling changes"),
    low: int = typer.Option(None, "--min", help="minReplicas (0: scaled to zero when idle)"),
    high: int = typer.Option(None, "--max", help="maxReplicas"),
    target: float = typer.Option(None, "--target", help="requests in flight per replica the scaler aims at"),
    rps: float = typer.Option(None, "--rps", help="requests per second per replica the scaler aims at too"),
    idle: str = typer.Option(None, "--idle", help="with --min 0: idle this long, it goes to zero (e.g. 5m)"),
    delay: str = typer.Option(None, "--delay", help="load stays low this long before replicas go (e.g. 30s)"),
    fixed: bool = typer.Option(False, "--fixed", help="no scaling in this environment: the fixed replicas run"),
    reset: bool = typer.Option(False, "--reset", help="drop this environment's settings: the component's apply"),
    project: str = typer.Option(None, "--project", "-p", help="project (default: the context's)"),
    output: Format = OUTPUT,
) -> None:
    """Set COMPONENT's scaling in one environment (spec.scaling.environments.ENV): its replica range, targets and
    idle period. Running deployments follow at once, without a new release. Without options, shows it.

    The settings not given stay as they are; --reset drops them all (the component's own scaling or the defaults
    apply again)."""
    st = state(ctx)
    path = component_path(st, project, component) + "/scaling"
    given: dict[str, Any] = {"minReplicas": low, "maxReplicas": high, "targetConcurrency": target, "targetRps": rps,
                             "idleSeconds": _seconds(idle, "--idle"),
                             "scaleDownDelaySeconds": _seconds(delay, "--delay")}
    given = {k: v for k, v in given.items() if v is not None}
    if fixed and given:
        raise CliError("--fixed runs the fixed replicas: give no other scaling option with it")
    if reset and (fixed or given):
        raise CliError("--reset drops this environment's settings: give no other scaling option with it")
    if reset:
        body: dict[str, Any] | None = {k: None for k in ("minReplicas", "maxReplicas", "targetConcurrency",
                                                         "targetRps", "idleSeconds", "scaleDownDelaySeconds",
                                                         "fixed")}
    elif fixed:
        body = {"fixed": True}
    elif given:
        body = {**given, "fixed": None}
    else:
        body = None
    answer = st.client.get(path) if body is None else st.client.request("PATCH", f"{path}/{env}", json=body)
    item = next((i for i in answer["items"] if i["environment"] == env), None)
    if item is None:
        raise CliError(f"environment '{env}' not found in organization '{st.org}'")
    if output != Format.table:
        return dump(item, output)
    if body is not None:
        out.print(escape(f"component/{component} {answer['action']} in {env}"))
    show_scaling([item])


def show_scaling(items: list[dict[str, Any]]) -> None:
    """A component's scaling per environment, as `describe component` and `scale` show it."""
    def setting(key: str, unit: str = "") -> Any:
        return lambda i: f"{i['scaling'][key]:g}{unit}" if i.get("scaling") and key in i["scaling"] else None

    table(items, [
        ("ENVIRONMENT", lambda i: i["environment"] + (" (production)" if i.get("production") and
                                                      i["environment"] != "production" else "")),
        ("REPLICAS", lambda i: scaling_range(i.get("scaling")) if i.get("scaling") else f"fixed {i.get('replicas')}"),
        ("TARGET", setting("targetConcurrency", " in flight")), ("RPS", setting("targetRps", "/s")),
        ("IDLE", lambda i: f"{i['scaling']['idleSeconds']:g}s" if i.get("scaling") and
         i["scaling"]["minReplicas"] == 0 else None),
        ("DELAY", setting("scaleDownDelaySeconds", "s")),
        ("SET HERE", lambda i: ", ".join(f"{k}={v}" for k, v in (i.get("override") or {}).items()) or None)],
        empty="No environments.")
