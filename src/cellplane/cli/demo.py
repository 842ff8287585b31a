"""`up --demo FILE`: create a demo project from a YAML file, build and deploy it, print its URLs.

A thin client of the REST API, run in a thread of `up` once both planes are up. "First run" means the
project does not exist yet: its documents are applied, each component's directory (the annotation
``cellplane.dev/demo-source``, relative to the file) is uploaded as a build, and each build is deployed to
development as soon as it succeeds (after the builds of the demo components it depends on). When the
project exists, nothing is built: `up` waits for the data plane to report the deployments it restarted
from its cache and prints the URLs again (a component an interrupted first run left undeployed is deployed,
or built first if it has no build). On every run a URL is printed only once a request to it answers through
the gateway (see ``answering``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from rich.markup import escape

from cellplane import yamlload
from cellplane.cli.client import ApiError, Client, CliError
from cellplane.cli.commands_builds import TERMINAL, build_summary, human_size
from cellplane.cli.commands_deploy import DONE, SLOW, show_failure
from cellplane.cli.output import endpoint_urls, err, out

ENV = "development"
SOURCE = "cellplane.dev/demo-source"
TRY = "cellplane.dev/demo-try"  # a path to append to the component's public URL in the curl line
POLL = 0.5
DEPLOY_TIMEOUT = 300.0
BLOCKED_WAIT = 20.0  # a dependency that stays unresolved this long after the demo's own deploys settled
NO_PLANE_WAIT = 60.0  # the data plane may not have bound the environment yet, or not reported since it started
URL_WAIT = 30.0  # the printed URLs answer at once unless something is wrong: then a line says which
WHY = {"failed": "failed", "crash-loop": "is crash-looping", "unreachable": "cannot start",
       "superseded": "does not serve"}


@dataclass
class Demo:
    path: Path
    project: str
    documents: list[dict[str, Any]]
    sources: dict[str, Path]  # component -> its directory, in the order of the file
    deps: dict[str, list[str]]  # component -> the demo components it connects to


def load(path: Path) -> Demo:
    """Read and check a demo file before anything starts: one clear line for what is wrong."""
    try:
        docs = [d for d in yamlload.load_all(path.read_text()) if d is not None]
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"--demo {path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    except yaml.YAMLError as e:
        raise CliError(f"--demo {path}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if not all(isinstance(d, dict) for d in docs):
        raise CliError(f"--demo {path}: every document must be a mapping")
    projects = [d for d in docs if d.get("kind") == "Project"]
    if len(projects) != 1:
        raise CliError(f"--demo {path}: needs exactly one Project document, found {len(projects)}")
    project = str((projects[0].get("metadata") or {}).get("name") or "")
    sources: dict[str, Path] = {}
    deps: dict[str, list[str]] = {}
    for d in (d for d in docs if d.get("kind") == "Component"):
        meta, spec = d.get("metadata") or {}, d.get("spec") or {}
        name, where = str(meta.get("name") or ""), (meta.get("annotations") or {}).get(SOURCE)
        if not where:
            raise CliError(f"--demo {path}: component {name} has no {SOURCE} annotation (its source directory)")
        directory = (path.parent / str(where)).resolve()
        if not directory.is_dir():
            raise CliError(f"--demo {path}: the source of component {name}, {directory}, is not a directory")
        sources[name] = directory
        deps[name] = [str(x["component"]) for x in spec.get("dependencies") or []
                      if isinstance(x, dict) and x.get("component") and x.get("project", project) == project]
    if not sources:
        raise CliError(f"--demo {path}: no Component documents")
    return Demo(path, project, docs, sources, deps)


@dataclass
class _Row:
    name: str
    phase: str  # build | wait | deploy | done | failed
    since: float = field(default_factory=time.monotonic)
    build: dict[str, Any] | None = None
    built: str = ""
    deployment: dict[str, Any] | None = None
    text: str = ""
    reason: str = ""
    blocked: float | None = None


class Provisioner:
    def __init__(self, demo: Demo, url: str, token: str, org: str, stopping: threading.Event) -> None:
        self.demo, self.url, self.org, self.stopping = demo, url, org, stopping
        self.client = Client(url, token)
        self.base = f"/organizations/{org}/projects/{demo.project}"
        self.started = datetime.now().astimezone()

    def run(self, token_path: Path) -> None:
        """The whole demo; never raises (`up` goes on whatever happens here)."""
        try:
            rows = self._plan()
            if rows and not self.stopping.is_set():
                self._drive(rows)
            if not self.stopping.is_set():
                self._explain([r for r in rows if r.phase == "failed"])
                self._report(token_path)
        except CliError as e:
            if not self.stopping.is_set():
                err.print(f"[red]demo: {escape(str(e))}[/]  (the platform keeps running)", highlight=False)
        except Exception as e:  # a thread's last line of defence: one line, never a traceback
            if not self.stopping.is_set():
                err.print(f"[red]demo: unexpected {type(e).__name__}: {escape(str(e))}[/]", highlight=False)
        finally:
            self.client.close()

    def _plan(self) -> list[_Row]:
        try:
            self.client.get(self.base)
        except ApiError as e:
            if e.status != 404:
                raise
            names = ", ".join(self.demo.sources)
            self.client.post("/apply", {"organization": self.org, "documents": self.demo.documents})
            err.print(f"demo: created project [bold]{self.demo.project}[/] ({names}) from "
                      f"{escape(str(self.demo.path))}; building and deploying to {ENV}")
            return [_Row(name, "build") for name in self.demo.sources]
        rows = []
        for name in self.demo.sources:
            path = f"{self.base}/components/{name}"
            try:
                dep = self.client.get(f"{path}/deployments/{ENV}")
                rows.append(_Row(name, "deploy", deployment=dep))
            except ApiError as e:
                if e.status != 404:
                    raise
                built = self.client.get(path + "/builds", limit=1, state="succeeded")["items"]
                rows.append(_Row(name, "wait" if built else "build", build=built[0] if built else None))
        todo = [r.name for r in rows if r.phase != "deploy"]
        err.print(f"demo: project {self.demo.project} exists; nothing is rebuilt"
                  + (f" (finishing what an earlier run left: {', '.join(todo)})" if todo else ""))
        return rows

    # -- the loop: builds, then deploys, one progress line per component -----------------------------------------

    def _drive(self, rows: list[_Row]) -> None:
        from rich.progress import Progress, TextColumn

        for row in rows:
            if row.phase == "build":
                self._upload(row)
        width = max(len(r.name) for r in rows)
        with Progress(TextColumn("{task.description}"), console=err, transient=False) as progress:
            tasks = {r.name: progress.add_task("", total=1) for r in rows}
            while not self.stopping.is_set():
                now = time.monotonic()
                for row in rows:
                    self._step(row, rows, now)
                    mark = {"done": "[green]✓[/]", "failed": "[red]✗[/]"}.get(row.phase, "[cyan]…[/]")
                    progress.update(tasks[row.name], description=f"{mark} {row.name:<{width}}  {row.text}",
                                    completed=row.phase in ("done", "failed"))
                if all(r.phase in ("done", "failed") for r in rows):
                    break
                self.stopping.wait(POLL)

    def _upload(self, row: _Row) -> None:
        from cellplane.build.archive import default_exclude, pack

        with tempfile.TemporaryDirectory(prefix="cellplane-demo-") as tmp:
            tarball = Path(tmp) / "source.tar.gz"
            pack(self.demo.sources[row.name], tarball, exclude=default_exclude)
            try:
                with tarball.open("rb") as f:
                    row.build = self.client.upload(f"{self.base}/components/{row.name}/builds", f)
            except ApiError as e:
                row.phase, row.text = "failed", f"upload refused: {e}"
                return
            row.text = f"build queued ({human_size(tarball.stat().st_size)} uploaded)"
        row.since = time.monotonic()

    def _step(self, row: _Row, rows: list[_Row], now: float) -> None:
        if row.phase == "build" and row.build is not None:
            b = row.build = self.client.get(f"/organizations/{self.org}/builds/{row.build['id']}")
            if b["state"] not in TERMINAL:
                row.text = f"build {b['state']} {now - row.since:.0f}s"
            elif b["state"] == "succeeded":
                row.built = f"built in {b.get('durationSeconds') or now - row.since:.1f}s · "
                row.phase, row.text, row.since = "wait", row.built + "waiting for its dependencies", now
            else:
                row.phase, row.text = "failed", f"build {b['state']}: {b.get('error') or 'no reason given'}"
        if row.phase == "wait":
            self._maybe_deploy(row, rows, now)
        if row.phase == "deploy":
            self._watch(row, rows, now)

    def _maybe_deploy(self, row: _Row, rows: list[_Row], now: float) -> None:
        """Deploy once the demo components it connects to are deployed (or failed): it is not blocked then."""
        by_name = {r.name: r for r in rows}
        if any(by_name[d].phase in ("build", "wait") for d in self.demo.deps[row.name] if d in by_name):
            return
        body = {"environment": ENV, **({"build": row.build["id"]} if row.build else {})}
        try:
            row.deployment = self.client.post(f"{self.base}/components/{row.name}/deployments", body)
        except ApiError as e:
            if e.error_code == "no-dataplane" and now - row.since < NO_PLANE_WAIT:
                row.text = row.built + "waiting for the data plane to bind " + ENV
            else:
                row.phase, row.text = "failed", row.built + f"deploy refused: {e}"
            return
        row.phase, row.since = "deploy", now

    def _watch(self, row: _Row, rows: list[_Row], now: float) -> None:
        """As `cellplane deploy` waits: done when the current release runs, failed when it cannot."""
        d = row.deployment = self.client.get(f"{self.base}/components/{row.name}/deployments/{ENV}")
        state, message = d.get("state") or "pending", d.get("message") or ""
        current = d.get("observedRelease") == (d.get("rollout") or d.get("release"))
        fresh = bool(row.built) or _after(d.get("observedAt"), self.started)  # reported by this run's data plane
        took = f" in {now - row.since:.1f}s" if row.built else ""
        row.text = row.built + f"{state}{': ' + message if message else ''} {now - row.since:.0f}s"
        if current and state in DONE and fresh:
            row.phase, row.text = "done", row.built + state + took
        elif state == "unreachable" and not fresh and now - row.since < NO_PLANE_WAIT:
            row.text = f"waiting for the data plane to report {now - row.since:.0f}s"  # this run's has not yet
        elif state in ("unreachable", "superseded") or (state in ("failed", "crash-loop") and not message.startswith(
                SLOW) and (current or d.get("observedRelease") is None)):  # a failure of this release
            row.phase, row.reason = "failed", f"{WHY[state]}: {message or 'no reason given'}"
        elif state == "blocked":
            row.blocked = row.blocked or now
            settled = all(r.phase in ("done", "failed") for r in rows if r.name in self.demo.deps[row.name])
            if settled and now - row.blocked >= BLOCKED_WAIT:
                row.phase, row.reason = "failed", f"is blocked: {message}"
        elif now - row.since >= DEPLOY_TIMEOUT:
            row.phase, row.reason = "failed", f"did not become ready within {DEPLOY_TIMEOUT:.0f}s: still {state}"
        else:
            row.blocked = None
        if row.phase == "failed":
            row.text = row.built + row.reason

    def _explain(self, failed: list[_Row]) -> None:
        """Why each failed component failed: the reason and the last lines of its build or its replicas."""
        st = SimpleNamespace(client=self.client, org=self.org)
        for row in failed:
            err.print(f"[bold]demo: {row.name} failed[/]")
            where = f"{row.name} --env {ENV} -p {self.demo.project}"
            if row.deployment is not None and row.reason:
                with contextlib.suppress(CliError):
                    show_failure(st, f"{self.base}/components/{row.name}", row.deployment, row.reason, where)
            elif row.build is not None and row.build.get("state") in TERMINAL and not row.built:
                build_summary(row.build, self._build_tail(row.build["id"]), err)
            else:
                err.print(escape(row.text), highlight=False)

    def _build_tail(self, build_id: str, lines: int = 10) -> list[str]:
        tail: list[str] = []
        after = -1
        with contextlib.suppress(CliError):
            while True:
                page = self.client.get(f"/organizations/{self.org}/builds/{build_id}/logs", after=after, limit=5000)
                if not page["items"]:
                    break
                tail = [*tail, *(i["line"] for i in page["items"])][-lines:]
                after = page["next"]
        return tail

    # -- what to do with it -------------------------------------------------------------------------------------

    def _report(self, token_path: Path) -> None:
        """The demo's URLs, a curl line and the commands to try next, on stdout."""
        items = self.client.get(f"/organizations/{self.org}/deployments", environment=ENV,
                                project=self.demo.project)["items"]
        deployed = {d["component"]: d for d in items}
        specs = {str(d["metadata"]["name"]): d for d in self.demo.documents if d.get("kind") == "Component"}
        flags, notes = _cli_flags(self.url, token_path, self.org, self.demo.project)
        names = [*self.demo.sources, *sorted(set(deployed) - set(self.demo.sources))]
        width = max(len(n) for n in names)
        lines: list[str] = []
        urls: list[str] = []  # what the lines print: each must answer before they are printed
        curl = None
        for name in names:
            if name not in deployed:
                lines.append(f"  {name:<{width}}  {'not deployed':<13} (why: above); the next run builds and "
                             "deploys it")
                continue
            d, doc = deployed[name], specs.get(name) or {}
            public = [url for e in d.get("endpoints") or [] for label, url in endpoint_urls(e)
                      if label == "Public" and url]
            what = _describe(d, doc, public, [c for c, deps in self.demo.deps.items() if name in deps], flags)
            lines.append(f"  {name:<{width}}  {what}")
            if public and (d.get("state") or "pending") in DONE:
                urls.append(public[0].rstrip("/") + "/" if d.get("type") == "web-app" else public[0])
            try_path = ((doc.get("metadata") or {}).get("annotations") or {}).get(TRY)
            if curl is None and public and try_path and d.get("type") != "web-app":
                curl = public[0].rstrip("/") + "/" + str(try_path).lstrip("/")
        if curl:
            urls.append(curl)
        self._until_answering(urls)
        if self.stopping.is_set():
            return
        out.print(f"[bold]Demo project {self.demo.project}[/] in {ENV}:")
        for line in lines:
            out.print(escape(line))
        if curl:  # a Public endpoint on the external listener: no key needed
            out.print("Try it:")
            out.print(escape(f"  curl '{curl}'"))
        for line in notes:
            out.print(escape(line))
        out.print("Next:")
        services = [n for n in names if n in deployed and deployed[n].get("type") != "web-app"]
        first = (services or names or [""])[0]
        along = [d for d in self.demo.deps.get(first, []) if d in deployed] + [first]  # its connections first
        promote = [f"cellplane promote {c}{flags} --from {ENV} --to staging" for c in along]
        watch = [f"cellplane metrics {first}{flags} --env {ENV}", f"cellplane traces {first}{flags} --env {ENV}",
                 f"cellplane describe project {self.demo.project} --env {ENV}"]
        for line in (f"cellplane get deployments{flags}", f"cellplane logs {first}{flags} --env {ENV} -f", *watch,
                     *promote,
                     "Ctrl-C stops everything; the next run starts it again in seconds, without rebuilding"):
            out.print(escape(f"  {line}"))


    def _until_answering(self, urls: list[str]) -> None:
        """Wait until each URL the report prints answers through the gateway (a replica's own answer, not the
        gateway's 404 or 503): a deployment reported ready is routed, but the report may be the previous run's.
        Bounded by URL_WAIT; one line for each URL that does not answer by then."""
        from cellplane.cli import answering

        for url, why in answering.wait(urls, self.stopping, URL_WAIT).items():
            err.print(escape(f"demo: {url} does not answer after {URL_WAIT:.0f}s ({why}); it may need a moment"),
                      highlight=False)


def _describe(d: dict[str, Any], doc: dict[str, Any], public: list[str], callers: list[str], flags: str) -> str:
    """One line about a deployed component: where to reach it, or when it runs."""
    state, kind, name = d.get("state") or "pending", d.get("type"), d["component"]
    if state not in DONE:
        return f"{state}: {d.get('message') or 'see cellplane logs ' + name + flags + ' --env ' + ENV}"
    if kind == "web-app" and public:
        return f"web app       {public[0].rstrip('/')}/  (open it in a browser)"
    if public:
        return f"public API    {public[0]}  (Public: no key needed)"
    if kind == "scheduled-task":
        cron = ((doc.get("spec") or {}).get("schedule") or {}).get("cron", "")
        return f"scheduled     cron '{cron}'; its output: cellplane logs {name}{flags} --env {ENV} -f"
    if kind == "manual-task":
        return f"manual task   run it: cellplane run {name}{flags} --env {ENV}"
    reach = f"; {', '.join(callers)} call it through a connection" if callers else ""
    return f"{'project only':<13} not routed publicly: only components of {d['project']} reach it{reach}"


def _cli_flags(url: str, token_path: Path, org: str, project: str) -> tuple[str, list[str]]:
    """The flags the printed commands need, and what to do first so that they reach this control plane.

    Without any saved login, one is saved for this server with the admin token (as `cellplane login` would)."""
    from cellplane.cli.context import load_config, resolve, save_context

    notes = []
    settings = resolve(None, None, None, None)
    if (settings.server != url or not settings.token) and not load_config()["contexts"] and not any(
            os.environ.get(k) for k in ("CELLPLANE_SERVER", "CELLPLANE_TOKEN")):
        try:
            path = save_context("default", url, token_path.read_text().strip(), None if org == "default" else org,
                                None)
        except OSError:
            pass
        else:
            notes.append(f"You had no saved login: saved one for {url} with the admin token ({path}).")
            settings = resolve(None, None, None, None)
    if settings.server != url or not settings.token:
        notes.append(f'Your saved login is for another server; first: export CELLPLANE_SERVER={url} '
                     f'CELLPLANE_TOKEN="$(cat {token_path})"')
    flags = f" -p {project}" if settings.project != project else ""
    return flags + (f" --org {org}" if settings.organization != org else ""), notes


def _after(at: str | None, since: datetime) -> bool:
    try:
        when = datetime.fromisoformat(at) if at else None
    except ValueError:
        return False
    return when is not None and (when if when.tzinfo else when.replace(tzinfo=UTC)) >= since


def start(demo: Demo, url: str, token_path: Path, org: str, stopping: threading.Event) -> threading.Thread:
    """Provision the demo in a daemon thread that ends soon after ``stopping`` is set."""
    token = token_path.read_text().strip()
    worker = Provisioner(demo, url, token, org, stopping)
    thread = threading.Thread(target=worker.run, args=(token_path,), name="demo", daemon=True)
    thread.start()
    return thread
