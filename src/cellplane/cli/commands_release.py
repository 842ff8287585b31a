"""`promote`, `rollback`, `releases`, `diff`, `approvals`, `approve`, `reject` and `preview`."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.markup import escape

from cellplane.cli.app import app, state
from cellplane.cli.commands_builds import component_path
from cellplane.cli.commands_deploy import DONE, OUTPUT, PROJECT, TRACK, follow, pending
from cellplane.cli.output import Format, age, dump, err, out, table

TIMEOUT = typer.Option(300, "--timeout", min=1, help="seconds to wait for the release to be ready")
NO_WAIT = typer.Option(False, "--no-wait", help="return once the change is recorded")


def _outcome(st: Any, path: str, outcome: dict[str, Any], *, timeout: float, no_wait: bool, output: Format,
             verb: str) -> None:
    if outcome["action"] == "pending":
        return pending(outcome, output)
    dep = outcome["deployment"]
    if outcome["action"] == "unchanged":
        if output != Format.table:
            return dump(outcome, output)
        out.print(f"{dep['component']} already runs release {outcome['release']} in {dep['environment']}: "
                  "nothing changed")
        return
    follow(st, path, dep, timeout=timeout, no_wait=no_wait, output=output, verb=verb)


@app.command()
def promote(
    ctx: typer.Context,
    component: str = typer.Argument(..., help="component to promote"),
    source: str = typer.Option(..., "--from", help="environment it runs in, e.g. development"),
    target: str = typer.Option(..., "--to", help="environment to promote to (along the project's pipeline)"),
    track: str = TRACK,
    project: str = PROJECT,
    no_wait: bool = NO_WAIT,
    timeout: int = TIMEOUT,
    output: Format = OUTPUT,
) -> None:
    """Promote the release running in --from to --to: the same artifact, with --to's configuration.

    Only along a promotion path of the project's pipeline. Into an environment that requires approval, this makes
    an approval request that someone else approves (cellplane approve ID)."""
    st = state(ctx)
    path = component_path(st, project, component)
    body: dict[str, Any] = {"from": source, "to": target}
    if track:
        body["track"] = track
    _outcome(st, path, st.client.post(path + "/promotions", body), timeout=timeout, no_wait=no_wait, output=output,
             verb="promoting")


@app.command()
def rollback(
    ctx: typer.Context,
    component: str = typer.Argument(..., help="component to roll back"),
    env: str = typer.Option(..., "--env", "-e", help="environment"),
    to: str = typer.Option(None, "--to", help="a release that ran there (default: the one before the current one)"),
    track: str = TRACK,
    project: str = PROJECT,
    no_wait: bool = NO_WAIT,
    timeout: int = TIMEOUT,
    output: Format = OUTPUT,
) -> None:
    """Run an earlier release of COMPONENT again in an environment: its artifact and configuration come back."""
    st = state(ctx)
    path = component_path(st, project, component)
    body = {k: v for k, v in (("to", to), ("track", track)) if v}
    _outcome(st, path, st.client.post(f"{path}/deployments/{env}/rollback", body), timeout=timeout,
             no_wait=no_wait, output=output, verb="rolling back")


@app.command()
def releases(
    ctx: typer.Context,
    component: str = typer.Argument(...),
    env: str = typer.Option(None, "--env", "-e", help="only this environment"),
    track: str = TRACK,
    project: str = PROJECT,
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
    output: Format = OUTPUT,
) -> None:
    """The release history of COMPONENT, newest first: which release ran where, who put it there, when and how.
    The release each environment runs now is marked with '*'."""
    st = state(ctx)
    params: dict[str, Any] = {"limit": limit}
    if env:
        params["environment"] = env
    if track:
        params["track"] = track
    items = st.client.get(component_path(st, project, component) + "/releases", **params)["items"]
    if output != Format.table:
        return dump(items, output)
    table(items, [("", lambda e: "*" if e["current"] else ""), ("RELEASE", lambda e: e["release"]),
                  ("ENVIRONMENT", lambda e: e["environment"]), ("TRACK", lambda e: e["track"]),
                  ("ACTION", lambda e: e["action"]), ("BUILD", lambda e: _number(e["build"])),
                  ("ARTIFACT", lambda e: (e.get("artifact") or "")[:19]), ("BY", lambda e: e["actor"]),
                  ("AGE", lambda e: age(e["at"])), ("NOTE", lambda e: e["note"])],
          empty=f"{component} has no releases yet: cellplane deploy {component} --env development")


def _number(build: dict[str, Any]) -> str:
    return f"#{build['number']}" if build.get("number") is not None else (build.get("id") or "-")


@app.command()
def diff(ctx: typer.Context, release_a: str = typer.Argument(..., metavar="RELEASE_A"),
         release_b: str = typer.Argument(..., metavar="RELEASE_B"), output: Format = OUTPUT) -> None:
    """What changes from RELEASE_A to RELEASE_B: artifact, spec fields and configuration keys (a secret's value is
    never shown, only that it changed)."""
    st = state(ctx)
    d = st.client.get(f"/organizations/{st.org}/releases/{release_a}/diff/{release_b}")
    if output != Format.table:
        return dump(d, output)
    out.print(f"[bold]{escape(d['from'])} → {escape(d['to'])}[/]")
    if not (d.get("artifact") or d.get("environment") or d["spec"] or d["configuration"]):
        out.print("  no differences")
    if d.get("environment"):
        out.print(escape(f"  environment  {d['environment']['from']} → {d['environment']['to']}"))
    if d.get("artifact"):
        out.print(escape(f"  artifact     {d['artifact']['from']} → {d['artifact']['to']}"))
    for change in d["spec"]:
        out.print(escape(f"  {change['path']}: {_short(change.get('from'))} → {_short(change.get('to'))}"))
    for c in d["configuration"]:
        key = f"configuration {c['key']}"
        if c["secret"]:
            out.print(escape(f"  {key}: secret {c['change']} (value not shown)"))
        elif c["change"] == "changed":
            out.print(escape(f"  {key}: {_short(c.get('from'))} → {_short(c.get('to'))}"))
        else:
            out.print(escape(f"  {key}: {c['change']}" + (f" ({_short(c.get('to', c.get('from')))})")))


def _short(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- approvals ------------------------------------------------------------------------------------------------------


@app.command()
def approvals(ctx: typer.Context,
              all_: bool = typer.Option(False, "--all", help="every request, not only pending ones"),
              project: str = typer.Option(None, "--project", "-p", help="only this project"),
              output: Format = OUTPUT) -> None:
    """Approval requests (pending ones by default), newest first."""
    st = state(ctx)
    params: dict[str, Any] = {"state": "all" if all_ else "pending"}
    if project:
        params["project"] = project
    items = st.client.get(f"/organizations/{st.org}/approvals", **params)["items"]
    if output != Format.table:
        return dump(items, output)
    table(items, [("ID", lambda a: a["id"]), ("STATE", lambda a: a["state"]),
                  ("COMPONENT", lambda a: f"{a['project']}/{a['component']}"),
                  ("TO", lambda a: a["environment"]), ("FROM", lambda a: a.get("from")),
                  ("RELEASE", lambda a: a["release"]), ("REQUESTED BY", lambda a: a["requestedBy"]),
                  ("AGE", lambda a: age(a["requestedAt"])),
                  ("DECIDED BY", lambda a: a.get("decidedBy")), ("REASON", lambda a: a.get("reason") or None)],
          empty="No pending approval requests." if not all_ else "No approval requests.")


@app.command()
def approve(ctx: typer.Context, approval: str = typer.Argument(..., metavar="ID"), no_wait: bool = NO_WAIT,
            timeout: int = TIMEOUT, output: Format = OUTPUT) -> None:
    """Approve a pending request: its release runs in the environment (not your own request)."""
    st = state(ctx)
    outcome = st.client.post(f"/organizations/{st.org}/approvals/{approval}/approve", {})
    dep = outcome.get("deployment") or {}
    err.print(f"approved {approval}: release {outcome['release']} of {dep.get('component')} in "
              f"{dep.get('environment')}")
    path = f"/organizations/{st.org}/projects/{dep.get('project')}/components/{dep.get('component')}"
    _outcome(st, path, outcome, timeout=timeout, no_wait=no_wait, output=output, verb="deploying")


@app.command()
def reject(ctx: typer.Context, approval: str = typer.Argument(..., metavar="ID"),
           reason: str = typer.Option(..., "--reason", help="why (the requester sees it)"),
           output: Format = OUTPUT) -> None:
    """Reject a pending request; nothing runs."""
    st = state(ctx)
    a = st.client.post(f"/organizations/{st.org}/approvals/{approval}/reject", {"reason": reason})
    if output != Format.table:
        return dump(a, output)
    out.print(f"rejected {a['id']}: release {a['release']} of {a['project']}/{a['component']} does not go to "
              f"{a['environment']}")


# -- previews -------------------------------------------------------------------------------------------------------

preview = typer.Typer(help="Preview environments: a project's components built from a branch, with their own URLs.",
                      no_args_is_help=True)
app.add_typer(preview, name="preview")
PREVIEW_PROJECT = typer.Option(..., "--project", "-p", help="the project")
BRANCH = typer.Option(..., "--branch", "-b", help="the git branch")


@preview.command("create")
def preview_create(ctx: typer.Context, project: str = PREVIEW_PROJECT, branch: str = BRANCH,
                   no_wait: bool = NO_WAIT,
                   timeout: int = typer.Option(900, "--timeout", min=1, help="seconds to wait for builds and deploys"),
                   output: Format = OUTPUT) -> None:
    """Build the project's components from BRANCH and deploy them into an environment of their own."""
    st = state(ctx)
    base = f"/organizations/{st.org}/projects/{project}/previews"
    p = st.client.post(base, {"branch": branch})
    err.print(f"preview environment {p['environment']}: building {len(p['builds'])} component(s) from {branch}")
    for b in p["builds"]:
        if b.get("skipped"):
            err.print(escape(f"  {b['component']}: skipped ({b['skipped']})"))
    if not no_wait:
        p = _wait_preview(st, base, p, timeout)
    if output != Format.table:
        return dump(p, output)
    _show_preview(p)
    failed = [b for b in p["builds"] if b.get("state") in ("failed", "cancelled", "timed-out")]
    broken = [d for d in p["deployments"] if d["state"] in ("failed", "crash-loop", "blocked")]
    if not no_wait and (failed or broken):
        raise typer.Exit(1)


def _wait_preview(st: Any, base: str, p: dict[str, Any], timeout: float) -> dict[str, Any]:
    start = time.monotonic()
    with err.status("preview: building") as status:
        while time.monotonic() - start < timeout:
            p = st.client.get(base, branch=p["branch"])["items"][0]
            builds = [b for b in p["builds"] if not b.get("skipped")]
            running = [b for b in builds if b.get("state") in ("queued", "running")]
            deployed = {d["component"]: d for d in p["deployments"]}
            waiting = [b for b in builds if b.get("state") == "succeeded" and
                       (deployed.get(b["component"]) or {}).get("state") not in (*DONE, "failed", "crash-loop",
                                                                                  "blocked")]
            status.update(f"preview {p['environment']}: {len(running)} building, {len(waiting)} deploying  "
                          f"[dim]{time.monotonic() - start:.0f}s[/]")
            if not running and not waiting:
                return p
            time.sleep(1)
    err.print(f"stopped waiting after {timeout:g}s; it goes on: cellplane preview list -p {p['project']}")
    return p


def _show_preview(p: dict[str, Any]) -> None:
    out.print(f"Preview [bold]{escape(p['environment'])}[/] of {escape(p['project'])} at branch "
              f"{escape(p['branch'])}")
    builds = {b["component"]: b for b in p["builds"]}
    for d in p["deployments"]:
        urls = [u for e in d.get("endpoints") or [] for u in (e["urls"].get("external"), e["urls"].get("project"))
                if u][:1]
        out.print(escape(f"  {d['component']:<20} {d['state']:<12} {urls[0] if urls else ''}"))
    for name, b in builds.items():
        if name not in {d["component"] for d in p["deployments"]}:
            shown = "skipped" if b.get("skipped") else b.get("state")
            out.print(escape(f"  {name:<20} {shown:<12} "
                             f"{b.get('skipped') or b.get('error') or ''}"))
    out.print(f"remove it: cellplane preview delete -p {escape(p['project'])} -b {escape(p['branch'])}")


@preview.command("list")
def preview_list(ctx: typer.Context, project: str = PREVIEW_PROJECT, output: Format = OUTPUT) -> None:
    st = state(ctx)
    items = st.client.get(f"/organizations/{st.org}/projects/{project}/previews")["items"]
    if output != Format.table:
        return dump(items, output)
    table(items, [("ENVIRONMENT", lambda p: p["environment"]), ("BRANCH", lambda p: p["branch"]),
                  ("DEPLOYMENTS", lambda p: len(p["deployments"])), ("BY", lambda p: p["createdBy"]),
                  ("AGE", lambda p: age(p["createdAt"]))], empty="No preview environments.")


@preview.command("delete")
def preview_delete(ctx: typer.Context, project: str = PREVIEW_PROJECT, branch: str = BRANCH) -> None:
    """Remove a preview environment and everything it created: deployments, releases, builds, the environment."""
    st = state(ctx)
    result = st.client.delete(f"/organizations/{st.org}/projects/{project}/previews", branch=branch)
    for item in result.get("deleted") or []:
        out.print(f"{escape(item)} deleted")
