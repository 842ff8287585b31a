"""`dataplane run` (the agent that runs deployments on this machine) and `up` (a control plane and a data plane)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import typer
from rich.markup import escape

from cellplane.cli.app import app, state
from cellplane.cli.client import ApiError, Client, CliError
from cellplane.cli.commands_server import default_data_dir
from cellplane.cli.output import err, out
from cellplane.datadir import make_private, use_private_umask
from cellplane.runtime.launch import port_is_free

if TYPE_CHECKING:
    from cellplane.cli.demo import Demo

dataplane = typer.Typer(help="Run a data plane: the agent that runs deployments on this machine.",
                        no_args_is_help=True)
app.add_typer(dataplane, name="dataplane")

INSTALLERS = ("auto", "uv", "pip")
AGENT_TOKEN_FILE = "dataplane.token"  # `up`'s agent token, next to admin.token in the data directory
ADMIN_PASSWORD_FILE = "admin-password"  # the admin's first console password, next to admin.token (0600)
HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
DEMO_STOP_TIMEOUT = 5.0


def _installer(value: str) -> str:
    if value not in INSTALLERS:
        raise CliError(f"--python-installer {value}: use auto, uv or pip")
    return value


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"--token-file {path}: cannot read: {e.strerror if isinstance(e, OSError) else e}") from None
    if not token:
        raise CliError(f"--token-file {path}: the file is empty")
    return token


RUN_HELP = (
    "Run the data-plane agent until Ctrl-C or SIGTERM.\n\n"
    "It registers with the control plane, pulls what should run, runs each replica as a supervised process behind "
    "its gateway, and reports status and logs. It keeps serving while the control plane is away, and restarts from "
    "its cached state. Its calls need the data plane's agent token (`cellplane dataplane token`) or an admin token "
    "(permission dataplanes:update). A --token-file is read again whenever the control plane refuses the token: "
    "replace the file to rotate the token without a restart.")


@dataplane.command("run", help=RUN_HELP)
def run(
    ctx: typer.Context,
    controlplane: str = typer.Option(None, "--controlplane",
                                     help="control plane URL (default: --server, CELLPLANE_SERVER or the login "
                                     "context's)"),
    token_file: Path = typer.Option(None, "--token-file",
                                    help="read the API token from this file (default: the global --token, "
                                    "CELLPLANE_TOKEN, then the login context's)"),
    data_dir: Path = typer.Option(None, "--data-dir",
                                  help="the agent's state, artifacts and spooled logs "
                                  "(default: $CELLPLANE_HOME/dataplane, else .cellplane/dataplane)"),
    name: str = typer.Option("local", "--name", help="name of this data plane"),
    gateway_host: str = typer.Option("127.0.0.1", "--gateway-host",
                                     help="address of the external listeners (internal ones stay on 127.0.0.1)"),
    gateway_port: int = typer.Option(0, "--gateway-port", min=0, max=65535,
                                     help="first port the gateway's listeners try (0: free ports)"),
    no_bind: bool = typer.Option(False, "--no-bind",
                                 help="do not bind the organization's environments that have no data plane"),
    cache_dir: Path = typer.Option(None, "--cache-dir", envvar="CELLPLANE_CACHE_DIR",
                                   help="language runtimes and dependency caches (default: DATA_DIR/cache)"),
    python_installer: str = typer.Option("auto", "--python-installer", envvar="CELLPLANE_PYTHON_INSTALLER",
                                         help="auto (uv, else pip), uv or pip: how runtimes are installed"),
    heartbeat: float = typer.Option(10.0, "--heartbeat", metavar="SECONDS", min=0.5, max=25,
                                    help="seconds between status reports when nothing changes (the control plane "
                                    "shows a data plane unreachable after 30 s without one)"),
    metrics_interval: float = typer.Option(10.0, "--metrics-interval", metavar="SECONDS", min=0.1, max=600,
                                           help="length of the metrics windows sent to the control plane"),
    metrics_port: int = typer.Option(0, "--metrics-port", metavar="PORT", min=0, max=65535,
                                     help="port of the Prometheus endpoint (GET /metrics) on --gateway-host "
                                     "(0: a free port; its URL is printed and reported)"),
    no_metrics_endpoint: bool = typer.Option(False, "--no-metrics-endpoint",
                                             help="do not open the Prometheus endpoint"),
    access_log_rate: float = typer.Option(200.0, "--access-log-rate", metavar="N", min=0,
                                          help="access-log lines sent to the control plane per second at most "
                                          "(bursts of 10 s worth; the local access.log keeps every line)"),
    gateway_workers: int = typer.Option(0, "--gateway-workers", metavar="N", min=0, max=64,
                                        help="gateway processes besides the agent's own, sharing its listeners "
                                        "(default 0: the agent serves alone; see docs/performance.md)"),
    kubernetes: bool = typer.Option(False, "--kubernetes",
                                    help="run the workloads in a Kubernetes cluster instead of on this machine "
                                    "(docs/kubernetes.md): the data plane registers as type kubernetes"),
    kubeconfig: Path = typer.Option(None, "--kubeconfig", metavar="FILE",
                                    help="with --kubernetes: the cluster's kubeconfig (its current context; default: "
                                    "the pod's service account when the agent runs in the cluster)"),
    external_url: str = typer.Option(None, "--external-url", metavar="URL",
                                     help="with --kubernetes: the base URL of the data plane's external gateway as "
                                     "users reach it (reported as the environments' external gateway)"),
    internal_url: str = typer.Option(None, "--internal-url", metavar="URL",
                                     help="with --kubernetes: the base URL of its internal gateway"),
    drift_interval: float = typer.Option(30.0, "--drift-interval", metavar="SECONDS", min=1, max=3600,
                                         help="with --kubernetes: seconds between reads of every object the agent "
                                         "manages (objects edited or deleted by hand are applied again)"),
    serve_gateways: bool = typer.Option(False, "--serve-gateways",
                                        help="with --kubernetes: the agent serves the data plane's external and "
                                        "internal Cellplane gateways itself, on --gateway-host (docs/kubernetes.md)"),
    external_port: int = typer.Option(8080, "--external-port", min=0, max=65535,
                                      help="with --serve-gateways: the first environment's external listener "
                                      "(each further environment the next port but one; 0: free ports)"),
    internal_port: int = typer.Option(8081, "--internal-port", min=0, max=65535,
                                      help="with --serve-gateways: the first environment's internal listener"),
    gateway_environment: list[str] = typer.Option([], "--gateway-environment", metavar="ENV",
                                                  help="with --serve-gateways: an environment taking the next pair "
                                                  "of ports, in order (repeat; the install manifest passes them)"),
) -> None:
    st = state(ctx)
    installer = _installer(python_installer)
    url = (controlplane or st.settings.server).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--controlplane {url}: give a URL such as http://127.0.0.1:8780")
    global_token = ctx.find_root().params.get("token")  # `--token` (before or after the command) is global
    from_file = token_file if not (global_token or os.environ.get("CELLPLANE_TOKEN")) else None
    secret = global_token or os.environ.get("CELLPLANE_TOKEN") or (
        _read_token(token_file) if token_file else None) or st.settings.token
    if not secret:
        raise CliError("no API token: pass --token-file FILE (made by `cellplane dataplane token --output FILE`) "
                       "or set CELLPLANE_TOKEN")
    from cellplane.dataplane.agent import AgentSettings, run_agent

    serve = None
    if serve_gateways:
        from cellplane.kubernetes.gateways import ServeGateways
        serve = ServeGateways(gateway_host, external_port, internal_port,
                              environments=tuple(dict.fromkeys(gateway_environment)))
    make_runtime = (_kubernetes_runtime(kubeconfig, external_url, internal_url, drift_interval, serve)
                    if kubernetes else None)
    if not kubernetes and (kubeconfig or external_url or internal_url or serve_gateways):
        raise CliError("--kubeconfig, --external-url, --internal-url and --serve-gateways go with --kubernetes")
    use_private_umask()  # its data directory's files, and its replicas' unless they say otherwise
    settings = AgentSettings(
        controlplane=url, token=secret, token_file=from_file.resolve() if from_file else None,
        data_dir=data_dir or default_data_dir() / "dataplane", name=name,
        organization=st.org, gateway_host=gateway_host, gateway_port=gateway_port,
        bind_unbound=not no_bind, cache_dir=cache_dir, python_installer=installer, heartbeat=heartbeat,
        metrics_interval=metrics_interval,
        metrics_port=None if no_metrics_endpoint else metrics_port, access_log_rate=access_log_rate,
        gateway_workers=gateway_workers, runtime="kubernetes" if kubernetes else "local")
    raise typer.Exit(run_agent(settings, make_runtime))


def _kubernetes_runtime(kubeconfig: Path | None, external_url: str | None, internal_url: str | None,
                        drift_interval: float, gateways: Any = None) -> Any:
    """The Kubernetes runtime's factory; the configuration is read here, so that a bad one is one line."""
    from cellplane.errors import CellplaneError
    from cellplane.kubernetes.client import load_config
    from cellplane.kubernetes.runtime import KubernetesSettings, runtime_factory

    for flag, url in (("--external-url", external_url), ("--internal-url", internal_url)):
        if url is not None and not url.startswith(("http://", "https://")):
            raise CliError(f"{flag} {url}: give a URL such as https://apps.example.com")
    try:
        load_config(kubeconfig)
    except CellplaneError as e:
        raise CliError(e.message) from None
    return runtime_factory(KubernetesSettings(
        kubeconfig=kubeconfig.resolve() if kubeconfig else None, drift_interval=drift_interval,
        external_url=external_url.rstrip("/") if external_url else None,
        internal_url=internal_url.rstrip("/") if internal_url else None, gateways=gateways))


@dataplane.command("token")
def token(
    ctx: typer.Context,
    name: str = typer.Option("local", "--name", help="the data plane (created when absent)"),
    token_name: str = typer.Option("agent", "--token-name", help="the token's name"),
    expires_in_days: int = typer.Option(None, "--expires-in-days", min=1, max=3650),
    bind_unbound: bool = typer.Option(False, "--bind-unbound",
                                      help="also bind every environment without a data plane to this one"),
    output: Path = typer.Option(None, "--output", "-o", metavar="FILE",
                                help="write the token to FILE (mode 0600) instead of stdout: `dataplane run "
                                "--token-file FILE` reads it, and again whenever the control plane refuses it"),
) -> None:
    """Make a token for a data plane's agent: it may register that data plane, pull what it runs and report for it,
    and nothing else. Needs an admin token. Printed once, on stdout alone (or written to --output)."""
    st = state(ctx)
    result = agent_token(st.client, st.org, name, token_name, expires_in_days, bind_unbound)
    what = f"token {result['id']} of the agent of data plane '{name}' (user {result['user']})"
    if output is None:
        err.print(what + " (shown once; store it safely):")
        print(result["token"])
        return
    save_token(output, result["token"])
    err.print(f"{what} written to {escape(str(output))} (mode 0600)")


def agent_token(client: Client, org: str, name: str, token_name: str, expires_in_days: int | None = None,
                bind_unbound: bool = False) -> dict[str, Any]:
    """A new token of data plane ``name``'s agent (through the API, as the caller)."""
    body: dict[str, Any] = {"name": token_name, "bindUnbound": bind_unbound}
    if expires_in_days:
        body["expiresInDays"] = expires_in_days
    return client.post(f"/organizations/{org}/dataplanes/{name}/tokens", body)


def save_token(path: Path, token: str) -> None:
    from cellplane.privatefiles import write_private

    try:
        write_private(path, token + "\n")
    except OSError as e:
        raise CliError(f"{path}: cannot write: {e.strerror or e}") from None


# -- up ----------------------------------------------------------------------------------------------------------

_WRITE = threading.Lock()


def _write(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text)
        sys.stderr.flush()


class _Child:
    """A process in its own process group whose output goes to our stderr, each line prefixed with its name.

    Until ``go_live`` its lines are held back (and shown when it fails to start)."""

    def __init__(self, name: str, label: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.label = name, label
        self.tail: deque[str] = deque(maxlen=30)
        self.held: deque[str] = deque(maxlen=1000)
        self.live = False
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.thread = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True,
                                       name=f"{name}-output")
        self.thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            with _WRITE:
                self.tail.append(line)
                if self.live:
                    _write(f"[{self.name}] {line}\n")
                else:
                    self.held.append(line)

    def go_live(self) -> None:
        with _WRITE:
            _write("".join(f"[{self.name}] {line}\n" for line in self.held))
            self.held.clear()
            self.live = True

    def last_lines(self) -> str:
        self.thread.join(timeout=2)
        with _WRITE:
            return "".join(f"[{self.name}] {line}\n" for line in self.tail)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, force: threading.Event) -> None:
        """SIGTERM, then SIGKILL to its whole process group after STOP_TIMEOUT s (or at once on a second Ctrl-C)."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.running() and time.monotonic() < deadline and not force.is_set():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.1)
        if self.running():
            _write(f"the {self.label} did not stop in time: killing it\n" if not force.is_set() else "")
            _kill_tree(self.proc.pid)
            self.proc.wait()
        self.thread.join(timeout=2)


def _kill_tree(pid: int) -> None:
    """SIGKILL a child and everything under it: a data plane's workloads run in sessions of their own, so a
    kill of its process group alone would leave them running."""
    import psutil

    from cellplane.processes import freeze_and_kill

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        tree = []
    freeze_and_kill(tree, owned=pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _cellplane() -> list[str]:
    """This very installation's `cellplane` command."""
    script = Path(sys.executable).parent / "cellplane"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "cellplane.cli.main"]


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _gateways(data_dir: Path, since: datetime) -> dict[str, Any] | None:
    """The gateways the agent reports (its status file), once it has any and has written that file at or after
    ``since``: a previous agent's file on the same data directory names listeners nobody serves any more. The
    agent writes it first once it has registered, applied its desired state and routed it (a path it deploys
    answers 503 until a replica is ready, never 404)."""
    try:
        status = json.loads((data_dir / "status.json").read_text())
        at = datetime.fromisoformat(status["at"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if (at if at.tzinfo else at.replace(tzinfo=UTC)) < since:
        return None
    gateways = status.get("gateways") if isinstance(status, dict) else None
    return gateways if isinstance(gateways, dict) and gateways else None


def _listeners(gateways: dict[str, Any]) -> list[str]:
    """The external listeners' URLs `up` prints."""
    return [str(g["external"]) for g in gateways.values() if isinstance(g, dict) and g.get("external")]


def _serving(data_dir: Path, since: datetime) -> bool:
    """This run's agent has reported its gateways, and each external listener `up` prints answers HTTP."""
    from cellplane.cli.answering import why_not

    gateways = _gateways(data_dir, since)
    return gateways is not None and all(why_not(u, listener=True) is None for u in _listeners(gateways))


UP_HELP = (
    "Run a control plane and a data plane on this machine, until Ctrl-C or SIGTERM stops both.\n\n"
    "Both run as child processes, each in its own process group; their output is shown here, each line prefixed "
    "with \\[controlplane] or \\[dataplane]. If one of them dies, the other goes on (the data plane keeps serving "
    "without its control plane) until Ctrl-C, and `up` then exits 1.\n\n"
    "Killing `up` itself with SIGKILL leaves both running, on purpose: the data plane keeps serving without its "
    "control plane. Stop them then with `kill -TERM -PID` (their process ids are printed at start).\n\n"
    "With --demo FILE (`make run` passes examples/demo/demo.yaml), once both are up: when the file's project does "
    "not exist yet, it is created, each component's directory is built and deployed to development; then the demo's "
    "URLs, a curl line and commands to try are printed (the next run builds nothing).")


@app.command(help=UP_HELP)
def up(
    ctx: typer.Context,
    data_dir: Path = typer.Option(None, "--data-dir",
                                  help="data of both planes (default: $CELLPLANE_HOME, else .cellplane)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address the control plane listens on"),
    port: int = typer.Option(8780, "--port", min=1, max=65535, help="port of the control plane"),
    gateway_port: int = typer.Option(8800, "--gateway-port", min=0, max=65535,
                                     help="first port the data plane's gateway listeners try (0: free ports)"),
    build_workers: int = typer.Option(2, "--build-workers", min=0, max=64, envvar="CELLPLANE_BUILD_WORKERS",
                                      help="builds the control plane runs at once"),
    cache_dir: Path = typer.Option(None, "--cache-dir", envvar="CELLPLANE_CACHE_DIR",
                                   help="runtimes and dependency caches, shared by builds and the data plane "
                                   "(default: DATA_DIR/cache)"),
    demo_file: Path = typer.Option(None, "--demo", metavar="FILE",
                                   help="a demo project (YAML, e.g. examples/demo/demo.yaml): created, built and "
                                   "deployed to development on the first run, its URLs printed on every run"),
) -> None:
    st = state(ctx)
    demo = _load_demo(demo_file)
    data_dir = (data_dir or default_data_dir()).resolve()
    use_private_umask()  # both planes inherit it: whatever they create is their user's alone
    make_private(data_dir, "the data directory")
    cache = (cache_dir or data_dir / "cache").resolve()
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104  (a wildcard address is probed on loopback)
    url = f"http://{'[' + probe_host + ']' if ':' in probe_host else probe_host}:{port}"
    if not port_is_free(port, host):
        raise CliError(f"port {port} on {host} is in use (is a control plane running already?): use --port")
    env = {k: v for k, v in os.environ.items() if k not in ("CELLPLANE_TOKEN", "CELLPLANE_SERVER")}
    env["PYTHONUNBUFFERED"] = "1"

    stopping, force = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        (force if stopping.is_set() else stopping).set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[_Child] = []
    try:
        cp = _Child("controlplane", "control plane", [
            *_cellplane(), "controlplane", "serve", "--host", host, "--port", str(port), "--data-dir", str(data_dir),
            "--build-workers", str(build_workers), "--cache-dir", str(cache)], env)
        children.append(cp)
        failure = _until(lambda: _healthy(url), cp, stopping, HEALTH_TIMEOUT, f"answer on {url}/healthz")
        token_path = data_dir / "admin.token"
        agent_path = data_dir / AGENT_TOKEN_FILE
        if failure is None and not stopping.is_set():
            failure = _agent_token(url, st.org, agent_path, token_path, data_dir)
        if failure is None and not stopping.is_set():
            _admin_password(url, token_path, data_dir / ADMIN_PASSWORD_FILE)
        if failure is None and not stopping.is_set():
            since = datetime.now(UTC)
            dp = _Child("dataplane", "data plane", [
                *_cellplane(), "--org", st.org, "dataplane", "run", "--controlplane", url,
                "--token-file", str(agent_path), "--data-dir", str(data_dir / "dataplane"),
                "--gateway-port", str(gateway_port), "--cache-dir", str(cache)], env)
            children.append(dp)
            failure = _until(lambda: _serving(data_dir / "dataplane", since), dp, stopping, HEALTH_TIMEOUT,
                             "report its gateways", give_up_ok=True)
        if failure is not None:
            for child in reversed(children):
                child.stop(force)
            raise CliError(failure)
        for child in children:
            child.go_live()
        died: list[_Child] = []
        worker: threading.Thread | None = None
        demo_stop = threading.Event()  # set as soon as `up` stops waiting: on a signal, or when both planes died
        if not stopping.is_set():
            with _WRITE:
                _summary(url, data_dir, token_path, cp, children[1], since)
            worker = _start_demo(demo, url, token_path, st.org, demo_stop)
            while not stopping.is_set() and len(died) < len(children):
                for child in children:
                    if child not in died and not child.running():
                        died.append(child)
                        _report_death(child, [c for c in children if c not in died])
                stopping.wait(0.3)
        demo_stop.set()
        if worker is not None:
            worker.join(timeout=DEMO_STOP_TIMEOUT)  # it stops polling at once; its progress display is closed first
        _shutdown(children, force, died)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _agent_token(url: str, org: str, agent_path: Path, admin_path: Path, data_dir: Path) -> str | None:
    """See that ``agent_path`` holds a token the control plane accepts, else make the agent's token of data plane
    'local' there with the admin token (binding the organization's environments without a data plane to it). Returns
    why there is none."""
    def accepted(token: str) -> bool:
        client = Client(url, token, timeout=10)
        try:
            client.get("/whoami")
            return True
        except ApiError as e:
            if e.status == 401:
                return False
            raise
        finally:
            client.close()

    try:
        if agent_path.is_file() and (token := agent_path.read_text().strip()) and accepted(token):
            return None
        admin = admin_path.read_text().strip() if admin_path.is_file() else ""
        if not admin or not accepted(admin):
            where = "no admin token in" if not admin else "the admin token is refused in"
            return (f"no valid data-plane token in {agent_path}, and {where} {admin_path} to make one: run "
                    f"`cellplane admin recover-token --data-dir {data_dir} --output {admin_path}`, then `up` again")
        client = Client(url, admin, timeout=30)
        try:
            result = agent_token(client, org, "local", "up", bind_unbound=True)
        finally:
            client.close()
        save_token(agent_path, result["token"])
        return None
    except (CliError, OSError, UnicodeDecodeError) as e:
        return f"cannot make the data plane's token: {e}"


def _admin_password(url: str, token_path: Path, password_path: Path) -> None:
    """The admin's first console password, made once: generated, written to ``password_path`` (0600), then set with
    the admin token. Later runs leave it alone (the file is not updated when the admin changes the password; delete
    it to have the next run set a new one). A failure is one line on stderr: the console waits, `up` goes on."""
    import secrets

    from cellplane.privatefiles import write_private

    if password_path.exists() or not token_path.is_file():
        return
    password = secrets.token_urlsafe(18)
    write_private(password_path, password + "\n")
    try:
        Client(url, token_path.read_text().strip(), timeout=30).put("/users/admin/password", {"password": password})
    except (ApiError, CliError) as e:
        password_path.unlink(missing_ok=True)
        _write(f"the admin's console password was not set ({e}); set one with `cellplane user password admin`\n")


def _load_demo(path: Path | None) -> Demo | None:
    """The --demo file, checked before anything starts (None without --demo)."""
    if path is None:
        return None
    from cellplane.cli import demo

    return demo.load(path)


def _start_demo(demo: Demo | None, url: str, token_path: Path, org: str,
                stopping: threading.Event) -> threading.Thread | None:
    if demo is None:
        return None
    if not token_path.is_file():
        _write(f"the demo needs the admin token in {token_path}: not started\n")
        return None
    from cellplane.cli.demo import start

    return start(demo, url, token_path, org, stopping)


def _until(ready: Any, child: _Child, stopping: threading.Event, timeout: float, what: str,
           give_up_ok: bool = False) -> str | None:
    """Wait until ``ready()``; returns why it never was (None when ready, stopped by a signal, or after a
    timeout that ``give_up_ok`` tolerates)."""
    deadline = time.monotonic() + timeout
    while not stopping.is_set():
        if ready():
            return None
        if not child.running():
            _write(child.last_lines())
            return f"the {child.label} exited during start-up ({_how(child.proc.returncode)}; its last lines above)"
        if time.monotonic() > deadline:
            if give_up_ok:
                return None
            _write(child.last_lines())
            return f"the {child.label} did not {what} within {timeout:.0f}s (its last lines above)"
        stopping.wait(0.2)
    return None


def _how(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _summary(url: str, data_dir: Path, token_path: Path, cp: _Child, dp: _Child, since: datetime) -> None:
    from cellplane.cli.answering import why_not

    gateways = _gateways(data_dir / "dataplane", since) or {}
    late = {u: why for u in _listeners(gateways) if (why := why_not(u, listener=True))}  # `up` gave up on these
    out.print("[bold]Cellplane is up.[/]  Ctrl-C stops both planes.")
    out.print(f"  control plane  {url}  (pid {cp.proc.pid}, data {escape(str(data_dir))})")
    if token_path.is_file():
        out.print(f"  log in         cellplane login --server {url} --token \"$(cat {escape(str(token_path))})\"")
    else:
        out.print(f"  log in         no admin token in {escape(str(token_path))}: cellplane admin recover-token "
                  f"--data-dir {escape(str(data_dir))} --output {escape(str(token_path))}")
    password_path = data_dir / ADMIN_PASSWORD_FILE
    if password_path.is_file():
        out.print(f"  console        {url}/console/  (sign in as admin; the password is in "
                  f"{escape(str(password_path))})")
    else:
        out.print(f"  console        {url}/console/  (set a password first: cellplane user password admin)")
    state_ = "started" if gateways else "started (its gateways are not reported yet)"
    out.print(f"  data plane     local {state_}  (pid {dp.proc.pid}, data {escape(str(data_dir / 'dataplane'))})")
    for env, g in gateways.items():
        if isinstance(g, dict) and g.get("external"):
            why = f"  (does not answer yet: {late[g['external']]})" if g["external"] in late else ""
            out.print(escape(f"  gateway        {env}: {g['external']} (internal {g.get('internal') or '-'}){why}"))
    sys.stdout.flush()


def _report_death(child: _Child, survivors: list[_Child]) -> None:
    if survivors:
        going_on = " and the ".join(c.label for c in survivors)
        what = "keeps serving" if any(c.name == "dataplane" for c in survivors) else "goes on"
        _write(f"the {child.label} exited unexpectedly ({_how(child.proc.returncode)}); the {going_on} "
               f"{what} (Ctrl-C stops it)\n")


def _shutdown(children: list[_Child], force: threading.Event, died: list[_Child]) -> None:
    survivors = [c for c in children if c not in died]
    if survivors:
        _write("stopping " + " and the ".join(f"the {c.label}" if i == 0 else c.label
                                              for i, c in enumerate(reversed(survivors))) + "...\n")
    for child in reversed(survivors):  # the data plane first: it reports its last status to the control plane
        child.stop(force)
    if died:
        raise CliError(" and ".join(f"the {c.label} exited unexpectedly ({_how(c.proc.returncode)})" for c in died))
    _write("stopped\n")
