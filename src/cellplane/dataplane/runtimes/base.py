"""The seam between the agent's loop and what runs workloads: the point where the agent stops knowing how.

The loop (``cellplane.dataplane.agent``) registers with the control plane, long-polls the desired state, keeps it
on disk, reports status and owns the outboxes that carry events, log lines, task runs and telemetry back. It knows
nothing of processes, listeners or clusters. A ``Runtime`` makes the desired state real somewhere and says how it
is going; the loop drives it through four calls, in this order:

``start(host, cached)`` once, before the first apply: the runtime prepares (sweeps what a crashed predecessor left,
opens its listeners, ...) and may report what the cached desired state says about that crash through ``host``.
``apply(desired)`` with every new desired state, and again every few seconds and whenever the runtime asked with
``host.reconcile_later``: level-triggered and idempotent (what already agrees is left alone); never two at once.
``status()`` whenever the loop reports: the gateways and deployments part of the status report (``RuntimeStatus``).
``stop()`` then ``close()`` when the agent goes down: ``stop`` ends what runs (the loop then sends a last status
that says so), ``close`` releases the rest (listeners, endpoints), handing the last telemetry to ``host`` first.
(``describe()`` is the one line the agent prints once it runs.)

The desired state arrives parsed, once, at the loop's boundary: a ``cellplane.contract.DesiredState`` (frozen
models; docs/dataplane.md). What goes back is the contract's models too: the status (``RuntimeStatus``:
``GatewayReport``, ``DeploymentReport``), and the events, log lines, task runs and telemetry handed to the host's
sinks (``LogLineSent``, ``TaskRunSent``, ``AccessLineSent``, ``MetricPointSent``, ``SpanSent``: their times the
ISO 8601 text the runtime wrote, as the control plane has always received it). The control-plane client turns them
into JSON once. A runtime never calls the control plane itself except through ``host``, so the loop's spooling,
retries and token handling cover it. A runtime that runs workloads elsewhere (a Kubernetes cluster: render,
server-side apply, prune, read health) is a module beside ``local`` that implements these methods, handed to
``run_agent``; the loop does not change. """

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.contract import (
    AccessLineSent,
    DeploymentReport,
    DesiredState,
    GatewayReport,
    LogLineSent,
    MetricPointSent,
    SpanSent,
    TaskRunSent,
)
from cellplane.dataplane.localstate import LocalState


@dataclass(frozen=True)
class RuntimeStatus:
    """A runtime's part of the status report (``contract.StatusReport``; the loop adds ``agentId`` and
    ``revision``): its listeners by environment, its deployments, and its Prometheus endpoint if it has one."""

    gateways: dict[str, GatewayReport]
    deployments: list[DeploymentReport]
    metrics_url: str | None = None


class RuntimeHost(Protocol):
    """What the loop lends a runtime: its data directory's state, its key, the control plane's artifacts, and the
    sinks of what goes back. Every sink returns at once (items are queued, spooled while the control plane is away)."""

    @property
    def state(self) -> LocalState:
        """The data directory (locked by the loop): the runtime may keep its own files there."""
        ...

    @property
    def key(self) -> X25519PrivateKey:
        """The data plane's private key: what opens the secrets sealed for it in the desired state."""
        ...

    def fetch_artifact(self, project: str, digest: str, dest: Path) -> None:
        """Download an artifact into ``dest`` (blocking: call it in a thread). Raises
        ``cpclient.Unreachable`` or ``cpclient.ApiRefused``."""
        ...

    def changed(self) -> None:
        """Something ``status()`` reports changed: send a status soon (changes in a burst are gathered)."""
        ...

    def reconcile_later(self, seconds: float) -> None:
        """Call ``apply`` with the current desired state again in ``seconds`` (a retry)."""
        ...

    def log(self, line: LogLineSent) -> None:
        """A log line (a workload's output or an event: stream "system"), as ``POST …/logs`` takes it."""
        ...

    def task_run(self, report: TaskRunSent) -> None:
        """A task run's state, as ``POST …/task-runs`` takes it."""
        ...

    def access_line(self, line: AccessLineSent) -> None:
        """A routed request, as ``POST …/access-logs`` takes it."""
        ...

    def metric(self, point: MetricPointSent) -> None:
        """A metrics point, as ``POST …/metrics`` takes it."""
        ...

    def span(self, span: SpanSent) -> None:
        """A trace span, as ``POST …/spans`` takes it."""
        ...


class Runtime(Protocol):
    """Makes a desired state real and reports on it (see the module's docstring for the order of calls)."""

    async def start(self, host: RuntimeHost, cached: DesiredState | None) -> None:
        """Prepare to apply; ``cached`` is the desired state kept on disk (None before the first one). Raises
        ``CellplaneError`` when the runtime cannot run here at all."""
        ...

    async def apply(self, desired: DesiredState) -> None:
        """Converge on ``desired`` (level-triggered: a no-op for what already agrees). Returns once the work is
        started, not done: rollouts go on in the background and show in ``status``."""
        ...

    async def status(self) -> RuntimeStatus:
        """What runs (the contract's report models); what it calls ready answers requests."""
        ...

    async def stop(self) -> None:
        """End what runs here (the agent is going down)."""
        ...

    async def close(self) -> None:
        """Release what is left (listeners, endpoints); the last telemetry goes to the host first."""
        ...

    def describe(self) -> str:
        """Where it serves, in one line, for the agent's "running" message once started (its listeners, say)."""
        ...
