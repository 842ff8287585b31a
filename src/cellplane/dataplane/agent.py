"""The data-plane agent's loop: register, pull the desired state, keep it on disk, hand it to a runtime, report.

The agent never accepts a connection from the control plane. It long-polls the desired state, parses it once
(``cellplane.contract.DesiredState.from_wire``: the runtime gets typed models, never the JSON), writes the JSON it
received to ``desired.json`` and applies it to its ``Runtime`` (``runtimes.base``; ``runtimes.local`` runs processes
behind the platform's gateway): on every new desired state, every ``RESYNC`` seconds, and when the runtime asks for
a retry. Status (the runtime's report), log lines, task runs and telemetry (access lines, metrics points, spans: see
``telemetry``) flow back through outboxes that spool to disk while the control plane is away. Started without a
reachable control plane, it runs what ``desired.json`` says, and catches up once the control plane answers.

The loop knows nothing of how workloads run: it is the runtime's ``RuntimeHost`` (its data directory, its key,
the artifacts and the sinks of what goes back) and nothing more. Applying is level-triggered: the runtime compares
what should run with what runs, every time, and does nothing when they agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cellplane import __version__
from cellplane.contract import (
    AccessLineSent,
    AgentRegistration,
    DesiredState,
    LogLineSent,
    MetricPointSent,
    SpanSent,
    StatusReport,
    TaskRunSent,
)
from cellplane.dataplane.cpclient import ApiRefused, ControlPlane, CredentialRefused, Unreachable, wire
from cellplane.dataplane.localstate import LocalState
from cellplane.dataplane.outbox import Outbox
from cellplane.dataplane.runtimes.base import Runtime
from cellplane.dataplane.settings import AgentSettings
from cellplane.dataplane.tasks import cancel_all
from cellplane.errors import CellplaneError
from cellplane.sealing import load_or_create_private, public_key_text

__all__ = ["Agent", "AgentSettings", "run_agent"]

log = logging.getLogger("cellplane.dataplane")
RESYNC = 5.0
LONG_POLL = 30
TELEMETRY_INTERVAL = 2.0  # seconds between batches of access lines, spans and metric points


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Agent:
    """The loop (see the module's docstring); the ``RuntimeHost`` of ``runtime``."""

    def __init__(self, settings: AgentSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.state = LocalState(settings.data_dir)
        self.cp = ControlPlane(settings.controlplane, settings.token, settings.organization, settings.name,
                               settings.token_file)
        self.desired: DesiredState | None = None
        self._dirty = asyncio.Event()
        self._reconcile_wanted = asyncio.Event()
        self._reconciling = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self.connected = False

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.state.lock()
        self.key = load_or_create_private(self.state.key_path)
        self.agent_id = self.state.agent_id()
        spool = self.settings.data_dir / "spool"
        self.logs = Outbox("logs", spool / "logs.jsonl", LogLineSent, self.cp.logs)
        self.runs = Outbox("task-runs", spool / "task-runs.jsonl", TaskRunSent, self.cp.task_runs, batch=200)
        # telemetry goes every TELEMETRY_INTERVAL seconds in larger batches: each batch costs the control plane a
        # request (authentication, the data plane's checks, a transaction), whatever its size
        self.access = Outbox("access-logs", spool / "access-logs.jsonl", AccessLineSent, self.cp.access_logs,
                             interval=TELEMETRY_INTERVAL)
        self.metrics = Outbox("metrics", spool / "metrics.jsonl", MetricPointSent, self.cp.metrics,
                              interval=TELEMETRY_INTERVAL)
        self.spans = Outbox("spans", spool / "spans.jsonl", SpanSent, self.cp.spans, interval=TELEMETRY_INTERVAL)
        for box in self._outboxes():
            box.start()
        cached = self.state.desired()
        await self.runtime.start(self, cached)
        try:
            await self._register()
        except (Unreachable, CredentialRefused) as e:
            if cached is None:
                what = "cannot reach" if isinstance(e, Unreachable) else "the token is refused by"
                raise CellplaneError(f"{what} the control plane at {self.settings.controlplane} and there "
                                     f"is no cached desired state in {self.settings.data_dir} to run from ({e})",
                                     code="unreachable") from None
            log.warning("control plane unreachable (%s); running the cached desired state %s", e,
                        cached.revision[:12])
        if self.connected:
            with contextlib.suppress(Unreachable, ApiRefused, ValidationError):
                wire = await self.cp.desired(None, 0)
                cached = self._parse(wire)
                await asyncio.to_thread(self.state.save_desired, wire)
        if cached is not None:
            await self.apply(cached)
        self._tasks = [asyncio.create_task(self._sync_loop(), name="sync"),
                       asyncio.create_task(self._status_loop(), name="status"),
                       asyncio.create_task(self._reconcile_loop(), name="reconcile")]

    async def _register(self) -> None:
        try:
            answer = await self.cp.register(AgentRegistration(
                agentId=self.agent_id, version=__version__, hostname=socket.gethostname(),
                publicKey=public_key_text(self.key), bindUnbound=self.settings.bind_unbound,
                runtime="kubernetes" if self.settings.runtime == "kubernetes" else "local"))
        except CredentialRefused:
            raise
        except ApiRefused as e:
            raise CellplaneError(f"the control plane refused this data plane: {e}", code="refused") from None
        self.connected = True
        envs = ", ".join(answer.get("environments") or []) or "none yet"
        log.info("registered data plane '%s' with %s (environments: %s)", self.settings.name,
                 self.settings.controlplane, envs)

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        await self.runtime.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._report_last(), 2)
        await self.runtime.close()  # its last telemetry is in the outboxes now
        for box in self._outboxes():
            await box.stop()
        await self.cp.close()
        self.state.unlock()

    def _outboxes(self) -> tuple[Outbox[Any], ...]:
        return self.logs, self.runs, self.access, self.metrics, self.spans

    async def _report_last(self) -> None:
        await self.cp.status(await self._status_report())

    # -- desired state -----------------------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        delay = 1.0
        registered = self.connected
        while True:
            try:
                if not registered:
                    await self._register()
                    registered = True
                since = self.desired.revision if self.desired else None
                wire = await self.cp.desired(since, LONG_POLL)
                self.connected, delay = True, 1.0
                if wire.get("revision") != since:
                    await self.apply(self._parse(wire), wire)
            except ValidationError:  # said by _parse; the control plane may serve a readable one later
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except (Unreachable, ApiRefused, CellplaneError) as e:
                if self.connected:
                    log.warning("control plane unreachable (%s); serving the last desired state", e)
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    @staticmethod
    def _parse(wire: dict[str, Any]) -> DesiredState:
        """The desired state in the JSON the control plane served: parsed here, once, for the runtime. Raises
        pydantic's ValidationError (and logs it) when it is not one this agent can read."""
        try:
            return DesiredState.from_wire(wire)
        except ValidationError as e:
            log.error("the control plane served a desired state this agent cannot read (%s); keeping the last one",
                      e)
            raise

    async def apply(self, desired: DesiredState, wire: dict[str, Any] | None = None) -> None:
        """Keep ``desired`` (and, when given, the JSON it was parsed from on disk) and apply it to the runtime."""
        if wire is not None:
            await asyncio.to_thread(self.state.save_desired, wire)
        self.desired = desired
        await self.reconcile()

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for can swallow a cancel (Python 3.11)
                async with asyncio.timeout(RESYNC):
                    await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            with contextlib.suppress(Exception):
                await self.reconcile()

    async def reconcile(self) -> None:
        """Apply the current desired state to the runtime; one apply at a time (the sync loop and the reconcile
        loop both call this)."""
        async with self._reconciling:
            if self.desired is not None:
                await self.runtime.apply(self.desired)

    # -- RuntimeHost -------------------------------------------------------------------------------------------

    def reconcile_later(self, seconds: float) -> None:
        asyncio.get_running_loop().call_later(seconds, self._reconcile_wanted.set)

    def changed(self) -> None:
        self._dirty.set()

    def fetch_artifact(self, project: str, digest: str, dest: Path) -> None:
        self.cp.artifact(project, digest, dest)

    def log(self, line: LogLineSent) -> None:
        self.logs.put(line)

    def task_run(self, report: TaskRunSent) -> None:
        self.runs.put(report)

    def access_line(self, line: AccessLineSent) -> None:
        self.access.put(line)

    def metric(self, point: MetricPointSent) -> None:
        self.metrics.put(point)

    def span(self, span: SpanSent) -> None:
        self.spans.put(span)

    # -- status ------------------------------------------------------------------------------------------------

    async def _status_report(self) -> StatusReport:
        """The status report: this agent, the revision it runs, and the runtime's part (``RuntimeStatus``)."""
        status = await self.runtime.status()
        revision = self.desired.revision if self.desired else None
        if status.metrics_url is None:  # left out, not sent as null
            return StatusReport(agentId=self.agent_id, revision=revision, gateways=status.gateways,
                                deployments=status.deployments)
        return StatusReport(agentId=self.agent_id, revision=revision, gateways=status.gateways,
                            deployments=status.deployments, metricsUrl=status.metrics_url)

    async def _status_loop(self) -> None:
        sent: StatusReport | None = None
        sent_at = 0.0
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns when the event is set in the same turn
            # as a cancel, and the cancel is lost (the agent's stop then waits for this loop for ever)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.heartbeat):
                    await self._dirty.wait()
            await asyncio.sleep(0.2)  # gather a burst of changes into one report
            self._dirty.clear()
            try:
                report = await self._status_report()
            except ValidationError as e:  # what the control plane would refuse (422): said, tried again later
                log.warning("status not sent: %s", e)
                continue
            if report == sent and time.monotonic() - sent_at < self.settings.heartbeat:
                continue  # nothing new, and the last report is recent enough
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.state.save_status, {**wire(report), "at": now_iso(),
                                                                 "connected": self.connected})
            try:
                await self.cp.status(report)
            except (Unreachable, ApiRefused) as e:
                log.debug("status not sent: %s", e)
            else:
                sent, sent_at = report, time.monotonic()


async def _main(settings: AgentSettings, make_runtime: Callable[[AgentSettings], Runtime]) -> int:
    runtime = make_runtime(settings)
    agent = Agent(settings, runtime)
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
    print(f"data plane '{settings.name}' running (data: {settings.data_dir}); {runtime.describe()}",
          file=sys.stderr, flush=True)
    await stop.wait()
    print("stopping the data plane...", file=sys.stderr, flush=True)
    await agent.stop()
    return 0


def run_agent(settings: AgentSettings, runtime: Callable[[AgentSettings], Runtime] | None = None) -> int:
    """Run an agent until SIGINT or SIGTERM; returns the process exit code. ``runtime`` makes the runtime it drives
    from the settings: ``LocalRuntime`` unless another is given."""
    import uvloop

    if runtime is None:
        from cellplane.dataplane.runtimes.local import LocalRuntime

        runtime = LocalRuntime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings.data_dir = settings.data_dir.resolve()
    return uvloop.run(_main(settings, runtime))
