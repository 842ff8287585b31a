"""The local runtime: every replica a supervised process on this machine, behind the platform's gateway.

Applying a desired state opens the listeners its environments and cells need (``network``), makes one
``Workload`` per deployment (its rollouts: ``workload``), routes the workloads' ready replicas (the gateway's route
table, grants included), schedules the cron tasks (``scheduler``) and starts the manual runs not started yet (kept
in ``started-runs.json``: never run twice). Replicas and runs are processes of the ``supervisor``, confined by
``limits`` and ``sandbox``; at start, what a crashed predecessor left running is swept first (``leftovers``), and
the task runs it was running are reported failed.

Autoscaled deployments (``scaling``; docs/scaling.md, "The scaler"): a tick every ``SCALE_TICK`` seconds reads the
gateway's demand per deployment and hands it to each autoscaled workload (``Workload.autoscale``: its autoscaler
decides, ``scale_to`` starts or drains replicas); the gateway wakes a workload at zero through ``_wake`` and is told
of a wake-up that failed through ``wake_failed``. Each scale event is a system line, and each metrics window a
"scaling" point per autoscaled deployment (replicas, desired, cold starts and their seconds).

Besides, it writes the gateway's access log (``access.log``, rotated at ``ACCESS_LOG_BYTES``), ships routed access
lines at ``access_log_rate`` per second at most, closes a metrics window every ``metrics_interval`` seconds (the
gateway's counters, each service replica's CPU, memory and restarts) and serves them to Prometheus.

What it hands the host are the contract's models (``LogLineSent``, ``TaskRunSent``, ``MetricPointSent``,
``AccessLineSent``, ``SpanSent``). The two that come per request are not built on the request path: the gateway's
spans and the access entries to ship are gathered as they come (a list append) and built a batch at a time,
``BUILD_DELAY`` seconds after the first of a batch, ``BUILD_STEP`` at each turn of the event loop (6 to 10 µs each;
the outbox sends them every 2 s anyway). An item the contract refuses (the control plane would refuse its whole
batch) is dropped, counted and said once. That part is ``cellplane.dataplane.gatewayfeed``, shared with the
Kubernetes runtime's gateway.

It is the agent's ``WorkloadHost`` too: the only thing a workload reaches.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import ValidationError

from cellplane.contract import (
    DesiredDeployment,
    DesiredEndpoint,
    DesiredState,
    LogLineSent,
    MetricPointSent,
    TaskRunSent,
)
from cellplane.contract.wire import LogStream, RunState
from cellplane.dataplane import launchspec, leftovers
from cellplane.dataplane.cpclient import ApiRefused, Unreachable
from cellplane.dataplane.gatewayfeed import ACCESS_LOG_BYTES, BUILD_DELAY, BUILD_STEP, GatewayFeed  # noqa: F401
from cellplane.dataplane.leftovers import Ledger
from cellplane.dataplane.limits import CgroupManager
from cellplane.dataplane.network import Network
from cellplane.dataplane.replicaid import ReplicaId
from cellplane.dataplane.runtimes.base import RuntimeHost, RuntimeStatus
from cellplane.dataplane.sandbox import Isolation
from cellplane.dataplane.scheduler import Job, Scheduler, validate
from cellplane.dataplane.settings import AgentSettings
from cellplane.dataplane.supervisor import Replica, ReplicaSpec, Supervisor
from cellplane.dataplane.tasks import cancel_all
from cellplane.dataplane.telemetry import (
    MetricsEndpoint,
    ReplicaTelemetry,
    counter,
)
from cellplane.dataplane.workload import ReleaseSet, Workload
from cellplane.errors import CellplaneError
from cellplane.gateway.demand import Demand
from cellplane.gateway.routes import Backend, Grant, RouteTable, Upstream
from cellplane.gateway.server import Gateway
from cellplane.runtime.artifacts import LocalArtifacts
from cellplane.runtime.launch import launch_command
from cellplane.runtime.materialize import DependencyCache

log = logging.getLogger("cellplane.dataplane")
HTTP_TYPES = {"REST", "GraphQL", "WebSocket"}
SCALE_TICK = 0.5  # seconds between the scaler's looks at the gateway's demand
Trigger = Literal["manual", "schedule"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class LocalRuntime(GatewayFeed):
    """``Runtime`` and ``WorkloadHost`` for processes on this machine (see the module's docstring)."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.cache = DependencyCache(settings.cache_dir or settings.data_dir / "cache", settings.python_installer)
        self.artifacts = LocalArtifacts(settings.data_dir)
        self.isolation = Isolation(settings.data_dir, self.cache.root)
        self.workloads: dict[str, Workload] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._grants: tuple[Grant, ...] = ()
        self._unschedulable: set[Job] = set()  # jobs already said to be invalid
        self._route_table: RouteTable | None = None  # what the gateway routes now
        self._told: dict[ReplicaId, tuple[str, str]] = {}  # replica -> the (state, message) last told as an event
        # undeployed workloads being drained and stopped: id -> (task, (environment, project, component))
        self._stopping: dict[str, tuple[asyncio.Task[None], tuple[str, str, str]]] = {}
        self.replica_telemetry = ReplicaTelemetry()
        self._cold_starts: dict[str, tuple[int, float]] = {}  # deployment -> cold starts and seconds this window
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.feed_init(settings)

    # -- Runtime -----------------------------------------------------------------------------------------------

    async def start(self, host: RuntimeHost, cached: DesiredState | None) -> None:
        self.host = host
        cgroups = CgroupManager(namespace=str(self.settings.data_dir))
        ledger = Ledger(self.settings.data_dir / "replicas")
        left = await self._sweep(ledger, cgroups)
        self.started_runs = host.state.started_runs()
        if why := await asyncio.to_thread(self.isolation.check):
            log.warning("WORKLOADS ARE NOT ISOLATED: they run as the agent's user and can read its keys, its data "
                        "directory and each other's secrets (%s); run the agent as root to isolate them", why)
        self.feed_open()
        self.gateway = Gateway(access_log=self._access_line, token_secret=host.state.token_secret(),
                               span=self._gathered_span, workers=self.settings.gateway_workers, wake=self._wake)
        await self.gateway.start()
        self._window = (time.time(), time.monotonic())
        self.network = Network(self.gateway, host.state, self.settings.gateway_host, self.settings.gateway_port)
        self.supervisor = Supervisor(on_change=self._replica_changed, on_output=self._output, cgroups=cgroups,
                                     ledger=ledger)
        self.scheduler = Scheduler(self._scheduled_run, on_skip=self._skipped_run)
        await self.scheduler.start()
        if self.settings.metrics_port is not None:
            self.metrics_endpoint = await MetricsEndpoint.open(self.prometheus, host.state.metrics_token(),
                                                               self.settings.gateway_host, self.settings.metrics_port)
        self._runs_left(left, cached)
        self._tasks = [asyncio.create_task(self._metrics_loop(), name="metrics"),
                       asyncio.create_task(self._scale_loop(), name="scaler")]

    async def apply(self, desired: DesiredState) -> None:
        deployments = {d.id: d for d in desired.deployments}
        envs = {e.name for e in desired.environments} | {d.environment for d in deployments.values()}
        cells = {(d.environment, d.project) for d in deployments.values()}
        self._grants = tuple(Grant(g.consumerKey, g.secretDigest, g.environment, g.project, g.component,
                                   (g.target.project, g.target.component, g.target.endpoint))
                             for g in desired.grants)
        gone = [w for key, w in self.workloads.items() if key not in deployments]
        for stopping in gone:
            del self.workloads[stopping.id]
        for dep_id, d in deployments.items():
            w = self.workloads.get(dep_id)
            if w is None:
                # the same component there may still be stopping: its replicas' keys may be the new ones',
                # so the new workload starts its replicas after those stops
                place = (d.environment, d.project, d.component)
                after = [task for task, where in self._stopping.values() if where == place]
                self.workloads[dep_id] = Workload(self, d, after=after, scaling_window=self.settings.scaling_window)
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
        for run in desired.runs:
            if run.id not in self.started_runs and run.deployment in deployments:
                self._start_run(deployments[run.deployment], run.id, "manual")
        self.changed()

    async def status(self) -> RuntimeStatus:
        await self.gateway.routed()  # what this report calls ready is routed by every gateway process
        metrics = self.metrics_endpoint.url if self.metrics_endpoint is not None else None
        return RuntimeStatus(self.network.report(), [w.report() for w in self.workloads.values()], metrics or None)

    async def stop(self) -> None:
        await cancel_all(self._tasks)
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

    async def close(self) -> None:
        await self.gateway.close()  # no request is answered after this: the last window is complete
        self.feed_close()
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.close()

    def describe(self) -> str:
        """The listeners and endpoints, as the agent's start line shows them."""
        metrics = (f"; metrics: {self.metrics_endpoint.url} (bearer token in {self.host.state.metrics_token_path})"
                   if self.metrics_endpoint is not None else "")
        if self.gateway.workers is not None:
            metrics += f"; gateway processes: {self.gateway.workers.count + 1}"
        return "gateways: " + "; ".join(f"{env}: external {g.external}, internal {g.internal}"
                                        for env, g in self.network.report().items()) + metrics

    # -- at start ----------------------------------------------------------------------------------------------

    async def _sweep(self, ledger: Ledger, cgroups: CgroupManager) -> list[ReplicaId]:
        """End what a crashed predecessor on this data directory left running (``leftovers``), before anything
        starts: after any crash exactly one set of replicas runs, and no stale secret file stays in memory. Returns
        the replicas and runs it was supervising."""
        swept = await asyncio.to_thread(leftovers.sweep, ledger, cgroups, self.settings.data_dir)
        if swept:
            log.warning("the previous agent on %s did not stop cleanly: %s", self.settings.data_dir, swept.describe())
        return swept.recorded

    def _runs_left(self, left: list[ReplicaId], desired: DesiredState | None) -> None:
        """The task runs a crashed predecessor was running are over (the sweep ended them; a run is never started
        twice): each is reported failed, so that it does not stay "running" for ever."""
        deployments = desired.deployments if desired is not None else []
        manual = {r.id for r in desired.runs} if desired is not None else set()
        for replica in left:
            run = replica.run
            d = next((d for d in deployments if (d.environment, d.project, d.component)
                      == (replica.environment, replica.project, replica.component)), None)
            if d is None or run is None:
                continue
            try:
                self.host.task_run(TaskRunSent(
                    id=run, deployment=d.id, environment=replica.environment, project=replica.project,
                    component=replica.component, trigger="manual" if run in manual else "schedule", state="failed",
                    startedAt=None, endedAt=now_iso(), exitCode=None,
                    message="the data plane's agent stopped without ending the run (a crash); the next agent ended it"))
            except ValidationError as e:
                self._refused("task run", e)

    # -- applying ----------------------------------------------------------------------------------------------

    def _stop_later(self, w: Workload) -> None:
        d = w.desired
        task = asyncio.create_task(w.stop(), name=f"stop-{w.id}")
        self._stopping[w.id] = (task, (d.environment, d.project, d.component))
        task.add_done_callback(lambda _: self._stopping.pop(w.id, None))

    def _jobs(self, deployments: Iterable[DesiredDeployment]) -> list[Job]:
        """The cron jobs of the scheduled tasks; one the scheduler cannot run is left out (and said once)."""
        jobs = []
        for d in deployments:
            if d.type != "scheduled-task" or d.schedule is None or d.blocked:
                continue
            # any policy text: validate() refuses one that is neither Forbid nor Allow
            job = Job(d.id, d.schedule.cron, d.schedule.timezone,
                      cast(Literal["Forbid", "Allow"], d.schedule.concurrencyPolicy))
            try:
                validate(job)
            except ValueError as e:
                if job not in self._unschedulable:
                    self._unschedulable.add(job)
                    self.system_line(d, f"not scheduled: {e}")
                continue
            jobs.append(job)
        return jobs

    # -- WorkloadHost ------------------------------------------------------------------------------------------

    def changed(self) -> None:
        self.host.changed()

    def retry_later(self, seconds: float) -> None:
        self.host.reconcile_later(seconds)

    def wake_failed(self, d: DesiredDeployment, reason: str) -> None:
        self.gateway.wake_failed(d.id, reason)  # every request held for it is answered at once, with the reason

    async def artifact(self, d: DesiredDeployment) -> Path:
        digest = d.artifact.digest
        try:
            return await asyncio.to_thread(self.artifacts.ensure, digest,
                                           lambda dest: self.host.fetch_artifact(d.project, digest, dest))
        except Unreachable as e:
            raise CellplaneError(f"artifact {digest[:19]} is not on this machine and the control "
                                 f"plane is unreachable ({e})") from None
        except ApiRefused as e:
            raise CellplaneError(f"artifact {digest[:19]} cannot be fetched: {e}") from None

    async def binds_literally(self, d: DesiredDeployment, tree: Path) -> bool:
        return await asyncio.to_thread(launchspec.binds_literally, d, tree)

    async def start_replica(self, d: DesiredDeployment, tree: Path, index: int) -> Replica:
        return await self.supervisor.start(await self.replica_spec(d, tree, index))

    async def stop_replica(self, replica: Replica) -> None:
        await self.supervisor.stop(replica)

    async def drain(self, rs: ReleaseSet) -> None:
        upstreams = self.upstreams_of(rs)
        if upstreams:
            await self.gateway.drain(upstreams, timeout=max((r.spec.grace for r in rs.replicas), default=10))

    async def replica_spec(self, d: DesiredDeployment, tree: Path, index: int,
                           run: str | None = None) -> ReplicaSpec:
        def prepare() -> ReplicaSpec:
            lines: list[str] = []
            launch = launch_command(tree, self.cache, log=lines.append)  # it picks the port (or the declared one)
            for line in lines:
                self.system_line(d, line)
            run_dir = (self.settings.data_dir / "run" / d.environment / d.project / d.component
                       / (f"run-{secrets.token_hex(4)}" if run is not None else f"{d.release}-{index}"))
            run_dir.mkdir(parents=True, exist_ok=True)
            spec = launchspec.replica_spec(d, index, launch, tree, self.network, self.host.key, run_dir, run=run,
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
            for ep in rs.desired.endpoints:
                port = self._endpoint_port(rs, r, ep)
                if port and port != r.port:
                    out.append(Upstream("127.0.0.1", port))
        return out

    @staticmethod
    def _endpoint_port(rs: ReleaseSet, r: Replica, ep: DesiredEndpoint) -> int | None:
        """The first endpoint is served on the replica's port; others on their declared port."""
        endpoints = rs.desired.endpoints
        if not endpoints or ep.port == endpoints[0].port:
            return r.port
        return int(ep.port)

    def routes_changed(self) -> None:
        backends = []
        for w in self.workloads.values():
            if w.is_task:
                continue
            rs = w.active  # None before its first release is ready: routed all the same, to no replica (503)
            d = rs.desired if rs is not None else w.desired
            seen_paths: set[str] = set()
            for ep in d.endpoints:
                if ep.type not in HTTP_TYPES or ep.basePath in seen_paths:
                    continue
                seen_paths.add(ep.basePath)
                ready = [r for r in rs.replicas if r.state == "ready"] if rs is not None else []
                ups = tuple(Upstream("127.0.0.1", p) for r in ready if rs is not None
                            and (p := self._endpoint_port(rs, r, ep)))
                backends.append(self._backend(d, ep, ups))
        table = RouteTable(tuple(backends), self._grants)
        if table != self._route_table:
            self._route_table = table
            self.gateway.update(table)

    @staticmethod
    def _backend(d: DesiredDeployment, ep: DesiredEndpoint, ups: tuple[Upstream, ...]) -> Backend:
        """The route of one endpoint. A deployment that scales to zero is woken by a request when it has no
        upstream (``wake``) instead of answering 503."""
        return Backend(d.environment, d.project, d.component, ep.name, d.version, ep.basePath,
                       frozenset(ep.visibility or ["Project"]), ups, deployment=d.id,
                       wake=d.scaling is not None and d.scaling.minReplicas == 0)

    def system_line(self, d: DesiredDeployment, line: str, run: str | None = None) -> None:
        try:
            self.host.log(LogLineSent(deployment=d.id, run=run, environment=d.environment, project=d.project,
                                      component=d.component, replica=None, stream="system", at=now_iso(), line=line))
        except ValidationError as e:
            self._refused("event", e)

    # -- events from the supervisor ----------------------------------------------------------------------------

    def _workload_of(self, replica: Replica) -> Workload | None:
        """The workload a replica belongs to: the deployment its identity names, while it is deployed."""
        identity = replica.spec.identity
        return self.workloads.get(identity.deployment) if identity is not None else None

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
        identity, now_is = replica.spec.identity, (replica.state, replica.message)
        if identity is None:
            return
        if replica.state == "stopped":
            self._told.pop(identity, None)
            return
        if w.is_task or self._told.get(identity) == now_is:
            return
        self._told[identity] = now_is
        if replica.state in ("crash-loop", "failed") or "restarting in" in replica.message:
            state = "" if replica.state == "starting" else f" ({replica.state})"
            self.system_line(w.desired, f"replica {identity.index} of release {identity.release}{state}: "
                                        f"{replica.message}")

    def _output(self, replica: Replica, stream: str, line: str) -> None:
        identity = replica.spec.identity
        if identity is None:
            return
        w = self._workload_of(replica)
        run = identity.run
        try:
            self.host.log(LogLineSent(
                deployment=w.id if w else None, run=run, environment=identity.environment, project=identity.project,
                component=identity.component, replica=None if run else identity.index,
                stream=cast(LogStream, stream),  # the supervisor's: "stdout" or "stderr"
                at=now_iso(), line=line.replace("\x00", "\ufffd")))
        except ValidationError as e:
            self._refused("log line", e)

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

    def _start_run(self, d: DesiredDeployment, run_id: str, trigger: Trigger) -> None:
        self.started_runs.add(run_id)
        self.host.state.save_started_runs(self.started_runs)
        task = asyncio.create_task(self._run_task(d, run_id, trigger), name=f"run-{run_id}")
        self._runs[run_id] = task
        task.add_done_callback(lambda _: self._runs.pop(run_id, None))

    async def _run_task(self, d: DesiredDeployment, run_id: str, trigger: Trigger) -> None:
        started_at = now_iso()

        def report(state: RunState, ended_at: str | None = None, code: int | None = None, message: str = "") -> None:
            try:
                self.host.task_run(TaskRunSent(
                    id=run_id, deployment=d.id, environment=d.environment, project=d.project, component=d.component,
                    trigger=trigger, state=state, startedAt=started_at, endedAt=ended_at, exitCode=code,
                    message=message))
            except ValidationError as e:
                self._refused("task run", e)

        report("running")
        state: RunState = "failed"
        code: int | None = None
        message = ""
        started = time.monotonic()
        spec: ReplicaSpec | None = None
        try:
            tree = await self.artifact(d)
            spec = await self.replica_spec(d, tree, 0, run=run_id)
            replica = await self.supervisor.start(spec)
            exited = await replica.wait_exit()
            await self.supervisor.stop(replica)
            state, code = "succeeded" if exited == 0 else "failed", exited
            message = f"exited with {exited} after {time.monotonic() - started:.1f}s"
        except asyncio.CancelledError:
            message = "the data plane stopped during the run"
            raise
        except Exception as e:
            message = str(e) or type(e).__name__
            self.system_line(d, f"run {run_id} failed to start: {message}", run=run_id)
        finally:
            report(state, now_iso(), code, message)
            if spec is not None and spec.run_dir is not None:  # a run's directory goes with it
                await asyncio.to_thread(shutil.rmtree, spec.run_dir, True)

    # -- scaling -----------------------------------------------------------------------------------------------

    def _wake(self, deployment: str) -> None:
        """The gateway holds a request for a deployment with no upstream: start a replica."""
        w = self.workloads.get(deployment)
        if w is not None:
            w.wake()

    async def scale_tick(self) -> None:
        """One look at the demand: every autoscaled workload observes its deployment's and scales to what its
        autoscaler decides; the cold starts are kept for the metrics window."""
        demand: dict[str, Demand] = self.gateway.demand()  # since the last tick, summed over the gateway processes
        now = time.monotonic()
        for dep_id, d in demand.items():
            if d.cold_starts:
                count, seconds = self._cold_starts.get(dep_id, (0, 0.0))
                self._cold_starts[dep_id] = (count + d.cold_starts, seconds + d.cold_start_seconds)
        for w in list(self.workloads.values()):
            if w.desired.scaling is None or w.is_task:
                continue
            seen = demand.get(w.id)
            await w.autoscale(now, seen.inflight if seen else 0, seen.requests if seen else 0)

    async def _scale_loop(self) -> None:
        while True:
            await asyncio.sleep(SCALE_TICK)
            try:
                await self.scale_tick()
            except Exception:  # one tick lost is not worth stopping the scaler for
                log.exception("the scaler's tick failed")

    def scaling_points(self, at: str, seconds: float) -> list[MetricPointSent]:
        """One "scaling" point per autoscaled deployment for the window that just closed."""
        points = []
        cold, self._cold_starts = self._cold_starts, {}
        for w in self.workloads.values():
            d = w.desired
            if d.scaling is None or w.is_task:
                continue
            count, cold_seconds = cold.get(w.id, (0, 0.0))
            try:
                points.append(MetricPointSent(
                    kind="scaling", environment=d.environment, project=d.project, component=d.component, at=at,
                    seconds=max(seconds, 0.001), replicas=w.current(), desiredReplicas=w.desired_count(),
                    coldStarts=count, coldStartSeconds=round(cold_seconds, 3)))
            except ValidationError as e:
                self._refused("metric point", e)
        return points

    # -- telemetry ---------------------------------------------------------------------------------------------

    def service_replicas(self) -> list[Replica]:
        """The replicas of the service workloads (serving or rolling out) that are not stopped; no task runs."""
        return [r for w in self.workloads.values() if not w.is_task for rs in (w.active, w.rolling)
                if rs is not None for r in rs.replicas if r.state != "stopped"]

    async def metrics_window(self) -> None:
        """One window: the gateway's counters since the last one, and each service replica's CPU, memory and
        restarts."""
        samples = self.replica_telemetry.begin(self.service_replicas())
        at, seconds = self._http_window()
        for point in self.scaling_points(at, seconds):
            self.host.metric(point)
        samples = await asyncio.to_thread(self.replica_telemetry.measure, samples)
        for point in self.replica_telemetry.points(samples, at, seconds):
            self.host.metric(point)

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
