"""`alerts`: rules on a component's metrics that call a webhook when they fire and when they resolve."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer
from rich.markup import escape

from cellplane.cli import charts
from cellplane.cli.app import app, state
from cellplane.cli.client import CliError
from cellplane.cli.commands_builds import component_path
from cellplane.cli.commands_deploy import ENV, OUTPUT, PROJECT
from cellplane.cli.output import Format, age, dump, err, out, table

alerts = typer.Typer(help="Alert rules: call a webhook when a component's error rate, latency, restarts or failed "
                     "task runs stay above a threshold.", no_args_is_help=True)
app.add_typer(alerts, name="alerts")

PERCENTILES = (50, 95, 99)
SIGNING = ("each notification is a POST with headers X-Cellplane-Timestamp (unix seconds) and X-Cellplane-Signature: "
           "sha256=<hex HMAC-SHA256 with this secret of: timestamp + '.' + body>")


class Metric(StrEnum):
    error_rate = "error-rate"
    latency = "latency"
    crash_loop = "crash-loop"
    task_failures = "task-failures"


class RuleState(StrEnum):
    ok = "ok"
    pending = "pending"
    firing = "firing"


def _alerts(st: Any) -> str:
    return f"/organizations/{st.org}/alerts"


def value_text(metric: str | None, value: float | None) -> str:
    """A value of a rule's metric with its unit: 5%, 300ms, 3 restarts, 1 failed run."""
    if value is None:
        return "-"
    if metric == "error-rate":
        return f"{charts.number(value, 1)}%"
    if metric == "latency":
        return f"{charts.number(value, 0)}ms"
    return charts.number(value, 0)


def condition(r: dict[str, Any]) -> str:
    """'error-rate > 5% over 1m for 5m', 'p95 latency > 300ms over 1m', 'restarts > 3 over 10m'."""
    metric = r.get("metric")
    what = {"latency": f"p{r.get('percentile') or 95} latency", "crash-loop": "restarts",
            "task-failures": "failed runs"}.get(metric or "", metric or "?")
    text = f"{what} > {value_text(metric, r.get('threshold'))} over {charts.compact(r.get('window'))}"
    held = charts.compact(r.get("for"))
    return text if held in ("0s", "0", "-") else f"{text} for {held}"


def _state(r: dict[str, Any]) -> str:
    s = r.get("state") or "-"
    return {"firing": "[red]firing[/]", "pending": "[yellow]pending[/]", "ok": "[green]ok[/]"}.get(s, escape(s))


# -- create ----------------------------------------------------------------------------------------------------


@alerts.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="a name for the rule"),
    component: str = typer.Option(..., "--component", "-c", help="the component it watches"),
    project: str = PROJECT,
    env: str = ENV,
    metric: Metric = typer.Option(..., "--metric", "-m", help="error-rate (percent of requests with status >= 500), "
                                  "latency (ms), crash-loop (restarts in the window), task-failures (failed runs "
                                  "in the window)"),
    threshold: float = typer.Option(..., "--threshold", "-t", min=0,
                                    help="fires when the value is above it: percent, ms or a count"),
    percentile: int = typer.Option(None, "--percentile", help="latency only: 50, 95 or 99 [default: 95]"),
    window: str = typer.Option("1m", "--window", help="the value is computed over this trailing window (10s..1d)"),
    for_: str = typer.Option(None, "--for", help="fires once the condition held this long (0s..1d) "
                             "[default: 0s, at the first breach]"),
    webhook: str = typer.Option(..., "--webhook", help="http(s) URL that receives a POST when it fires and "
                                "when it resolves"),
    output: Format = OUTPUT,
) -> None:
    """Create an alert rule on a component in an environment; prints its webhook secret, once."""
    st = state(ctx)
    if percentile is not None and metric != Metric.latency:
        raise CliError("--percentile applies to --metric latency only")
    if percentile is not None and percentile not in PERCENTILES:
        raise CliError(f"--percentile: give 50, 95 or 99, not {percentile}")
    if not webhook.startswith(("http://", "https://")):
        raise CliError(f"--webhook: give an http:// or https:// URL, not '{webhook}'")
    body: dict[str, Any] = {
        "name": name, "environment": env, "metric": metric.value,
        "threshold": int(threshold) if threshold.is_integer() else threshold,
        "window": charts.duration(window, "--window"), "webhook": webhook}
    if for_ is not None:
        body["for"] = charts.duration(for_, "--for")
    if percentile is not None:
        body["percentile"] = percentile
    rule = st.client.post(component_path(st, project, component) + "/alerts", body)
    if output != Format.table:
        dump(rule, output)
        err.print("the webhookSecret is shown only now; " + escape(SIGNING))
        return
    out.print(f"alert {escape(rule.get('id') or '')} created: {escape(rule.get('name') or name)}: "
              f"{escape(condition(rule))} on {escape(_where(rule))}")
    out.print(f"webhook: {escape(rule.get('webhook') or webhook)}")
    out.print(f"webhook secret: [bold]{escape(rule.get('webhookSecret') or '')}[/]")
    out.print("[yellow]the secret is shown only now: keep it to check notifications.[/] " + escape(SIGNING))
    out.print(f"try it: cellplane alerts test {escape(rule.get('id') or '')}")


def _where(r: dict[str, Any]) -> str:
    return f"{r.get('project')}/{r.get('component')} in {r.get('environment')}"


# -- list, show, history -----------------------------------------------------------------------------------------

COLUMNS = [("ID", lambda r: r.get("id")), ("NAME", lambda r: r.get("name")),
           ("COMPONENT", lambda r: f"{r.get('project')}/{r.get('component')}"),
           ("ENV", lambda r: r.get("environment")), ("CONDITION", condition), ("STATE", lambda r: r.get("state")),
           ("SINCE", lambda r: age(r.get("since")) or None),
           ("VALUE", lambda r: value_text(r.get("metric"), r.get("value")))]


@alerts.command("list")
def list_(
    ctx: typer.Context,
    project: str = typer.Option(None, "--project", "-p", help="only this project"),
    component: str = typer.Option(None, "--component", "-c", help="only this component (of --project, or of the "
                                  "context's project)"),
    env: str = typer.Option(None, "--env", "-e", help="only this environment"),
    state_: RuleState = typer.Option(None, "--state", help="only rules in this state"),
    output: Format = OUTPUT,
) -> None:
    """Alert rules of the organization (or of a project or component), with their state now."""
    st = state(ctx)
    if component:
        items = st.client.get(component_path(st, project, component) + "/alerts", environment=env)["items"]
        items = [r for r in items if state_ is None or r.get("state") == state_]
    else:
        items = st.client.get(_alerts(st), project=project, environment=env, state=state_)["items"]
    if output != Format.table:
        return dump({"items": items}, output)
    table(items, COLUMNS, empty="No alert rules." + ("" if state_ else
                                                     " Create one: cellplane alerts create NAME -c COMPONENT ..."))


@alerts.command("show")
def show(ctx: typer.Context, rule_id: str = typer.Argument(..., metavar="ID"), output: Format = OUTPUT) -> None:
    """One alert rule: its condition, state and webhook."""
    st = state(ctx)
    r = st.client.get(f"{_alerts(st)}/{rule_id}")
    if output != Format.table:
        return dump(r, output)
    out.print(f"[bold]{escape(r.get('id') or rule_id)}[/]  {escape(r.get('name') or '')}")
    since = f" since {charts.when(r.get('since'))} ({age(r.get('since'))})" if r.get("since") else ""
    for key, value in (("component", escape(_where(r))), ("condition", escape(condition(r))),
                       ("state", _state(r) + escape(since)),
                       ("value", escape(value_text(r.get("metric"), r.get("value")))),
                       ("webhook", escape(r.get("webhook") or "-")),
                       ("created", escape(f"{charts.when(r.get('createdAt'))} by {r.get('createdBy') or '-'}"))):
        out.print(f"  {key:<10} {value}")
    out.print(f"  [dim]history: cellplane alerts history {escape(r.get('id') or rule_id)}[/]")


@alerts.command("history")
def history(ctx: typer.Context, rule_id: str = typer.Argument(..., metavar="ID"),
            limit: int = typer.Option(20, "--limit", min=1, max=1000), output: Format = OUTPUT) -> None:
    """When an alert rule fired and resolved, newest first, and whether its webhook got the notification."""
    st = state(ctx)
    answer = st.client.get(f"{_alerts(st)}/{rule_id}/events", limit=limit)
    if output != Format.table:
        return dump(answer, output)
    rule = st.client.get(f"{_alerts(st)}/{rule_id}")
    metric = rule.get("metric")
    out.print(f"[bold]{escape(rule.get('id') or rule_id)}[/]  {escape(rule.get('name') or '')}: "
              f"{escape(condition(rule))} on {escape(_where(rule))}, now {_state(rule)}")
    table(answer.get("items") or [], [
                  ("STATE", lambda e: e.get("state")), ("FIRED", lambda e: charts.when(e.get("firedAt"))),
                  ("RESOLVED", lambda e: charts.when(e.get("resolvedAt")) if e.get("resolvedAt") else None),
                  ("VALUE", lambda e: value_text(metric, e.get("value"))),
                  ("DELIVERY", lambda e: delivery(e.get("delivery") or {})),
                  ("MESSAGE", lambda e: e.get("message") or None)],
          empty=f"{rule_id} has not fired yet.")


def delivery(d: dict[str, Any]) -> str:
    attempts = d.get("attempts") or 0
    text = f"{d.get('state') or '-'}" + (f" ({attempts} attempt{'s' if attempts != 1 else ''})" if attempts else "")
    return text + (f": {d['lastError']}" if d.get("lastError") and d.get("state") != "delivered" else "")


# -- delete, test ------------------------------------------------------------------------------------------------


@alerts.command("delete")
def delete(ctx: typer.Context, rule_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Delete an alert rule and its history."""
    st = state(ctx)
    st.client.delete(f"{_alerts(st)}/{rule_id}")
    out.print(f"alert {escape(rule_id)} deleted")


@alerts.command("test")
def test(ctx: typer.Context, rule_id: str = typer.Argument(..., metavar="ID"), output: Format = OUTPUT) -> None:
    """Send a test notification to the rule's webhook now (signed like the real ones); exit 1 if not delivered."""
    st = state(ctx)
    result = st.client.post(f"{_alerts(st)}/{rule_id}/test", {})
    if output != Format.table:
        dump(result, output)
    elif result.get("delivered"):
        out.print(f"test notification of {escape(rule_id)} delivered"
                  + (f" (HTTP {result['status']})" if result.get("status") is not None else ""))
    else:
        why = result.get("error") or (f"HTTP {result['status']}" if result.get("status") is not None else "")
        err.print(f"[red]test notification of {escape(rule_id)} not delivered[/]" + (f": {escape(why)}" if why else ""))
    if not result.get("delivered"):
        raise typer.Exit(1)
