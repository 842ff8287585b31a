"""`apply`, `get`, `describe`, `delete`, `create project`, `create component`."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml
from rich.markup import escape

from cellplane import yamlload
from cellplane.cli.app import app, kind_or_fail, state
from cellplane.cli.client import ApiError, CliError
from cellplane.cli.output import (
    COLUMNS,
    DEPLOYMENT_COLUMNS,
    ENDPOINT_COLUMNS,
    Format,
    build_number,
    dump,
    endpoint_rows,
    err,
    out,
    replicas_ready,
    scaling_replicas,
    table,
)

if TYPE_CHECKING:
    from cellplane.model import KindInfo

create = typer.Typer(help="Create a resource.", no_args_is_help=True)
app.add_typer(create, name="create")

OUTPUT = typer.Option(Format.table, "-o", "--output", help="table, json or yaml")
PROJECT = typer.Option(None, "--project", "-p", help="project (default: the context's)")


SUFFIXES = (".yaml", ".yml", ".json")


def read_documents(sources: list[str], recursive: bool = False) -> tuple[list[Any], list[str]]:
    """Documents from files, directories (``recursive``: and their subdirectories) and '-' (stdin), with a label
    per document for error messages."""
    docs, labels = [], []
    for source in sources:
        if source == "-":
            items = [("<stdin>", sys.stdin.read())]
        else:
            path = Path(source)
            if path.is_dir():
                files = directory_files(path, recursive)
                if not files:
                    deeper = "" if recursive or not directory_files(path, True) else " (its subdirectories have "\
                        "some: add -R)"
                    raise CliError(f"{source}: no .yaml, .yml or .json files in this directory{deeper}")
            elif path.is_file():
                files = [path]
            else:
                raise CliError(f"{source}: no such file or directory")
            items = [(str(f), _read(f)) for f in files]
        for label, text in items:
            try:
                found = [d for d in yamlload.load_all(text) if d is not None]
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                problem = getattr(e, "problem", None) or str(e)
                raise CliError(f"{label}:{where}: not valid YAML: {problem}") from None
            for n, doc in enumerate(found, 1):
                docs.append(doc)
                labels.append(f"{label} (document {n})" if len(found) > 1 else label)
    if not docs:
        raise CliError("no documents to apply")
    return docs, labels


def directory_files(root: Path, recursive: bool) -> list[Path]:
    """The .yaml, .yml and .json files of ``root`` (``recursive``: of its whole tree, not following symbolic links
    to directories), in a stable order: by path, a directory's files and subdirectories by name, as kubectl walks.
    Cost: one directory listing per directory."""
    if not recursive:
        return sorted(p for p in root.iterdir() if p.suffix in SUFFIXES and p.is_file())
    found = []
    for folder, _, names in os.walk(root):
        found += [Path(folder, n) for n in names if Path(n).suffix in SUFFIXES and Path(folder, n).is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"{path}: cannot read: {e}") from None


@app.command()
def apply(
    ctx: typer.Context,
    filename: list[str] = typer.Option(..., "-f", "--filename", help="YAML file, directory, or - for stdin"),
    recursive: bool = typer.Option(False, "-R", "--recursive", help="read the directories' subdirectories too"),
    project: str = PROJECT,
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and show what would change"),
    output: Format = OUTPUT,
) -> None:
    """Create or update resources from YAML documents: all of them, or none.

    Cellplane's documents and OpenChoreo's (docs/openchoreo.md) are all checked before any is stored: a bad field
    anywhere refuses the whole set, naming the file and the field."""
    st = state(ctx)
    docs, labels = read_documents(filename, recursive)
    body = {"organization": st.org, "project": st.project(project, required=False), "documents": docs}
    try:
        result = st.client.post("/apply", body, dryRun=dry_run or None)
    except ApiError as e:
        raise CliError(_with_labels(str(e), labels)) from None
    if output != Format.table:
        return dump(result, output)
    suffix = " (dry run)" if dry_run else ""
    for r in result["results"]:
        detail = f" ({r['detail']})" if r.get("detail") else ""
        out.print(escape(f"{r['kind'].lower()}/{r['name']} {r['action']}{detail}{suffix}"))
        for w in r.get("warnings") or []:
            err.print(f"[yellow]warning:[/] {escape(w)}")
    for w in result.get("warnings") or []:  # documents that applied nothing (OpenChoreo's SecretReference, ...)
        err.print(f"[yellow]warning:[/] {escape(_with_labels(w, labels))}")


def _with_labels(message: str, labels: list[str]) -> str:
    """Name the file of a document instead of its index in the request."""
    return re.sub(r"documents\[(\d+)\](?:\.|: )?",
                  lambda m: f"{labels[int(m.group(1))]}: " if int(m.group(1)) < len(labels) else m.group(0), message)


DEPLOYMENT_WORDS = ("deployments", "deployment", "deploy")
ENDPOINT_WORDS = ("endpoints", "endpoint", "ep")
KINDS_HINT = ("organizations, projects, components, environments, deploymentpipelines, dataplanes, "
              "deployments, endpoints")


@app.command()
def get(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="organizations, projects, components, environments, ..., "
                               "deployments, endpoints"),
    name: str = typer.Argument(None, help="one resource by name (deployments, endpoints: of this component)"),
    project: str = PROJECT,
    env: str = typer.Option(None, "--env", "-e", help="deployments and endpoints: of this environment only"),
    output: Format = OUTPUT,
    limit: int = typer.Option(None, "--limit", min=1, help="show at most this many"),
) -> None:
    """List resources of a kind, or show one; also what is deployed (deployments) and where (endpoints)."""
    st = state(ctx)
    word = kind.lower()
    if word in DEPLOYMENT_WORDS or word in ENDPOINT_WORDS:
        return _get_deployed(ctx, word in DEPLOYMENT_WORDS, name, project, env, output, limit)
    from cellplane.model import kind_info

    info = kind_info(kind)
    if info is None:
        raise CliError(f"'{kind}' is not a kind; use one of: {KINDS_HINT}")
    if env:
        raise CliError("--env applies to deployments and endpoints only")
    proj = st.project(project, required=name is not None) if info.scope == "project" else None
    base = st.base(info, proj)
    if name:
        doc = st.client.get(f"{base}/{name}")
        return dump(doc, output) if output != Format.table else table([doc], COLUMNS[info.kind])
    items = list(st.client.list_all(base, limit))
    if output != Format.table:
        return dump({"apiVersion": "cellplane.dev/v1alpha1", "kind": f"{info.kind}List", "items": items}, output)
    table(items, COLUMNS[info.kind], empty=f"No {info.plural} found.")


def _get_deployed(ctx: typer.Context, deployments: bool, component: str | None, project: str | None,
                  env: str | None, output: Format, limit: int | None) -> None:
    """`get deployments` / `get endpoints`: what runs in which environment, and the URLs to call it."""
    st = state(ctx)
    proj = st.project(project, required=False)
    path = f"/organizations/{st.org}/{'deployments' if deployments else 'endpoints'}"
    items = st.client.get(path, environment=env, project=proj, component=component if deployments else None)["items"]
    if component and not deployments:  # the endpoints list has no component filter
        items = [e for e in items if e.get("component") == component]
    items = items[:limit] if limit else items
    if output != Format.table:
        return dump({"items": items}, output)
    if deployments:
        table(items, DEPLOYMENT_COLUMNS, empty="No deployments found.")
    else:
        table(endpoint_rows(items), ENDPOINT_COLUMNS, empty="No endpoints found.")


@app.command()
def describe(ctx: typer.Context, kind: str = typer.Argument(...), name: str = typer.Argument(...),
             project: str = PROJECT, output: Format = OUTPUT,
             env: str = typer.Option(None, "--env", "-e", help="projects: draw the project's cell in this "
                                     "environment: its components, endpoints and connections, with their traffic"),
             window: str = typer.Option(None, "--window", help="with --env: the traffic of this trailing window "
                                        "[default: 5m]")) -> None:
    """Show one resource in detail (components: endpoints, connections and configuration).

    describe project P --env ENV draws the project's cell there: components, endpoints and connections with their
    requests per second and errors."""
    st = state(ctx)
    info = kind_or_fail(kind)
    if env is not None or window is not None:
        from cellplane.cli.charts import duration
        from cellplane.cli.commands_observe import show_graph

        if info.kind != "Project" or env is None:
            raise CliError("--env and --window apply to describe project P --env ENV only" if info.kind != "Project"
                           else "--window needs --env: the environment to draw the project's cell in")
        graph = st.client.get(f"{st.base(info)}/{name}/graph", environment=env,
                              window=duration(window, "--window"))
        return dump(graph, output) if output != Format.table else show_graph(graph)
    proj = st.project(project) if info.scope == "project" else None
    doc = st.client.get(f"{st.base(info, proj)}/{name}")
    config = builds = deployments = scaling = None
    if info.kind == "Component":
        config = st.client.get(f"{st.base(info, proj)}/{name}/config")["items"]
        builds = st.client.get(f"{st.base(info, proj)}/{name}/builds", limit=3)["items"]
        deployments = st.client.get(f"{st.base(info, proj)}/{name}/deployments")["items"]
        scaling = st.client.get(f"{st.base(info, proj)}/{name}/scaling")["items"]
    if output != Format.table:
        return dump({**doc, "configuration": config, "builds": builds, "deployments": deployments,
                     "scaling": scaling} if config is not None else doc, output)
    _describe(info, doc, config, builds)
    if scaling is not None and doc["spec"].get("type") not in ("scheduled-task", "manual-task", "api-proxy"):
        from cellplane.cli.commands_scale import show_scaling

        out.print()
        out.print("[bold]Scaling[/]")
        show_scaling(scaling)
    if deployments is not None:
        _describe_deployments(doc["metadata"]["name"], deployments)


def _describe_deployments(component: str, deployments: list[dict[str, Any]]) -> None:
    out.print()
    out.print("[bold]Deployments[/]")
    table(deployments, [
        ("ENVIRONMENT", lambda d: d["environment"]), ("STATE", lambda d: d.get("state")),
        ("RELEASE", lambda d: d.get("release")), ("BUILD", build_number), ("READY", replicas_ready),
        ("REPLICAS", scaling_replicas),
        ("MESSAGE", lambda d: d.get("message") or (d.get("scalingStatus") or {}).get("reason") or None)],
        empty=f"Not deployed: cellplane deploy {component} --env development")
    rows = endpoint_rows([{**e, "environment": d["environment"]} for d in deployments
                          for e in d.get("endpoints") or []])
    if rows:
        out.print()
        table(rows, [("ENVIRONMENT", lambda e: e["environment"]), ("ENDPOINT", lambda e: e["name"]),
                     ("VISIBILITY", lambda e: e["reach"]), ("URL", lambda e: e["url"])])


def _describe(info: KindInfo, doc: dict[str, Any], config: list[dict[str, Any]] | None,
              builds: list[dict[str, Any]] | None = None) -> None:
    meta, spec = doc["metadata"], doc["spec"]
    where = "/".join(p for p in (meta.get("organization"), meta.get("project")) if p)
    out.print(f"[bold]{info.kind}[/] {meta['name']}" + (f"  ({where})" if where else ""))
    out.print(f"  generation {meta.get('generation')}, created {meta.get('creationTimestamp')}")
    for key in ("labels", "annotations"):
        if meta.get(key):
            out.print(f"  {key}: " + escape(", ".join(f"{k}={v}" for k, v in meta[key].items())))
    if info.kind != "Component":
        out.print(escape(yaml.safe_dump({"spec": spec}, sort_keys=False).rstrip()))
        return
    schedule = f"  schedule: {spec['schedule']['cron']}" if spec.get("schedule") else ""
    out.print(escape(f"  type: {spec.get('type')}{schedule}"))
    src = spec.get("source") or {}
    if src.get("repository"):
        ref = src.get("branch") or src.get("ref") or "default branch"
        out.print(escape(f"  source: {src['repository']} @ {ref}, path {src.get('path', '.')}"))
    out.print()
    table(spec.get("endpoints") or [], [
        ("ENDPOINT", lambda e: e["name"]), ("PORT", lambda e: e["port"]), ("TYPE", lambda e: e["type"]),
        ("BASE PATH", lambda e: e.get("basePath")), ("VISIBILITY", lambda e: ", ".join(e.get("visibility", []))),
        ("CONTRACT", lambda e: e.get("contract"))], empty="No endpoints.")
    out.print()
    table(spec.get("dependencies") or [], [
        ("CONNECTION", lambda d: d["name"]),
        ("TARGET", lambda d: d.get("url") or "/".join(x for x in (d.get("project"), d.get("component"),
                                                                     d.get("endpoint")) if x)),
        ("ENV", lambda d: ", ".join(f"{e['to']}←{e['from']}" for e in d.get("env") or []))], empty="No connections.")
    out.print()
    table(config or [], [
        ("CONFIG", lambda c: c["key"]), ("VALUE", lambda c: c.get("value")), ("SECRET", lambda c: c["secret"]),
        ("ENVIRONMENT", lambda c: c.get("environment") or "all"), ("SOURCE", lambda c: c.get("source"))],
        empty="No configuration.")
    out.print()
    table(builds or [], [
        ("BUILD", lambda b: f"{b['id']} #{b['number']}"), ("TRACK", lambda b: b["track"]),
        ("STATE", lambda b: b["state"]), ("STRATEGY", lambda b: (b.get("detection") or {}).get("strategy", "")),
        ("COMMIT", lambda b: (b.get("commit") or "")[:12]), ("ARTIFACT", lambda b: (b.get("artifact") or "")[:19])],
        empty="No builds yet: cellplane build " + doc["metadata"]["name"])


@app.command()
def delete(ctx: typer.Context, kind: str = typer.Argument(...), name: str = typer.Argument(...),
           project: str = PROJECT) -> None:
    """Delete a resource and everything it owns."""
    st = state(ctx)
    info = kind_or_fail(kind)
    proj = st.project(project) if info.scope == "project" else None
    result = st.client.delete(f"{st.base(info, proj)}/{name}")
    for item in result["deleted"]:
        out.print(f"{item} deleted")


@create.command("project")
def create_project(ctx: typer.Context, name: str = typer.Argument(...),
                   display_name: str = typer.Option(None, "--display-name"),
                   description: str = typer.Option(None, "--description"),
                   pipeline: str = typer.Option(None, "--pipeline", help="deployment pipeline (default: default)")
                   ) -> None:
    """Create a project (a cell in every environment)."""
    st = state(ctx)
    spec = {k: v for k, v in {"displayName": display_name, "description": description,
                              "deploymentPipeline": pipeline}.items() if v is not None}
    st.client.post(f"/organizations/{st.org}/projects", {"metadata": {"name": name}, "spec": spec})
    out.print(f"project/{name} created")


@create.command("component")
def create_component(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    project: str = PROJECT,
    source: str = typer.Option(..., "--source", help="directory or git URL"),
    path: str = typer.Option(".", "--path", help="sub-directory of the component in the source"),
    branch: str = typer.Option(None, "--branch"),
    ref: str = typer.Option(None, "--ref", help="tag or commit"),
    type_: str = typer.Option(None, "--type", help="component type (default: from the source, else service)"),
    port: int = typer.Option(None, "--port", min=1, max=65535,
                             help="declare a REST endpoint 'web' on this port (for a source without descriptors; "
                                  "replaces the endpoints they declare)"),
    visibility: str = typer.Option(None, "--visibility",
                                   help="with --port: Public (the default), Organization or Project"),
    base_path: str = typer.Option(None, "--base-path", help="with --port: the endpoint's base path (default /)"),
    output: Format = OUTPUT,
) -> None:
    """Create a component from its source; `.choreo/` descriptors (or OpenChoreo's workload.yaml) there give its
    endpoints and connections.

    A source without descriptors (a plain Flask or Express app) gets its endpoint from --port.
    """
    from cellplane.openchoreo.repository import read_source_descriptors

    st = state(ctx)
    proj = st.project(project)
    body: dict[str, Any] = {"name": name, "source": {"repository": source, "path": path}}
    local = Path(source).expanduser()
    if local.is_dir() and not branch and not ref:
        root = local.resolve()
        target = (root / path).resolve()
        if not target.is_dir():
            raise CliError(f"--path {path}: no such directory in {root}")
        body["source"]["repository"] = str(root)
        body["files"] = read_source_descriptors(target)
    elif local.is_dir():
        body["source"]["repository"] = str(local.resolve())
    for key, value in (("branch", branch), ("ref", ref)):
        if value:
            body["source"][key] = value
    if port is None and (visibility or base_path):
        raise CliError("--visibility and --base-path describe the endpoint that --port declares: give --port too")
    body["spec"] = {}
    if type_:
        body["spec"]["type"] = type_
    if port is not None:
        body["spec"]["endpoints"] = [{"name": "web", "port": port, "type": "REST", "basePath": base_path or "/",
                                      "visibility": [visibility or "Public"]}]
    result = st.client.post(f"/organizations/{st.org}/projects/{proj}/component-imports", body)
    if output != Format.table:
        return dump(result, output)
    out.print(f"component/{name} created" + (f" from {result['descriptor']}" if result.get("descriptor") else ""))
    for w in result.get("warnings") or []:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    eps = result["component"]["spec"].get("endpoints") or []
    for e in eps:
        out.print(escape(f"  endpoint {e['name']}: port {e['port']} {e['type']} {e.get('basePath', '/')} "
                         f"({', '.join(e.get('visibility', []))})"))
