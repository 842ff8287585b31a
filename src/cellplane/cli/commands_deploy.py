"""`deploy`, `undeploy`, `logs` and `run`: put builds on a data plane and look at what they do there."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import typer
from rich.markup import escape

from cellplane.cli import charts
from cellplane.cli.app import app, state
from cellplane.cli.client import CliError
from cellplane.cli.commands_builds import component_path
from cellplane.cli.output import Format, build_number, dump, endpoint_urls, err, out, replicas_ready

OUTPUT = typer.Option(Format.table, "-o", "--output", help="table (text for people), json or yaml")
PROJECT = typer.Option(None, "--project", "-p", help="project (default: the context's)")
ENV = typer.Option(..., "--env", "-e", help="environment, e.g. development")
POLL = 0.5
# The current release runs (a service), waits for its runs (a task) or for its next request (scaled to zero).
DONE = ("ready", "scheduled", "idle", "scaled-to-zero")
BLOCKED_GRACE = 2.0  # a blocked state that may clear by itself (e.g. the release is still being resolved)
HTTP_TYPES = ("REST", "GraphQL")
SLOW = "not ready after "  # how the data plane reports a release past its progress deadline (dataplane/workload.py)
RUN_DONE = ("succeeded", "failed")


# -- deploy ----------------------------------------------------------------------------------------------------


TRACK = typer.Option(None, "--track", "-t", help="deployment track (default: the build's, or the only one there)")


@app.command()
def deploy(
    ctx: typer.Context,
    component: str = typer.Argument(..., help="component to deploy"),
    env: str = ENV,
    build: str = typer.Option(None, "--build", "-b",
                              help="build id, or its number (#3); default: the latest succeeded build (of the track)"),
    track: str = TRACK,
    project: str = PROJECT,
    no_wait: bool = typer.Option(False, "--no-wait", help="return once the deployment is recorded"),
    timeout: int = typer.Option(300, "--timeout", min=1, help="seconds to wait for the release to be ready"),
    output: Format = OUTPUT,
) -> None:
    """Deploy a build of COMPONENT to an environment and wait until it runs there.

    A release is made of the build's artifact, the component's spec and the environment's configuration. Into an
    environment that requires approval (production, by default) this makes an approval request instead.
    Ends with the endpoints' URLs, or with the reason it does not run and its last log lines (exit 1)."""
    st = state(ctx)
    path = component_path(st, project, component)
    body = {"environment": env}
    if build:
        body["build"] = _build_id(st, path, build)
    if track:
        body["track"] = track
    answer = st.client.post(path + "/deployments", body)
    if "action" in answer:  # an approval request (202), not a deployment
        return pending(answer, output)
    follow(st, path, answer, timeout=timeout, no_wait=no_wait, output=output, verb="deploying")


def pending(outcome: dict[str, Any], output: Format) -> None:
    """An approval request was made: say who must do what."""
    if output != Format.table:
        return dump(outcome, output)
    a = outcome["approval"]
    out.print(f"{a['environment']} requires approval: request {a['id']} for release {outcome['release']} of "
              f"{a['component']} is pending")
    out.print(f"an approver (not you) runs: cellplane approve {a['id']}   "
              f"(or: cellplane reject {a['id']} --reason ...)")


def follow(st: Any, path: str, dep: dict[str, Any], *, timeout: float, no_wait: bool, output: Format,
           verb: str) -> None:
    """Wait for a deployment's release to run, then print its URLs, or why it does not run (exit 1)."""
    component, env = dep["component"], dep["environment"]
    track = dep.get("track") or "default"
    where = f"{component} --env {env} -p {dep.get('project') or ''}"
    if no_wait:
        if output != Format.table:
            return dump(dep, output)
        out.print(f"deployment of {component} (release {dep.get('release')}, build {build_number(dep)}) to {env} "
                  f"recorded; watch it with: cellplane get deployments {where}")
        return
    err.print(f"{verb} {component} (build {build_number(dep)}, release {dep.get('release')}) to {env} "
              f"on data plane {dep.get('dataPlane') or '-'}")
    url = f"{path}/deployments/{env}?track={quote(track, safe='')}"
    try:
        final, reason = _wait(st, url, dep, timeout)
    except KeyboardInterrupt:
        err.print(f"stopped waiting; the deployment goes on: cellplane get deployments {where}")
        raise typer.Exit(130) from None
    if reason is None:
        if output != Format.table:
            return dump(final, output)
        _deployed(final, where)
        return
    show_failure(st, path, final, reason, where)
    if output != Format.table:
        dump(final, output)
    raise typer.Exit(1)


def _build_id(st: Any, path: str, build: str) -> str:
    """A build id as given, or the id of build number N (``3`` or ``#3``) of the component."""
    match = re.fullmatch(r"#?(\d+)", build.strip())
    if not match:
        return build
    number = int(match.group(1))
    items = st.client.get(path + "/builds", limit=1, before=number + 1)["items"] if number > 0 else []
    if not items or items[0].get("number") != number:
        raise CliError(f"--build {build}: the component has no build #{number}")
    return items[0]["id"]


def _wait(st: Any, path: str, dep: dict[str, Any], timeout: float) -> tuple[dict[str, Any], str | None]:
    """Poll the deployment until its release runs or cannot; returns it and the reason it failed (or None)."""
    start = time.monotonic()
    blocked_since: float | None = None
    seen: tuple[Any, ...] = ()
    d = dep
    with err.status(_status_text(d, 0)) as status:
        while True:
            d = st.client.get(path)
            now = time.monotonic()
            state_, message = d.get("state") or "pending", d.get("message") or ""
            current = d.get("observedRelease") == (d.get("rollout") or d.get("release"))
            if (state_, message) != seen[:2]:
                seen = (state_, message)
                err.print(f"  [dim]{state_}{': ' + escape(message) if message else ''}[/]")
            status.update(_status_text(d, now - start))
            if current and state_ in DONE:
                return d, None
            if state_ == "superseded":
                return d, f"does not serve: {message}"
            # A failure counts once it is about this release (or there was none before it).
            # A release past the data plane's progress deadline ("not ready after 60s") still takes over if it
            # gets ready: the user's --timeout decides how long to wait for that.
            slow = state_ == "failed" and message.startswith(SLOW)
            if state_ in ("failed", "crash-loop") and not slow and (current or d.get("observedRelease") is None):
                what = "failed" if state_ == "failed" else "is crash-looping"
                return d, f"{what}: {message or 'no reason given'}"
            if state_ == "unreachable":
                return d, (f"cannot start: data plane {d.get('dataPlane') or ''} is unreachable"
                           + (f" ({message})" if message else "") + "; is `cellplane dataplane run` running?")
            if state_ == "blocked":
                blocked_since = blocked_since if blocked_since is not None else now
                if "dependenc" in message.lower() or now - blocked_since >= BLOCKED_GRACE:
                    return d, f"is blocked: {message or 'no reason given'}"
            else:
                blocked_since = None
            if now - start >= timeout:
                return d, (f"did not become ready within {timeout:g}s: still {state_}"
                           + (f" ({message})" if message else ""))
            time.sleep(POLL)


def _status_text(d: dict[str, Any], elapsed: float) -> str:
    message = d.get("message") or ""
    return (f"{d.get('component')} → {d.get('environment')}: [bold]{d.get('state') or 'pending'}[/]"
            f"  replicas ready {replicas_ready(d)}" + (f"  {escape(message)}" if message else "")
            + f"  [dim]{elapsed:.0f}s[/]")


def _deployed(d: dict[str, Any], where: str) -> None:
    """What a user needs next: the URLs, and a command that calls the component."""
    out.print(f"Deployed {d['component']} (release {d.get('release')}, build {build_number(d)}) "
              f"to {d['environment']}")
    rows = [(e.get("name", ""), label, url, e.get("type")) for e in d.get("endpoints") or []
            for label, url in endpoint_urls(e)]
    names = max((len(r[0]) for r in rows), default=0)
    labels = max((len(r[1]) for r in rows), default=0)
    for name, label, url, _ in rows:
        out.print(escape(f"  {name:<{names}}  {label:<{labels}}  {url or '- (not reported yet)'}"))
    http = [(label, url) for _, label, url, kind in rows if url and kind in HTTP_TYPES]
    target = next((url for label, url in http if label == "Public"), None) or next(
        (url for label, url in http if label == "Project"), None)
    if target:
        out.print(escape(f"curl {target}"))
    elif d.get("state") == "idle":
        out.print(f"run it: cellplane run {where}")
    elif d.get("state") == "scheduled":
        out.print(f"it runs on its schedule; follow its output: cellplane logs {where} -f")
    elif not rows:
        out.print(f"{d['component']} declares no endpoints, so the gateway routes nothing to it; add one to its spec "
                  "(spec.endpoints, with `cellplane apply`) and it is routed without a new build")


def show_failure(st: Any, path: str, d: dict[str, Any], reason: str, where: str) -> None:
    """The reason a deployment does not run, and the last lines its replicas wrote."""
    err.print(f"[red]deployment of {d.get('component')} to {d.get('environment')} {escape(reason)}[/]")
    for r in d.get("replicas") or []:
        if r.get("state") != "ready" and r.get("message"):
            err.print(escape(f"  replica {r.get('index')}: {r.get('state')}, {r.get('restarts', 0)} restarts: "
                             f"{r['message']}"))
    try:
        lines = st.client.get(path + "/logs", environment=d.get("environment"), limit=10)["items"]
    except CliError:
        lines = []
    if lines:
        err.print("last log lines:")
        for item in lines:
            err.out("  " + log_line(item), highlight=False)
    err.print(f"full log: cellplane logs {where}")


# -- undeploy --------------------------------------------------------------------------------------------------


@app.command()
def undeploy(ctx: typer.Context, component: str = typer.Argument(...), env: str = ENV, track: str = TRACK,
             project: str = PROJECT) -> None:
    """Remove COMPONENT from an environment: its data plane stops it."""
    st = state(ctx)
    params = {"track": track} if track else {}
    result = st.client.delete(f"{component_path(st, project, component)}/deployments/{env}", **params)
    for item in result.get("deleted") or []:
        out.print(f"{escape(item)} deleted")


# -- logs --------------------------------------------------------------------------------------------------------


def log_line(item: dict[str, Any], source: bool = True) -> str:
    """``HH:MM:SS [replica or run] line``; lines on stderr or from the platform say so in the tag.

    Without ``source`` (the output of one run) only that tag is left, and only when it is not stdout."""
    tag = [str(x) for x in (item.get("run"), item.get("replica")) if x is not None][:1] if source else []
    stream = item.get("stream") or "stdout"
    if stream != "stdout":
        tag.append(stream)
    prefix = f"[{' '.join(tag) or '-'}] " if source or tag else ""
    return f"{_clock(item.get('at'))} {prefix}{(item.get('line') or '').rstrip(chr(10))}"


def _clock(at: str | None) -> str:
    if not at:
        return "--:--:--"
    try:
        return datetime.fromisoformat(at).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return at[11:19] or at


class _Lines:
    """Workload output on stdout, as written: no console markup, flushed per line when following."""

    def __init__(self, flush: bool, source: bool = True) -> None:
        self.flush, self.source = flush, source

    def text(self, item: dict[str, Any]) -> str:
        return log_line(item, self.source)

    def write(self, item: dict[str, Any]) -> None:
        try:
            sys.stdout.write(self.text(item) + "\n")
            if self.flush:
                sys.stdout.flush()
        except BrokenPipeError:  # `cellplane logs ... | head`
            self.closed()

    def done(self) -> None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed()

    @staticmethod
    def closed() -> None:
        with contextlib.suppress(OSError):  # nothing more reaches the reader, not even at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


class _AccessLines(_Lines):
    """One line per request: time, method, path, status, duration, caller, trace id and, unless allowed, the
    gateway's decision and reason; server errors in red on a terminal."""

    RED = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def text(self, item: dict[str, Any]) -> str:
        return access_line(item, color=self.RED)


def access_line(item: dict[str, Any], color: bool = False) -> str:
    status = item.get("status")
    trace = item.get("traceId") or ""
    text = (f"{_clock(item.get('at'))} {item.get('method') or '-'} {item.get('path') or '-'} {status} "
            f"{charts.ms(item.get('durationMs'))} {item.get('consumer') or '-'} {trace[:8] or '-'}")
    decision = item.get("decision") or "allowed"
    if decision != "allowed":
        text += f" {decision}" + (f": {item['reason']}" if item.get("reason") else "")
    text = text.replace("\n", " ")
    return f"\x1b[31m{text}\x1b[0m" if color and isinstance(status, int) and status >= 500 else text


class Stream(StrEnum):
    stdout = "stdout"
    stderr = "stderr"
    system = "system"


STATUS = re.compile(r"[1-5](\d\d|xx)")


@app.command()
def logs(
    ctx: typer.Context,
    component: str = typer.Argument(...),
    env: str = ENV,
    project: str = PROJECT,
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines until Ctrl-C"),
    tail: int = typer.Option(None, "--tail", min=0, max=10000,
                             help="start with the last N lines [default: 100, with --since 1000]"),
    since: str | None = typer.Option(None, "--since", help="only lines since then: 10m, 1h, 2d or an ISO 8601 time"),
    grep: str = typer.Option(None, "--grep", help="only lines containing TEXT (case-insensitive); with --access, "
                             "in the path or the reason"),
    replica: int = typer.Option(None, "--replica", min=0, help="only the lines of this replica (its index)"),
    run: str = typer.Option(None, "--task-run", "--run", help="only the output of this task run"),
    stream: Stream = typer.Option(None, "--stream", help="only lines of this stream"),
    access: bool = typer.Option(False, "--access", help="the gateway's access log instead: one line per request "
                                "(time, method, path, status, duration, caller, trace id)"),
    status: str = typer.Option(None, "--status", help="with --access: only these statuses, e.g. 503, 5xx, 4xx"),
) -> None:
    """The output of COMPONENT's replicas (or of one task run) in an environment; --access: its requests.

    With --access, one line per request the gateway routed to it: time, method, path, status, duration, the
    calling component, the trace id (first 8 digits) and, when not allowed, the gateway's decision and reason."""
    st = state(ctx)
    since = charts.duration(since, "--since", timestamp=True)
    if access:
        wrong = [name for name, value in (("--replica", replica), ("--task-run", run), ("--stream", stream))
                 if value is not None]
        if wrong:
            raise CliError(f"{wrong[0]} applies to the workload's output, not to --access")
        if status is not None and not STATUS.fullmatch(status.strip().lower()):
            raise CliError(f"--status: give a status like 503, 5xx or 4xx, not '{status}'")
        filters: dict[str, Any] = {"since": since, "grep": grep, "status": status and status.strip().lower()}
        path, printer = "/access-logs", _AccessLines(flush=follow)
    else:
        if status is not None:
            raise CliError("--status applies to the access log only: add --access")
        filters = {"since": since, "grep": grep, "replica": replica, "run": run, "stream": stream}
        path, printer = "/logs", _Lines(flush=follow)
    path = component_path(st, project, component) + path
    count = tail if tail is not None else 1000 if since else 100
    try:
        page = st.client.get(path, environment=env, limit=max(count, 1), **filters)
        for item in page["items"][-count:] if count else []:
            printer.write(item)
        if page.get("more") and tail is None and since and count:
            err.print(f"[dim]only the last {count} of the lines since {escape(since)} are shown: --tail N shows "
                      "more (up to 10000)[/]")
        if follow:
            after = page.get("next")
            key = "method" if access else "line"
            for event in st.client.stream_lines(path, environment=env, follow="true",
                                                after=-1 if after is None else after, **filters):
                if key in event:
                    printer.write(event)
    except KeyboardInterrupt:
        if not follow:
            raise
    printer.done()


# -- run ---------------------------------------------------------------------------------------------------------


@app.command("run")
def run_task(
    ctx: typer.Context,
    component: str = typer.Argument(..., help="a manual-task or scheduled-task component"),
    env: str = ENV,
    project: str = PROJECT,
    no_follow: bool = typer.Option(False, "--no-follow", help="start the run and return"),
) -> None:
    """Run a task component once in an environment; prints its output and exits with its exit code."""
    st = state(ctx)
    path = component_path(st, project, component)
    info = st.client.post(path + "/runs", {"environment": env})
    where = f"{component} --env {env} -p {info.get('project') or st.project(project)} --run {info['id']}"
    if no_follow:
        out.print(f"run {info['id']} of {component} in {env}: {info.get('state')}; "
                  f"follow it with: cellplane logs {where} -f")
        return
    err.print(f"run {info['id']} of {component} in {env}: {info.get('state')}")
    try:
        final = _follow_run(st, path, env, info)
    except KeyboardInterrupt:
        err.print(f"stopped following; the run goes on: cellplane logs {where} -f")
        raise typer.Exit(130) from None
    code = final.get("exitCode")
    if final.get("state") == "succeeded" and code in (None, 0):
        took = _seconds(final.get("startedAt"), final.get("endedAt"))
        err.print(f"[green]run {final['id']} succeeded{f' in {took:.1f}s' if took is not None else ''}[/]")
        return
    if code is None or code == 0:
        err.print(f"[red]run {final['id']} failed: {escape(final.get('message') or 'no reason given')}[/]")
        raise typer.Exit(1)
    err.print(f"[red]run {final['id']} failed with exit code {code}[/]"
              + (f": {escape(final['message'])}" if final.get("message") else ""))
    raise typer.Exit(code if 0 < code < 256 else 128 - code if code < 0 else 1)


def _follow_run(st: Any, path: str, env: str, info: dict[str, Any]) -> dict[str, Any]:
    """Print the run's lines until it has ended and all of them are sent; returns the finished run."""
    printer = _Lines(flush=True, source=False)
    after = -1
    while True:
        for event in st.client.stream_lines(path + "/logs", environment=env, follow="true", run=info["id"],
                                            after=after):
            if "line" in event:
                printer.write(event)
                after = event.get("id", after)
            elif event.get("event") == "run" and isinstance(event.get("run"), dict):
                info = event["run"]
        if info.get("state") not in RUN_DONE:  # the stream ended early (e.g. a proxy's timeout): look again
            info = st.client.get(f"/organizations/{st.org}/task-runs/{info['id']}")
        if info.get("state") in RUN_DONE:
            return info
        time.sleep(POLL)


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
