"""`build` (start, list, show, logs, cancel, webhook) and `artifact` (pull, run)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from cellplane.cli.app import app, state
from cellplane.cli.client import CliError
from cellplane.cli.output import Format, age, dump, err, out, table

OUTPUT = typer.Option(Format.table, "-o", "--output", help="table, json or yaml")
PROJECT = typer.Option(None, "--project", "-p", help="project (default: the context's)")
TERMINAL = ("succeeded", "failed", "cancelled", "timed-out")
STEP_MARK = {"succeeded": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[dim]-[/]", "running": "[cyan]…[/]"}


class DefaultCommandGroup(TyperGroup):
    """`cellplane build COMPONENT` runs `build start COMPONENT`; `cellplane build show ID` runs `show`."""

    default_command = "start"

    # ctx: the Context of the click that typer runs on (typer carries its own copy of click since 0.2x)
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


build = typer.Typer(cls=DefaultCommandGroup, no_args_is_help=True,
                    help="Build a component (cellplane build COMPONENT), and look at builds.")
app.add_typer(build, name="build")
artifact = typer.Typer(no_args_is_help=True, help="Fetch and run build artifacts.")
app.add_typer(artifact, name="artifact")


def component_path(st: Any, project: str | None, component: str) -> str:
    return f"/organizations/{st.org}/projects/{st.project(project)}/components/{component}"


def _upload_dir(component: dict[str, Any], source: str | None, ref: str | None) -> Path | None:
    """The directory the CLI uploads: --source, or the component's repository when it is a local directory."""
    from cellplane.sourcetree import is_git_url

    if source:
        path = Path(source).expanduser()
        if not path.is_dir():
            raise CliError(f"--source {source}: no such directory")
        return path.resolve()
    spec_source = (component.get("spec") or {}).get("source") or {}
    repository = spec_source.get("repository")
    if not repository or is_git_url(repository):
        return None
    root = Path(repository).expanduser()
    if not root.is_dir():
        return None  # a path on the control plane's machine: the control plane clones it
    if ref:
        return None  # a revision of a local repository: the control plane clones it (same machine)
    target = (root / (spec_source.get("path") or ".")).resolve()
    if not target.is_dir():
        raise CliError(f"the component's source path {spec_source.get('path')} is not a directory in {root}")
    return target


@build.command("start")
def start(
    ctx: typer.Context,
    component: str = typer.Argument(..., help="component to build"),
    project: str = PROJECT,
    track: str = typer.Option(None, "--track", "-t", help="deployment track: the git branch to build"),
    ref: str = typer.Option(None, "--ref", help="branch, tag or commit to build"),
    source: str = typer.Option(None, "--source", help="upload this directory instead of fetching the repository"),
    follow: bool = typer.Option(False, "--follow", "-f", help="stream the logs until the build ends"),
    output: Format = OUTPUT,
) -> None:
    """Build COMPONENT: from its git repository, or by uploading a local directory."""
    from cellplane.build.archive import default_exclude, pack

    st = state(ctx)
    path = component_path(st, project, component)
    doc = st.client.get(path)
    upload = _upload_dir(doc, source, ref)
    if upload is not None:
        if ref:
            raise CliError("--ref needs a git source; an uploaded directory is built as it is")
        with tempfile.TemporaryDirectory(prefix="cellplane-upload-") as tmp:
            tarball = Path(tmp) / "source.tar.gz"
            pack(upload, tarball, exclude=default_exclude)
            size = tarball.stat().st_size
            err.print(f"uploading {escape(str(upload))} ({human_size(size)})")
            with tarball.open("rb") as f:
                info = st.client.upload(path + "/builds", f, track=track)
    else:
        info = st.client.post(path + "/builds", {k: v for k, v in (("track", track), ("ref", ref)) if v})
    if not follow:
        if output != Format.table:
            return dump(info, output)
        out.print(f"build {info['id']} (#{info['number']}) of {component} queued; "
                  f"follow it with: cellplane build logs {info['id']} -f")
        return
    final = _follow(st, info, quiet=output != Format.table)
    if output != Format.table:
        dump(final, output)
    if final["state"] != "succeeded":
        raise typer.Exit(1)


def human_size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _follow(st: Any, info: dict[str, Any], after: int = -1, quiet: bool = False) -> dict[str, Any]:
    """Stream a build's logs with a line per step; end with what the user needs next."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    build_id = info["id"]
    tasks: dict[str, Any] = {}
    tail: list[str] = []
    with Progress(SpinnerColumn(finished_text=" "), TextColumn("{task.description}"),
                  TextColumn("[dim]{task.fields[took]}[/]"), console=err, transient=False) as progress:
        progress.console.print(f"build [bold]{build_id}[/] (#{info['number']}) of {info['component']}: "
                               f"{info['state']}")
        for event in st.client.stream_lines(f"/organizations/{st.org}/builds/{build_id}/logs", follow="true",
                                            after=after):
            if event.get("event") == "build":
                info = event["build"]
                for step in info.get("steps") or []:
                    name, step_state = step["name"], step.get("state", "")
                    label = f"{STEP_MARK.get(step_state, '')} {name}" + (
                        f" [dim]({escape(step['detail'])})[/]" if step.get("detail") else "")
                    took = f"{step['seconds']:.1f}s" if step.get("seconds") is not None else ""
                    if name not in tasks:
                        tasks[name] = progress.add_task(label, total=1, took=took)
                    done = step_state in ("succeeded", "failed", "skipped")
                    progress.update(tasks[name], description=label, completed=1 if done else 0, took=took)
            elif "line" in event:
                line = event["line"]
                tail = [*tail[-9:], line]
                progress.console.print(f"[dim]{event.get('step', '')[:12]:>12}[/] {escape(line)}")
    final = st.client.get(f"/organizations/{st.org}/builds/{build_id}")
    build_summary(final, tail, err if quiet else out)
    return final


def build_summary(b: dict[str, Any], tail: list[str], console: Any) -> None:
    """The result a user needs next: the artifact and how to run it, or the reason and the last log lines."""
    took = f" in {b['durationSeconds']:.1f}s" if b.get("durationSeconds") is not None else ""
    if b["state"] == "succeeded":
        det = b.get("detection") or {}
        err.print(f"[green]build {b['id']} succeeded{took}[/]")
        console.print(f"artifact: {b['artifact']}")
        if det:
            console.print(escape(f"strategy: {det.get('strategy')} — {det.get('reason')}"))
            if det.get("run"):
                console.print(escape(f"run:      {det['run']}" + (f" (port {det['port']})" if det.get("port") else "")))
        counts = b.get("findingCounts") or {}
        if counts:
            console.print("findings: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                      + f"  (cellplane build show {b['id']})")
        console.print(f"next: cellplane deploy {b['component']} --project {b['project']} --env development "
                      f"--build {b['id']}")
        console.print(f"      (or run it here: cellplane artifact run {b['artifact']} --project {b['project']})")
        return
    err.print(f"[red]build {b['id']} {b['state']}{took}: {escape(b.get('error') or 'no reason given')}[/]",
              highlight=False)
    if tail:
        err.print("last log lines:")
        for line in tail:
            err.print(f"  {escape(line)}")
    err.print(f"full log: cellplane build logs {b['id']}")


@build.command("list")
def list_builds(ctx: typer.Context, component: str = typer.Argument(...), project: str = PROJECT,
                limit: int = typer.Option(20, "--limit", min=1, max=500), output: Format = OUTPUT) -> None:
    """Recent builds of COMPONENT, newest first."""
    st = state(ctx)
    items = st.client.get(component_path(st, project, component) + "/builds", limit=limit)["items"]
    if output != Format.table:
        return dump(items, output)
    table(items, [("ID", lambda b: b["id"]), ("#", lambda b: b["number"]), ("TRACK", lambda b: b["track"]),
                  ("STATE", lambda b: b["state"]), ("COMMIT", lambda b: (b.get("commit") or "")[:12]),
                  ("STRATEGY", lambda b: (b.get("detection") or {}).get("strategy", "")),
                  ("DURATION", lambda b: f"{b['durationSeconds']:.1f}s" if b.get("durationSeconds") else ""),
                  ("AGE", lambda b: age(b.get("createdAt"))),
                  ("ARTIFACT", lambda b: (b.get("artifact") or "")[:19])])


@build.command("show")
def show(ctx: typer.Context, build_id: str = typer.Argument(..., metavar="BUILD"), output: Format = OUTPUT) -> None:
    """A build: its source, how it was built and why, its steps, scan findings and artifact."""
    st = state(ctx)
    b = st.client.get(f"/organizations/{st.org}/builds/{build_id}")
    if output != Format.table:
        return dump(b, output)
    src = b.get("source") or {}
    where = src.get("repository") or "uploaded archive"
    at = src.get("ref") or src.get("branch")
    rows = [
        ("Build", f"{b['id']} (#{b['number']}) of {b['project']}/{b['component']}, track {b['track']}"),
        ("State", b["state"] + (f" — {b['error']}" if b.get("error") else "")),
        ("Source", where + (f" at {at}" if at else "") + (f", path {src['path']}" if src.get("path") not in
                                                           (None, ".") else "")),
        ("Commit", b.get("commit") or "-"),
        ("Trigger", f"{b['trigger']} by {b['requestedBy']}, {age(b.get('createdAt'))} ago"),
        ("Duration", f"{b['durationSeconds']:.1f}s" if b.get("durationSeconds") is not None else "-"),
    ]
    det = b.get("detection") or {}
    if det:
        rows += [("Strategy", f"{det.get('strategy')} ({det.get('language')})"), ("Why", det.get("reason") or "")]
        if det.get("run"):
            rows.append(("Run", det["run"] + (f"  (port {det['port']})" if det.get("port") else "")))
        for name, cmd in (det.get("processes") or {}).items():
            rows.append((f"Process {name}", cmd))
        for note in det.get("notes") or []:
            rows.append(("Note", note))
    rows.append(("Artifact", b.get("artifact") or "-"))
    image = b.get("image") or {}
    if image:
        rows.append(("Image", image["reference"]))
        rows += [("Also pushed to", ref) for ref in image.get("pushedTo") or [] if ref != image["reference"]]
        rows.append(("Signature", image.get("signature") or "not signed"))
        if image.get("python"):
            python = image["python"]
            rows.append(("Image Python", f"{python['version']} ({python['platform']}, from {python['from']})"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        out.print(f"{k + ':':<{width + 1}} {escape(str(v))}")
    if b.get("steps"):
        out.print("Steps:")
        for step in b["steps"]:
            secs = f" {step['seconds']:.1f}s" if step.get("seconds") is not None else ""
            detail = f" ({step['detail']})" if step.get("detail") else ""
            out.print(f"  {STEP_MARK.get(step['state'], '')} {step['name']:<13}{secs}{escape(detail)}")
    findings = b.get("findings") or []
    out.print(f"Findings: {len(findings) or 'none'}")
    for f in findings:
        loc = f" {f['file']}:{f['line']}" if f.get("file") else ""
        out.print(escape(f"  [{f['severity']}] {f['kind']} {f['rule']}{loc} — {f['message']}"))


@build.command("logs")
def logs(ctx: typer.Context, build_id: str = typer.Argument(..., metavar="BUILD"),
         follow: bool = typer.Option(False, "--follow", "-f", help="stream until the build ends")) -> None:
    """A build's log; with -f, follow it live."""
    st = state(ctx)
    path = f"/organizations/{st.org}/builds/{build_id}"
    if follow:
        final = _follow(st, st.client.get(path))
        if final["state"] != "succeeded":
            raise typer.Exit(1)
        return
    after = -1
    while True:
        page = st.client.get(path + "/logs", after=after, limit=5000)
        for item in page["items"]:
            out.print(f"[dim]{item['step'][:12]:>12}[/] {escape(item['line'])}")
        if not page["items"]:
            return
        after = page["next"]


@build.command("cancel")
def cancel(ctx: typer.Context, build_id: str = typer.Argument(..., metavar="BUILD"),
           wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until the build has stopped")) -> None:
    """Cancel a queued or running build (its processes are stopped)."""
    st = state(ctx)
    path = f"/organizations/{st.org}/builds/{build_id}"
    b = st.client.post(path + "/cancel", {})
    deadline = time.monotonic() + 30
    while wait and b["state"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.3)
        b = st.client.get(path)
    out.print(f"build {build_id}: {b['state']}" + ("" if b["state"] in TERMINAL else " (cancel requested)"))


@build.command("webhook")
def webhook(ctx: typer.Context, component: str = typer.Argument(...), project: str = PROJECT,
            rotate: bool = typer.Option(False, "--rotate", help="create or replace the secret (shown once)"),
            remove: bool = typer.Option(False, "--delete", help="remove the webhook secret"),
            output: Format = OUTPUT) -> None:
    """The git push webhook of COMPONENT: its URL, and its secret when created."""
    st = state(ctx)
    path = component_path(st, project, component) + "/webhook"
    if rotate and remove:
        raise CliError("give --rotate or --delete, not both")
    if remove:
        st.client.delete(path)
        out.print(f"webhook of {component} removed")
        return
    info = st.client.put(path, {}) if rotate else st.client.get(path)
    if output != Format.table:
        return dump(info, output)
    out.print(f"URL:        {st.client.server}{info['url']}")
    hint = f"no (cellplane build webhook {component} --rotate)"
    out.print(f"configured: {'yes' if info['configured'] else hint}")
    out.print(f"auto-build: {'on' if info['autoBuild'] else 'off (set spec.build.autoBuild: true)'}")
    if info.get("secret"):
        out.print(f"secret:     {info['secret']}")
        err.print("Store the secret in the git host's webhook settings now (content type application/json); "
                  "it is not shown again.")


# -- artifacts ---------------------------------------------------------------------------------------------


def _pull(st: Any, project: str, digest: str) -> Path:
    """Download (once) and verify an artifact into the local artifact cache; returns the unpacked tree."""
    from cellplane.runtime.artifacts import LocalArtifacts

    store = LocalArtifacts(_cache_root())

    def fetch(dest: Path) -> None:
        with dest.open("wb") as f:
            st.client.download(f"/organizations/{st.org}/projects/{project}/artifacts/{digest}", f)

    return store.ensure(digest, fetch)


def _cache_root() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("CELLPLANE_CACHE_DIR") or user_cache_dir("cellplane"))


@artifact.command("pull")
def pull(ctx: typer.Context, digest: str = typer.Argument(...), project: str = PROJECT) -> None:
    """Download an artifact, verify its digest and unpack it into the local cache."""
    st = state(ctx)
    out.print(str(_pull(st, st.project(project) or "", digest)))


@artifact.command("run")
def run(ctx: typer.Context, digest: str = typer.Argument(...), project: str = PROJECT,
        port: int = typer.Option(None, "--port", min=1, max=65535, help="port to serve on (default: a free one)"),
        host: str = typer.Option("127.0.0.1", "--host")) -> None:
    """Run an artifact here, as the data plane would: its runtime from the cache, PORT set. Ctrl-C stops it."""
    from cellplane.build.plan import BuildFailure
    from cellplane.runtime.launch import launch_command
    from cellplane.runtime.materialize import DependencyCache

    st = state(ctx)
    tree = _pull(st, st.project(project) or "", digest)
    try:
        cmd = launch_command(tree, DependencyCache(_cache_root()), port=port, host=host,
                             log=lambda line: err.print(escape(line)))
    except BuildFailure as e:
        raise CliError(f"cannot run {digest}: {e.message}") from None
    err.print(f"running {escape(' '.join(cmd.argv))} on http://{host}:{cmd.port}/  (Ctrl-C stops it)")
    os.chdir(cmd.cwd)
    os.execvpe(cmd.argv[0], cmd.argv, cmd.env)  # noqa: S606  (the app replaces the CLI, as `exec` would)


signing_key = typer.Typer(no_args_is_help=True, help="The organization's image signing key: show, rotate, forget.")
app.add_typer(signing_key, name="signing-key")


def _print_keys(result: dict[str, Any], output: Format) -> None:
    if output != Format.table:
        dump(result, output)
        return
    table(result.get("keys") or [], [("KEY", lambda k: k["keyId"]),
                                     ("STATE", lambda k: "current: signs" if k["current"] else "kept: verifies"),
                                     ("SINCE", lambda k: k["since"][:19].replace("T", " "))], empty="No keys.")


@signing_key.command("show")
def signing_key_show(ctx: typer.Context, output: Format = typer.Option(Format.table, "-o", "--output")) -> None:
    """The current key and the retired ones kept for verifying (-o json: their public keys, for cosign)."""
    st = state(ctx)
    _print_keys(st.client.get(f"/organizations/{st.org}/image-signing-key"), output)


@signing_key.command("rotate")
def signing_key_rotate(ctx: typer.Context) -> None:
    """A new key signs every image from now on; the old public key is kept, so its signatures still verify."""
    st = state(ctx)
    result = st.client.post(f"/organizations/{st.org}/image-signing-key/rotate", {})
    kept = [k["keyId"] for k in result["keys"] if not k["current"]]
    out.print(f"signing key rotated: new key {result['keyId']}; kept for verifying: {', '.join(kept) or 'none'}")


@signing_key.command("forget")
def signing_key_forget(ctx: typer.Context, key: str = typer.Argument(..., help="a kept key's id")) -> None:
    """Stop keeping a retired key: images signed only with it no longer verify with the organization's keys."""
    st = state(ctx)
    st.client.delete(f"/organizations/{st.org}/image-signing-key/keys/{key}")
    out.print(f"signing key {key} forgotten")
