"""The data-plane agent: pull desired state, keep it on disk, reconcile, report.

The agent never accepts a connection from the control plane. It long-polls the desired state, writes
it to ``desired.json`` and reconciles: listeners, workloads (rollouts), routes, task schedules and
manual runs. Status, logs, task runs and telemetry (access lines, metrics points, spans: see ``telemetry``)
flow back through outboxes that spool to disk while the control plane is away. Started without a reachable
control plane, it runs what ``desired.json`` says, and catches up once the control plane answers.

Reconciliation is level-triggered: it compares what should run with what runs, every time anything
changes and every few seconds, and does nothing when they agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from cellplane import __version__
from cellplane.dataplane import launchspec, leftovers
from cellplane.dataplane.cpclient import ApiRefused, ControlPlane, CredentialRefused, Unreachable
from cellplane.dataplane.leftovers import Ledger
from cellplane.dataplane.limits import CgroupManager
from cellplane.dataplane.localstate import LocalState
from cellplane.dataplane.network import Network
from cellplane.dataplane.outbox import Outbox
from cellplane.dataplane.sandbox import Isolation
from cellplane.dataplane.scheduler import Job, Scheduler, validate
from cellplane.dataplane.supervisor import Replica, ReplicaSpec, Supervisor
from cellplane.dataplane.telemetry import (
    MetricsEndpoint,
    ReplicaTelemetry,
    TokenBucket,
    access_line,
    counter,
    http_points,
    iso,
)
from cellplane.dataplane.workload import ReleaseSet, Workload
from cellplane.errors import CellplaneError
from cellplane.gateway.routes import Backend, Grant, RouteTable, Upstream
from cellplane.gateway.server import Gateway
from cellplane.runtime.artifacts import LocalArtifacts
from cellplane.runtime.launch import launch_command
from cellplane.runtime.materialize import DependencyCache
from cellplane.sealing import load_or_create_private, public_key_text

log = logging.getLogger("cellplane.dataplane")
HEARTBEAT = 10.0
RESYNC = 5.0
LONG_POLL = 30
HTTP_TYPES = {"REST", "GraphQL", "WebSocket"}
ACCESS_LOG_BYTES = 64 << 20
TELEMETRY_INTERVAL = 2.0  # seconds between batches of access lines, spans and metric points
RUN_ID = re.compile(r"run_[0-9a-f]{16}")


@dataclass
class AgentSettings:
    controlplane: str
    token: str
    data_dir: Path
    token_file: Path | None = None  # where the token came from: read again when the control plane refuses it
    name: str = "local"
    organization: str = "default"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 0
    bind_unbound: bool = True
    cache_dir: Path | None = None
    python_installer: str = "auto"
    metrics_interval: float = 10.0  # seconds per metrics window sent to the control plane
    metrics_port: int | None = 0  # the Prometheus endpoint on gateway_host (0: any free port; None: none)
    access_log_rate: float = 200.0  # access lines sent to the control plane per second at most (burst: 10 s worth)
    # gateway processes besides the agent's own; 0 by default: inside the agent they do not pay off yet
    # (docs/performance.md, "What limits the figures")
    gateway_workers: int = 0


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.state = LocalState(settings.data_dir)
        self.cp = ControlPlane(settings.controlplane, settings.token, settings.organization, settings.name,
                               settings.token_file)
        self.cache = DependencyCache(settings.cache_dir or settings.data_dir / "cache", settings.python_installer)
        self.artifacts = LocalArtifacts(settings.data_dir)
        self.isolation = Isolation(settings.data_dir, self.cache.root)
        self.workloads: dict[str, Workload] = {}
        self.desired: dict[str, Any] | None = None
        self._dirty = asyncio.Event()
        self._reconcile_wanted = asyncio.Event()
        self._reconciling = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._grants: tuple[Grant, ...] = ()
        self._access: BinaryIO | None = None
        self._unschedulable: set[Job] = set()  # jobs already said to be invalid
        self._route_table: RouteTable | None = None  # what the gateway routes now
        self._told: dict[str, tuple[str, str]] = {}  # replica key -> the (state, message) last told as an event
        # undeployed workloads being drained and stopped: id -> (task, (environment, project, component))
        self._stopping: dict[str, tuple[asyncio.Task[None], tuple[str, str, str]]] = {}
        self.connected = False
        self.replica_telemetry = ReplicaTelemetry()
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.access_unshipped = 0  # routed access lines not sent (over access_log_rate)
        self._access_bucket = TokenBucket(settings.access_log_rate, settings.access_log_rate * 10, time.monotonic())
        self._window = (time.time(), time.monotonic())  # the current metrics window's start

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.state.lock()
        cgroups = CgroupManager(namespace=str(self.settings.data_dir))
        ledger = Ledger(self.settings.data_dir / "replicas")
        left = await self._sweep(ledger, cgroups)
        self.key = load_or_create_private(self.state.key_path)
        self.agent_id = self.state.agent_id()
        self.started_runs = self.state.started_runs()
        if why := await asyncio.to_thread(self.isolation.check):
            log.warning("WORKLOADS ARE NOT ISOLATED: they run as the agent's user and can read its keys, its data "
                        "directory and each other's secrets (%s); run the agent as root to isolate them", why)
        self._access = (self.settings.data_dir / "access.log").open("ab", buffering=1 << 16)
        self._access_bytes = self._access.tell()
        self.gateway = Gateway(access_log=self._access_line, token_secret=self.state.token_secret(),
                               span=self._span, workers=self.settings.gateway_workers)
        await self.gateway.start()
        self._window = (time.time(), time.monotonic())
        self.network = Network(self.gateway, self.state, self.settings.gateway_host, self.settings.gateway_port)
        self.supervisor = Supervisor(on_change=self._replica_changed, on_output=self._output, cgroups=cgroups,
                                     ledger=ledger)
        self.scheduler = Scheduler(self._scheduled_run, on_skip=self._skipped_run)
        spool = self.settings.data_dir / "spool"
        self.logs = Outbox("logs", spool / "logs.jsonl", self.cp.logs)
        self.runs = Outbox("task-runs", spool / "task-runs.jsonl", self.cp.task_runs, batch=200)
        # telemetry goes every TELEMETRY_INTERVAL seconds in larger batches: each batch costs the control plane a
        # request (authentication, the data plane's checks, a transaction), whatever its size
        self.access = Outbox("access-logs", spool / "access-logs.jsonl", self.cp.access_logs,
                             interval=TELEMETRY_INTERVAL)
        self.metrics = Outbox("metrics", spool / "metrics.jsonl", self.cp.metrics, interval=TELEMETRY_INTERVAL)
        self.spans = Outbox("spans", spool / "spans.jsonl", self.cp.spans, interval=TELEMETRY_INTERVAL)
        for box in (self.logs, self.runs, self.access, self.metrics, self.spans):
            box.start()
        await self.scheduler.start()
        if self.settings.metrics_port is not None:
            endpoint = MetricsEndpoint(self.prometheus, self.state.metrics_token())
            try:
                await endpoint.start(self.settings.gateway_host, self.settings.metrics_port)
            except OSError as e:
                raise CellplaneError(f"the metrics endpoint cannot listen on {self.settings.gateway_host} port "
                                     f"{self.settings.metrics_port}: {e.strerror or e}", code="unavailable") from None
            self.metrics_endpoint = endpoint
        cached = self.state.desired()
        self._runs_left(left, cached)
        try:
            await self._register()
        except (Unreachable, CredentialRefused) as e:
            if cached is None:
                what = "cannot reach" if isinstance(e, Unreachable) else "the token is refused by"
                raise CellplaneError(f"{what} the control plane at {self.settings.controlplane} and there "
                                     f"is no cached desired state in {self.settings.data_dir} to run from ({e})",
                                     code="unreachable") from None
            log.warning("control plane unreachable (%s); running the cached desired state %s", e,
                        cached.get("revision", "")[:12])
        if self.connected:
            with contextlib.suppress(Unreachable, ApiRefused):
                cached = await self.cp.desired(None, 0)
                await asyncio.to_thread(self.state.save_desired, cached)
        if cached is not None:
            await self.apply(cached, save=False)
        self._tasks = [asyncio.create_task(self._sync_loop(), name="sync"),
                       asyncio.create_task(self._status_loop(), name="status"),
                       asyncio.create_task(self._reconcile_loop(), name="reconcile"),
                       asyncio.create_task(self._metrics_loop(), name="metrics")]

    async def _sweep(self, ledger: Ledger, cgroups: CgroupManager) -> list[str]:
        """End what a crashed predecessor on this data directory left running (``leftovers``), before anything
        starts: after any crash exactly one set of replicas runs, and no stale secret file stays in memory. Returns
        the keys of the replicas and runs it was supervising."""
        swept = await asyncio.to_thread(leftovers.sweep, ledger, cgroups, self.settings.data_dir)
        if swept:
            log.warning("the previous agent on %s did not stop cleanly: %s", self.settings.data_dir, swept.describe())
        return swept.recorded

    def _runs_left(self, keys: list[str], desired: dict[str, Any] | None) -> None:
        """The task runs a crashed predecessor was running are over (the sweep ended them; a run is never started
        twice): each is reported failed, so that it does not stay "running" for ever."""
        deployments = (desired or {}).get("deployments") or []
        manual = {r["id"] for r in (desired or {}).get("runs") or []}
        for key in keys:
            env, project, component, run, _ = key.split("/", 4)
            d = next((d for d in deployments if (d["environment"], d["project"], d["component"])
                      == (env, project, component)), None)
            if d is None or not RUN_ID.fullmatch(run):
                continue
            self.runs.put({"id": run, "deployment": d["id"], "environment": env, "project": project,
                           "component": component, "trigger": "manual" if run in manual else "schedule",
                           "state": "failed", "startedAt": None, "endedAt": now_iso(), "exitCode": None,
                           "message": "the data plane's agent stopped without ending the run (a crash); "
                                      "the next agent ended it"})

    async def _register(self) -> None:
        try:
            answer = await self.cp.register({"agentId": self.agent_id, "version": __version__,
                                             "hostname": socket.gethostname(), "publicKey": public_key_text(self.key),
                                             "bindUnbound": self.settings.bind_unbound})
        except CredentialRefused:
            raise
        except ApiRefused as e:
            raise CellplaneError(f"the control plane refused this data plane: {e}", code="refused") from None
        self.connected = True
        envs = ", ".join(answer.get("environments") or []) or "none yet"
        log.info("registered data plane '%s' with %s (environments: %s)", self.settings.name,
                 self.settings.controlplane, envs)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.scheduler.stop()
        for task in self._runs.values():
            task.cancel()
        for w in self.workloads.values():
            w.cancel()
        stopping = [task for task, _ in list(self._stopping.values())]
        for task in stopping:  # the supervisor stops whatever they leave
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        await self.supervisor.stop_all()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.cp.status(self._status_body()), 2)
        await self.gateway.close()  # no request is answered after this: the last window is complete
        with contextlib.suppress(Exception):
            self._http_window()  # the requests of the last, partial window
        for box in (self.logs, self.runs, self.access, self.metrics, self.spans):
            await box.stop()
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.close()
        await self.cp.close()
        if self._access is not None:
            self._access.close()
        self.state.unlock()

    # -- desired state -----------------------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        delay = 1.0
        registered = self.connected
        while True:
            try:
                if not registered:
                    await self._register()
                    registered = True
                since = self.desired["revision"] if self.desired else None
                desired = await self.cp.desired(since, LONG_POLL)
                self.connected, delay = True, 1.0
                if desired.get("revision") != since:
                    await self.apply(desired)
            except (Unreachable, ApiRefused, CellplaneError) as e:
                if self.connected:
                    log.warning("control plane unreachable (%s); serving the last desired state", e)
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def apply(self, desired: dict[str, Any], save: bool = True) -> None:
        if save:
            await asyncio.to_thread(self.state.save_desired, desired)
        self.desired = desired
        await self.reconcile()

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_wanted.wait(), RESYNC)
            self._reconcile_wanted.clear()
            with contextlib.suppress(Exception):
                await self.reconcile()

    def retry_later(self, seconds: float) -> None:
        asyncio.get_running_loop().call_later(seconds, self._reconcile_wanted.set)

    async def reconcile(self) -> None:
        async with self._reconciling:  # the sync loop and the reconcile loop both call it
            await self._reconcile()

    async def _reconcile(self) -> None:
        desired = self.desired
        if desired is None:
            return
        deployments = {d["id"]: d for d in desired.get("deployments") or []}
        envs = {e["name"] for e in desired.get("environments") or []} | {d["environment"]
                                                                          for d in deployments.values()}
        cells = {(d["environment"], d["project"]) for d in deployments.values()}
        self._grants = tuple(Grant(g["consumerKey"], g["secretDigest"], g["environment"], g["project"],
                                   g["component"], (g["target"]["project"], g["target"]["component"],
                                                    g["target"]["endpoint"]))
                             for g in desired.get("grants") or [])
        gone = [w for key, w in self.workloads.items() if key not in deployments]
        for stopping in gone:
            del self.workloads[stopping.id]
        for dep_id, d in deployments.items():
            w = self.workloads.get(dep_id)
            if w is None:
                # the same component there may still be stopping: its replicas' keys may be the new ones',
                # so the new workload starts its replicas after those stops
                place = (d["environment"], d["project"], d["component"])
                after = [task for task, where in self._stopping.values() if where == place]
                self.workloads[dep_id] = Workload(self, d, after=after)
        # Routed before a listener opens: a restarted agent answers 503 for a path its desired state deploys until a
        # replica is ready, never 404 (which clients and caches take as final); and what is gone leaves the table
        # before it is drained.
        self.routes_changed()
        for stopping in gone:  # drained and stopped in the background: the next desired state need not wait
            self._stop_later(stopping)
        await self.network.ensure(envs, cells)
        for dep_id, d in deployments.items():
            self.workloads[dep_id].apply(d)
        self.routes_changed()
        self.scheduler.set_jobs(self._jobs(deployments.values()))
        for run in desired.get("runs") or []:
            if run["id"] not in self.started_runs and run.get("deployment") in deployments:
                self._start_run(deployments[run["deployment"]], run["id"], "manual")
        self.changed()

    def _stop_later(self, w: Workload) -> None:
        d = w.desired
        task = asyncio.create_task(w.stop(), name=f"stop-{w.id}")
        self._stopping[w.id] = (task, (d["environment"], d["project"], d["component"]))
        task.add_done_callback(lambda _: self._stopping.pop(w.id, None))

    def _jobs(self, deployments: Iterable[dict[str, Any]]) -> list[Job]:
        """The cron jobs of the scheduled tasks; one the scheduler cannot run is left out (and said once)."""
        jobs = []
        for d in deployments:
            if d.get("type") != "scheduled-task" or not d.get("schedule") or d.get("blocked"):
                continue
            job = Job(d["id"], d["schedule"]["cron"], d["schedule"].get("timezone", "UTC"),
                      d["schedule"].get("concurrencyPolicy", "Forbid"))
            try:
                validate(job)
            except ValueError as e:
                if job not in self._unschedulable:
                    self._unschedulable.add(job)
                    self.system_line(d, f"not scheduled: {e}")
                continue
            jobs.append(job)
        return jobs

    # -- what workloads need -----------------------------------------------------------------------------------

    async def artifact(self, d: dict[str, Any]) -> Path:
        artifact = d["artifact"]
        try:
            return await asyncio.to_thread(self.artifacts.ensure, artifact["digest"],
                                           lambda dest: self.cp.artifact(d["project"], artifact["digest"], dest))
        except Unreachable as e:
            raise CellplaneError(f"artifact {artifact['digest'][:19]} is not on this machine and the control "
                                 f"plane is unreachable ({e})") from None
        except ApiRefused as e:
            raise CellplaneError(f"artifact {artifact['digest'][:19]} cannot be fetched: {e}") from None

    async def replica_spec(self, d: dict[str, Any], tree: Path, index: int, task: bool = False) -> ReplicaSpec:
        def prepare() -> ReplicaSpec:
            lines: list[str] = []
            launch = launch_command(tree, self.cache, log=lines.append)  # it picks the port (or the declared one)
            for line in lines:
                self.system_line(d, line)
            run_dir = (self.settings.data_dir / "run" / d["environment"] / d["project"] / d["component"]
                       / (f"run-{secrets.token_hex(4)}" if task else f"{d['release']}-{index}"))
            run_dir.mkdir(parents=True, exist_ok=True)
            spec = launchspec.replica_spec(d, index, launch, tree, self.network, self.key, run_dir, task=task,
                                           isolation=self.isolation)
            if index == 0:
                self.system_line(d, "isolation: " + self.isolation.note(spec.sandbox))
            return spec

        return await asyncio.to_thread(prepare)

    def upstreams_of(self, rs: ReleaseSet) -> list[Upstream]:
        out = []
        for r in rs.replicas:
            if r.port:
                out.append(Upstream("127.0.0.1", r.port))
            for ep in rs.desired.get("endpoints") or []:
                port = self._endpoint_port(rs, r, ep)
                if port and port != r.port:
                    out.append(Upstream("127.0.0.1", port))
        return out

    @staticmethod
    def _endpoint_port(rs: ReleaseSet, r: Replica, ep: dict[str, Any]) -> int | None:
        """The first endpoint is served on the replica's port; others on their declared port."""
        endpoints = rs.desired.get("endpoints") or []
        if not endpoints or ep["port"] == endpoints[0]["port"]:
            return r.port
        return int(ep["port"])

    def routes_changed(self) -> None:
        backends = []
        for w in self.workloads.values():
            if w.is_task:
                continue
            rs = w.active  # None before its first release is ready: routed all the same, to no replica (503)
            d = rs.desired if rs is not None else w.desired
            seen_paths: set[str] = set()
            for ep in d.get("endpoints") or []:
                if ep.get("type", "REST") not in HTTP_TYPES or ep.get("basePath", "/") in seen_paths:
                    continue
                seen_paths.add(ep.get("basePath", "/"))
                ready = [r for r in rs.replicas if r.state == "ready"] if rs is not None else []
                ups = tuple(Upstream("127.0.0.1", p) for r in ready if rs is not None
                            and (p := self._endpoint_port(rs, r, ep)))
                backends.append(Backend(d["environment"], d["project"], d["component"], ep["name"],
                                        d.get("version", "v1"), ep.get("basePath", "/"),
                                        frozenset(ep.get("visibility") or ["Project"]), ups))
        table = RouteTable(tuple(backends), self._grants)
        if table != self._route_table:
            self._route_table = table
            self.gateway.update(table)

    # -- events from the runtime -------------------------------------------------------------------------------

    def _workload_of(self, replica: Replica) -> Workload | None:
        """The workload a replica belongs to: several tracks of one component may run in one environment."""
        env, project, component, release, _ = replica.spec.key.split("/", 4)
        same = [w for w in self.workloads.values() if (w.desired["environment"], w.desired["project"],
                                                        w.desired["component"]) == (env, project, component)]
        for w in same:
            if any(rs is not None and replica in rs.replicas for rs in (w.active, w.rolling)):
                return w
        return next((w for w in same if w.desired.get("release") == release), same[0] if same else None)

    def _replica_changed(self, replica: Replica) -> None:
        w = self._workload_of(replica)
        if w is not None:
            w.replica_changed()
            if w.active is not None and replica in w.active.replicas:
                self.routes_changed()
            self._tell_replica(w, replica)
        self.changed()

    def _tell_replica(self, w: Workload, replica: Replica) -> None:
        """A service replica that exits, fails or enters a crash loop is an event in the component's log."""
        key, now_is = replica.spec.key, (replica.state, replica.message)
        if replica.state == "stopped":
            self._told.pop(key, None)
            return
        if w.is_task or self._told.get(key) == now_is:
            return
        self._told[key] = now_is
        if replica.state in ("crash-loop", "failed") or "restarting in" in replica.message:
            release, index = key.split("/")[3:5]
            state = "" if replica.state == "starting" else f" ({replica.state})"
            self.system_line(w.desired, f"replica {index} of release {release}{state}: {replica.message}")

    def _output(self, replica: Replica, stream: str, line: str) -> None:
        env, project, component, _release, index = replica.spec.key.split("/", 4)
        run = replica.spec.env.get("CELLPLANE_TASK_RUN")
        w = self._workload_of(replica)
        self.logs.put({"deployment": w.id if w else None, "run": run, "environment": env, "project": project,
                       "component": component, "replica": None if run else int(index), "stream": stream,
                       "at": now_iso(), "line": line.replace("\x00", "\ufffd")})

    def system_line(self, d: dict[str, Any], line: str, run: str | None = None) -> None:
        self.logs.put({"deployment": d["id"], "run": run, "environment": d["environment"], "project": d["project"],
                       "component": d["component"], "replica": None, "stream": "system", "at": now_iso(),
                       "line": line})

    def _access_line(self, entry: dict[str, Any]) -> None:
        """One JSON line per request; the file is rotated at ACCESS_LOG_BYTES (one old file is kept). Routed requests
        go to the control plane too, up to access_log_rate lines per second."""
        if entry["component"] is not None:
            if self._access_bucket.take(time.monotonic()):
                self.access.put(access_line(entry))
            else:
                self.access_unshipped += 1
        if self._access is None:
            return
        line = orjson.dumps(entry) + b"\n"  # a tenth of json.dumps' time: this runs for every request
        self._access.write(line)
        self._access_bytes += len(line)
        if self._access_bytes > ACCESS_LOG_BYTES:
            path = self.settings.data_dir / "access.log"
            self._access.close()
            path.replace(path.with_suffix(".log.1"))
            self._access = path.open("ab", buffering=1 << 16)
            self._access_bytes = 0

    # -- tasks -------------------------------------------------------------------------------------------------

    async def _scheduled_run(self, job: Job, at: datetime) -> None:
        w = self.workloads.get(job.key)
        if w is None:
            return
        run_id = "run_" + secrets.token_hex(8)
        await self._run_task(w.desired, run_id, "schedule")

    def _skipped_run(self, job: Job, at: datetime, reason: str) -> None:
        w = self.workloads.get(job.key)
        if w is not None:
            self.system_line(w.desired, f"scheduled run at {at.isoformat()} skipped: {reason}")

    def _start_run(self, d: dict[str, Any], run_id: str, trigger: str) -> None:
        self.started_runs.add(run_id)
        self.state.save_started_runs(self.started_runs)
        task = asyncio.create_task(self._run_task(d, run_id, trigger), name=f"run-{run_id}")
        self._runs[run_id] = task
        task.add_done_callback(lambda _: self._runs.pop(run_id, None))

    async def _run_task(self, d: dict[str, Any], run_id: str, trigger: str) -> None:
        report = {"id": run_id, "deployment": d["id"], "environment": d["environment"], "project": d["project"],
                  "component": d["component"], "trigger": trigger, "state": "running", "startedAt": now_iso(),
                  "endedAt": None, "exitCode": None, "message": ""}
        self.runs.put(dict(report))
        started = time.monotonic()
        spec: ReplicaSpec | None = None
        try:
            tree = await self.artifact(d)
            spec = await self.replica_spec(d, tree, 0, task=True)
            spec.key = f"{d['environment']}/{d['project']}/{d['component']}/{run_id}/0"
            spec.env["CELLPLANE_TASK_RUN"] = run_id
            replica = await self.supervisor.start(spec)
            code = await replica.wait_exit()
            await self.supervisor.stop(replica)
            report.update(state="succeeded" if code == 0 else "failed", exitCode=code,
                          message=f"exited with {code} after {time.monotonic() - started:.1f}s")
        except asyncio.CancelledError:
            report.update(state="failed", message="the data plane stopped during the run")
            raise
        except Exception as e:
            report.update(state="failed", message=str(e) or type(e).__name__)
            self.system_line(d, f"run {run_id} failed to start: {report['message']}", run=run_id)
        finally:
            report["endedAt"] = now_iso()
            self.runs.put(report)
            if spec is not None and spec.run_dir is not None:  # a run's directory goes with it
                await asyncio.to_thread(shutil.rmtree, spec.run_dir, True)

    # -- telemetry ---------------------------------------------------------------------------------------------

    def _span(self, span: dict[str, Any]) -> None:
        self.spans.put(span)

    def service_replicas(self) -> list[Replica]:
        """The replicas of the service workloads (serving or rolling out) that are not stopped; no task runs."""
        return [r for w in self.workloads.values() if not w.is_task for rs in (w.active, w.rolling)
                if rs is not None for r in rs.replicas if r.state != "stopped"]

    def _http_window(self) -> tuple[str, float]:
        """Close the current metrics window: its http points go to the outbox; returns its (start, length)."""
        started_wall, started = self._window
        now = time.monotonic()
        self._window = (time.time(), now)
        at, seconds = iso(started_wall), now - started
        for point in http_points(self.gateway.metrics.delta(), at, seconds):
            self.metrics.put(point)
        return at, seconds

    async def metrics_window(self) -> None:
        """One window: the gateway's counters since the last one, and each service replica's CPU, memory and
        restarts."""
        samples = self.replica_telemetry.begin(self.service_replicas())
        at, seconds = self._http_window()
        samples = await asyncio.to_thread(self.replica_telemetry.measure, samples)
        for point in self.replica_telemetry.points(samples, at, seconds):
            self.metrics.put(point)

    async def _metrics_loop(self) -> None:
        interval = max(0.05, self.settings.metrics_interval)
        while True:
            await asyncio.sleep(max(0.0, self._window[1] + interval - time.monotonic()))
            try:
                await self.metrics_window()
            except Exception:  # a window lost is not worth stopping the metrics for
                log.exception("the metrics window failed")
                await asyncio.sleep(interval)  # and not worth spinning for either

    def prometheus(self) -> str:
        """What the agent's Prometheus endpoint serves."""
        return (self.gateway.metrics.prometheus() + self.replica_telemetry.prometheus(self.service_replicas())
                + counter("cellplane_agent_access_lines_unshipped_total",
                          "Access-log lines of routed requests not sent to the control plane (over the rate limit).",
                          self.access_unshipped))

    # -- status ------------------------------------------------------------------------------------------------

    def changed(self) -> None:
        self._dirty.set()

    def _status_body(self) -> dict[str, Any]:
        body = {"agentId": self.agent_id, "revision": (self.desired or {}).get("revision"),
                "gateways": self.network.report(),
                "deployments": [w.report() for w in self.workloads.values()]}
        if self.metrics_endpoint is not None and self.metrics_endpoint.url:
            body["metricsUrl"] = self.metrics_endpoint.url
        return body

    async def _status_loop(self) -> None:
        sent: dict[str, Any] | None = None
        sent_at = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), HEARTBEAT)
            await asyncio.sleep(0.2)  # gather a burst of changes into one report
            self._dirty.clear()
            await self.gateway.routed()  # what this report calls ready is routed by every gateway process
            body = self._status_body()
            if body == sent and time.monotonic() - sent_at < HEARTBEAT:
                continue  # nothing new, and the last report is recent enough
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.state.save_status, {**body, "at": now_iso(),
                                                                 "connected": self.connected})
            try:
                await self.cp.status(body)
            except (Unreachable, ApiRefused) as e:
                log.debug("status not sent: %s", e)
            else:
                sent, sent_at = body, time.monotonic()


async def _main(settings: AgentSettings) -> int:
    agent = Agent(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await agent.start()
    except CellplaneError as e:
        print(f"error: {e.message}", file=sys.stderr)
        with contextlib.suppress(Exception):
            await agent.stop()
        return 1
    # What was made at start (modules, the desired state, clients) lives on: the cyclic garbage collector need not
    # look at it again on every full collection the request path's allocations trigger.
    gc.freeze()
    metrics = (f"; metrics: {agent.metrics_endpoint.url} (bearer token in {agent.state.metrics_token_path})"
               if agent.metrics_endpoint is not None else "")
    if agent.gateway.workers is not None:
        metrics += f"; gateway processes: {agent.gateway.workers.count + 1}"
    print(f"data plane '{settings.name}' running (data: {settings.data_dir}); gateways: "
          + "; ".join(f"{env}: external {g['external']}, internal {g['internal']}"
                      for env, g in agent.network.report().items()) + metrics, file=sys.stderr, flush=True)
    await stop.wait()
    print("stopping the data plane...", file=sys.stderr, flush=True)
    await agent.stop()
    return 0


def run_agent(settings: AgentSettings) -> int:
    """Run an agent until SIGINT or SIGTERM; returns the process exit code."""
    import uvloop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings.data_dir = settings.data_dir.resolve()
    return uvloop.run(_main(settings))
