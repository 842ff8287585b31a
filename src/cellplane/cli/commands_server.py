"""`controlplane serve`, `login`, `whoami`, `version`."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape

from cellplane import API_VERSION, __version__
from cellplane.cli.app import app, state
from cellplane.cli.client import Client, CliError
from cellplane.cli.context import save_context
from cellplane.cli.output import Format, dump, err, out
from cellplane.datadir import use_private_umask

controlplane = typer.Typer(help="Run the control plane.", no_args_is_help=True)
app.add_typer(controlplane, name="controlplane")


def default_data_dir() -> Path:
    return Path(os.environ.get("CELLPLANE_HOME") or ".cellplane")


@controlplane.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8780, min=1, max=65535, help="port to listen on"),
    data_dir: Path = typer.Option(None, "--data-dir", help="data directory [env: CELLPLANE_HOME; default .cellplane]"),
    database_url: str = typer.Option(None, "--database-url", envvar="CELLPLANE_DATABASE_URL",
                                     help="postgresql+psycopg://... (default: SQLite in the data directory)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
    build_workers: int = typer.Option(2, "--build-workers", min=0, max=64, envvar="CELLPLANE_BUILD_WORKERS",
                                      help="builds run at once by this process (0: leave builds to other replicas)"),
    build_timeout: int = typer.Option(900, "--build-timeout", min=5, envvar="CELLPLANE_BUILD_TIMEOUT",
                                      help="seconds a build may run (a component's build.timeoutSeconds overrides)"),
    build_memory: int = typer.Option(2048, "--build-memory", min=64, envvar="CELLPLANE_BUILD_MEMORY",
                                     help="MiB of memory a build's processes may use together"),
    max_upload: int = typer.Option(100, "--max-upload", min=1, envvar="CELLPLANE_MAX_UPLOAD",
                                   help="MiB: the largest source archive a build accepts"),
    cache_dir: Path = typer.Option(None, "--cache-dir", envvar="CELLPLANE_CACHE_DIR",
                                   help="dependency caches and runtimes [default: DATA_DIR/cache]"),
    osv_database: Path = typer.Option(None, "--osv-database", envvar="CELLPLANE_OSV_DATABASE",
                                      help="offline OSV vulnerability database (.json, .zip or a directory)"),
    python_installer: str = typer.Option("auto", "--python-installer", envvar="CELLPLANE_PYTHON_INSTALLER",
                                         help="auto (uv, else pip), uv or pip: how builds install Python packages"),
    log_retention: str = typer.Option("7d", "--log-retention", envvar="CELLPLANE_LOG_RETENTION",
                                      help="how long workload and access log lines are kept"),
    trace_retention: str = typer.Option("2d", "--trace-retention", envvar="CELLPLANE_TRACE_RETENTION",
                                        help="how long spans are kept"),
    metric_retention: str = typer.Option("30d", "--metric-retention", envvar="CELLPLANE_METRIC_RETENTION",
                                         help="how long metric points are kept (raw for a day, then per 5 minutes)"),
    otlp_endpoint: str = typer.Option(None, "--otlp-endpoint", envvar="CELLPLANE_OTLP_ENDPOINT",
                                      help="export spans to this OTLP/HTTP collector URL "
                                           "(e.g. http://127.0.0.1:4318/v1/traces)"),
    alert_interval: float = typer.Option(5.0, "--alert-interval", min=0.1, max=300, envvar="CELLPLANE_ALERT_INTERVAL",
                                         help="seconds between two evaluations of the alert rules"),
    retention_interval: float = typer.Option(60.0, "--retention-interval", min=0.1, max=86400,
                                             envvar="CELLPLANE_RETENTION_INTERVAL",
                                             help="seconds between two passes of telemetry retention"),
) -> None:
    """Start the control plane's REST API (embedded SQLite unless --database-url is given) and its build workers."""
    import uvicorn

    from cellplane.controlplane.api.app import create_app
    from cellplane.controlplane.buildworker import BuildSettings
    from cellplane.controlplane.telemetry.loop import TelemetrySettings

    data_dir = (data_dir or default_data_dir()).resolve()
    use_private_umask()  # the database, its WAL, keys, builds: whatever this process creates is its user's alone
    if python_installer not in ("auto", "uv", "pip"):
        raise CliError(f"--python-installer {python_installer}: use auto, uv or pip")
    if osv_database is not None and not osv_database.exists():
        raise CliError(f"--osv-database {osv_database}: no such file or directory")
    if osv_database is None and (data_dir / "osv").exists():
        osv_database = data_dir / "osv"
    settings = BuildSettings(workers=build_workers, timeout=build_timeout, memory_mb=build_memory,
                             max_upload_mb=max_upload, cache_dir=cache_dir.resolve() if cache_dir else None,
                             osv_database=str(osv_database.resolve()) if osv_database else None,
                             python_installer=python_installer)
    telemetry = TelemetrySettings(alert_interval=alert_interval, retention_interval=retention_interval,
                                  log_retention=_duration("--log-retention", log_retention),
                                  trace_retention=_duration("--trace-retention", trace_retention),
                                  metric_retention=_duration("--metric-retention", metric_retention),
                                  otlp_endpoint=_url("--otlp-endpoint", otlp_endpoint))
    application = create_app(data_dir, database_url, settings, telemetry)
    platform = application.state.platform
    url = f"http://{host}:{port}"
    err.print(f"[bold]Cellplane {__version__}[/] control plane on [cyan]{url}[/] "
              f"(data: {data_dir}, database: {platform.store.backend})")
    if platform.created_admin:
        err.print(f"Created user 'admin'; its token is in {platform.admin_token_path} (mode 0600).")
    elif platform.admin_token_path.exists():
        err.print(f"The admin token is in {platform.admin_token_path}.")
    err.print(f"Log in from another terminal:  cellplane login --server {url} "
              f"--token \"$(cat {platform.admin_token_path})\"")
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=log_level == "debug")


def _duration(option: str, text: str) -> float:
    from cellplane.controlplane.telemetry import durations
    from cellplane.errors import CellplaneError

    try:
        return durations.seconds(text, option, 60.0, 3650 * 86400.0)
    except CellplaneError as e:
        raise CliError(e.message) from None


def _url(option: str, text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    if not text.startswith(("http://", "https://")):
        raise CliError(f"{option} {text}: give an http:// or https:// URL (the collector's /v1/traces)")
    return text.strip()


@app.command()
def login(
    ctx: typer.Context,
    server: str = typer.Option(..., "--server", help="control plane URL"),
    token: str = typer.Option(..., "--token", help="API token (use \"$(cat FILE)\" to keep it out of history)"),
    name: str = typer.Option("default", "--context", help="name of the saved context"),
) -> None:
    """Check a token against a control plane and save it as the current context."""
    settings = state(ctx).settings
    who = Client(server.rstrip("/"), token.strip()).get("/whoami")
    org = settings.organization if settings.organization != "default" else None
    path = save_context(name, server.rstrip("/"), token.strip(), org, settings.project)
    out.print(f"Logged in to {escape(server)} as [bold]{who['user']}[/] "
              f"(context '{escape(name)}', saved in {escape(str(path))}).")


@app.command()
def whoami(ctx: typer.Context, output: Format = typer.Option(Format.table, "-o", "--output")) -> None:
    """Show who the current token belongs to, and its roles."""
    who = state(ctx).client.get("/whoami")
    if output != Format.table:
        return dump(who, output)
    out.print(f"{who['user']}" + (" (platform administrator)" if who["superuser"] else ""))
    for r in who["roles"]:
        scope = (f"project {r['project']}" if r.get("project")
                 else f"environment {r['environment']}" if r.get("environment") else None)
        out.print(f"  {r['role']} on organization {r['organization']}" + (f", {scope}" if scope else ""))


@app.command()
def version(ctx: typer.Context, output: Format = typer.Option(Format.table, "-o", "--output")) -> None:
    """Show the CLI's version and, when reachable, the control plane's."""
    info: dict = {"client": {"version": __version__, "apiVersion": API_VERSION}}
    try:
        info["server"] = state(ctx).client.get("/version")
    except CliError as e:
        info["server"] = {"error": str(e)}
    if output != Format.table:
        return dump(info, output)
    out.print(f"Client: {__version__} ({API_VERSION})")
    server = info["server"]
    out.print(f"Server: {server['version']} ({server['database']})" if "version" in server
              else f"Server: unavailable ({escape(server['error'])})")
