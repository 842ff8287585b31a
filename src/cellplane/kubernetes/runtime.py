"""The Kubernetes runtime: a ``Runtime`` (``cellplane.dataplane.runtimes.base``) that makes a desired state real in
a cluster. The agent's loop drives it exactly as it drives the local runtime.

``apply(desired)`` renders the state (``render``: sealed values opened here, with the data plane's key, and
nowhere else), then sends, by server-side apply under the field manager ``cellplane`` (``apply``), only the objects
whose rendering changed since they were last applied: a reconcile of an unchanged desired state sends nothing and
the cluster's resourceVersions stay as they are. Objects that left the rendering are deleted (``prune``). Every
``drift_interval`` seconds, and on the first apply after start, it reads back every object labelled as this data
plane's (a list per kind per namespace) and applies again what is missing or no longer holds what was applied
(someone edited or deleted it), and prunes what is labelled as its own but not rendered (left by an older agent).
A restarted agent, with or without its control plane, renders the cached desired state into the same objects,
finds them in the cluster as they are, and writes nothing: running workloads are not restarted.

A manual run's Job is applied once (``jobs``: its id kept in ``started-runs.json`` first); the observation loop
follows it, and the Jobs of the scheduled tasks' CronJobs, to their end and hands ``TaskRunSent`` reports to the
host (running, then succeeded or failed with the container's exit code).

Every ``observe_interval`` seconds an observation pass (``observe``) lists, per cell namespace, the data plane's
Deployments, Jobs and pods (three requests per namespace); ``status()`` maps them onto the contract's reports
(``health``) and the pass tells the host when a report changed. After an apply that wrote a Deployment, a pass
starts at once and they follow every ``rollout_interval`` (0.25 s) until the changed deployments' rollouts settle
(ready, failed, ...) or ``rollout_limit`` (60 s) passed: a new release's ready is reported within a quarter of a
second instead of up to 2 s later; an idle data plane is observed at the normal period. It also keeps the service
pods' log streams and reads failing pods' last lines (``podlogs``). The
gateway URLs reported per environment are the ``--external-url`` and ``--internal-url`` the agent was given (the
base URLs under which the cluster's Gateway or load balancer exposes the data plane's Cellplane gateways); none
given, the gateway Services' in-cluster URLs when the agent serves the gateways itself (``--serve-gateways``:
``gateways``, whose route table each apply and observation pass updates), else none.

A deployment with ``scaling`` has a HorizontalPodAutoscaler for 1..N (``autoscaling``); 0 <-> 1 is the agent's:
``scale(deployment, replicas, reason)`` sets its Deployment's ``/scale`` subresource, says it in the deployment's
system log and keeps the reason for its report until the HPA sets another count; to 0, the deployment leaves the
gateway's routes first (``parked``). ``wake(deployment)`` (the gateway's activator holds a request for it) scales
it to 1 and watches its pods closely until one is ready, then routes it (``wakeups``); the gateway calls it
(``Gateway(wake=...)``). Every ``scaler.TICK`` the gateway's demand feeds ``scaler``: a deployment idle past its
period goes to zero, and the HPA's gauges on the agent's Prometheus endpoint follow the load.
Each observation pass puts a
Deployment found at 0 that may not be there (``minReplicas`` above 0, or no gateway of the agent's to wake it:
nothing else would, an HPA does nothing while its target is at 0) back to ``max(minReplicas, 1)``.

``stop`` ends the agent's own work only: the cluster keeps running the workloads without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import ApiError, AsyncClient
from pydantic import ValidationError

from cellplane.contract import (
    DeploymentReport,
    DesiredDeployment,
    DesiredState,
    GatewayReport,
    LogLineSent,
    MetricPointSent,
)
from cellplane.dataplane.runtimes.base import RuntimeHost, RuntimeStatus
from cellplane.dataplane.settings import AgentSettings
from cellplane.kubernetes import autoscaling, names, prune
from cellplane.kubernetes import observe as observation
from cellplane.kubernetes.apply import Applier, key_of
from cellplane.kubernetes.client import MANAGER, check, connect, message, resource, scale
from cellplane.kubernetes.gateways import ClusterGateways, ServeGateways
from cellplane.kubernetes.jobs import Runs, now_iso
from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.observe import Observed
from cellplane.kubernetes.opener import KeyOpener
from cellplane.kubernetes.podlogs import LastLines, LogFollower
from cellplane.kubernetes.render import Key, Rendering, inventory, render
from cellplane.kubernetes.scaler import TICK, ClusterScaler
from cellplane.kubernetes.wakeups import Wakeups

log = logging.getLogger("cellplane.dataplane")
RETRY = 5.0  # seconds before a failed apply is tried again
UNDER_WAY = ("progressing", "pending", "degraded")  # a rollout's states before it settles (``health``)


@dataclass(frozen=True)
class KubernetesSettings:
    """What ``cellplane dataplane run --kubernetes`` adds to the agent's settings."""

    kubeconfig: Path | None = None  # None: the pod's service account (in-cluster)
    external_url: str | None = None  # the base URL of the data plane's external gateway, as users reach it
    internal_url: str | None = None  # and of its internal one
    drift_interval: float = 30.0  # seconds between reads of every managed object (drift, leftovers)
    observe_interval: float = 2.0  # seconds between status observations (Deployments, Jobs, pods)
    rollout_interval: float = 0.25  # ... while a Deployment the last applies changed is rolling out
    rollout_limit: float = 60.0  # seconds a rollout is observed at ``rollout_interval`` at most
    layout: ClusterLayout = field(default_factory=ClusterLayout)
    follow_logs: bool = True
    gateways: ServeGateways | None = None  # --serve-gateways: the agent's pod is the Cellplane gateway (``gateways``)


class KubernetesRuntime:
    """``Runtime`` for a Kubernetes cluster (see the module's docstring)."""

    def __init__(self, settings: AgentSettings, kube: KubernetesSettings | None = None,
                 client: AsyncClient | None = None) -> None:
        self.settings = settings
        self.kube = kube or KubernetesSettings()
        self.layout = self.kube.layout
        self._client = client
        self.desired: DesiredState | None = None
        self.rendering = Rendering()
        self.rendered: dict[Key, dict[str, Any]] = {}  # the last rendering's objects, by key
        self.errors: dict[str, str] = {}  # deployment id -> why its objects could not be applied
        self.observed = Observed()
        self._next_drift = 0.0
        self._reports: list[DeploymentReport] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._said_unreachable = False
        self.drift_passes = 0
        self.observe_passes = 0  # observation passes made (``observe``)
        self.rollout_passes = 0  # of which at ``rollout_interval`` (a rollout under way)
        self.partial_passes = 0  # of which over the rolling deployments' namespaces only
        self._next_full = 0.0  # when the next pass lists every namespace again, rollouts or not
        self.rollouts: dict[str, float] = {}  # deployment id -> when its rollout stops being observed closely
        self.observe_delay = self.kube.observe_interval  # the observation loop's last wait between passes
        self._observe_now = asyncio.Event()
        self.pruned = 0
        self.decisions: dict[str, autoscaling.Decision] = {}  # deployment id -> the agent's last /scale, and why
        self.parked: set[str] = set()  # deployments scaled to zero by the agent: routed to nothing until woken
        self.scaler = ClusterScaler()
        self.gateways = (ClusterGateways(settings, self.kube.gateways, self.layout)
                         if self.kube.gateways is not None else None)

    # -- Runtime -----------------------------------------------------------------------------------------------

    async def start(self, host: RuntimeHost, cached: DesiredState | None) -> None:
        self.host = host
        if self._client is None:
            self._client = connect(self.kube.kubeconfig)
        self.client = self._client
        await check(self.client)
        self.opener = KeyOpener(host.key)
        self.applier = Applier(self.client)
        self.runs = Runs(host)
        self.logs = LogFollower(self.client, host.state.root, host.log)
        self.last_lines = LastLines(self.logs, host.changed)
        self.wakeups = Wakeups(self.client, lambda: self._labels(self.desired) if self.desired else {},
                               functools.partial(self.scale, route=False), self._routed, self._wake_failed,
                               self.system_line)
        self._next_drift = 0.0  # the first apply reads everything back: what a predecessor left, what drifted
        self._tasks = [asyncio.create_task(self._observe_loop(), name="kube-observe")]
        if self.gateways is not None:
            await self.gateways.start(host, wake=self.wake)
            self.gateways.gauges = lambda: self.scaler.prometheus(self.desired, time.monotonic())
            self.gateways.window_closed = self._scaling_points
            self._tasks.append(asyncio.create_task(self._scale_loop(), name="kube-scaler"))

    async def apply(self, desired: DesiredState) -> None:
        self.desired = desired
        if self.gateways is not None:  # what is gone leaves the route table before its objects are pruned
            await self.gateways.update(desired, self.observed, self.parked)
        rendering = render(desired, self.opener, self.layout)
        objects = self.runs.to_apply(desired, rendering.objects)
        self.rendering = rendering
        keys = inventory(rendering.objects)
        before = self.rendered
        self.rendered = {key_of(o): o for o in rendering.objects}
        errors: dict[str, str] = {}
        live = None
        if time.monotonic() >= self._next_drift:
            try:
                live = await prune.read_live(self.client, self._labels(desired),
                                             {k[2] for k in keys if k[2]} | {self.layout.system_namespace})
            except ApiError as e:  # (refused: what changed is still applied; the read-back is tried again soon)
                log.warning("reading back the data plane's objects failed (%s); trying again in %g s", message(e),
                            RETRY)
                self._next_drift = time.monotonic() + RETRY
            except Exception as e:  # (the API server away: said once, tried again)
                self._unreachable(e)
                return
        if live is not None:
            self.drift_passes += 1
            self._next_drift = time.monotonic() + self.kube.drift_interval
            todo = []
            for obj in objects:
                current = live.get(key_of(obj))
                if current is None or self.applier.drifted(obj, current):
                    todo.append(obj)
                elif not self.applier.unchanged(obj):
                    self.applier.adopt(obj, current)
            gone = prune.prunable(live, keys, rendering.blocked, [d.id for d in desired.deployments])
        else:
            todo = [o for o in objects if not self.applier.unchanged(o)]
            vanished = {k: o for k, o in before.items() if k not in keys}
            gone = prune.prunable(vanished, keys, rendering.blocked, [d.id for d in desired.deployments])
        try:
            foreign = await self._foreign_namespaces(todo)
        except Exception as e:  # (the API server away: said once, tried again)
            self._unreachable(e)
            return
        refused: dict[Key, str] = {}
        if foreign:
            refused = {key_of(o): "its namespace is not this data plane's" for o in todo
                       if o["metadata"].get("namespace", o["metadata"]["name"]) in foreign}
            todo = [o for o in todo if key_of(o) not in refused]
            for d in desired.deployments:
                namespace = names.namespace(desired.organization, d.project, d.environment)
                if namespace in foreign:
                    errors[d.id] = (f"the namespace {namespace} exists and is not this data plane's (it has no "
                                    f"{names.DATA_PLANE} label): remove or rename it")
        await self._hand_over_replicas(todo, before, live)
        result = await self.applier.apply(todo, only_changed=False)
        if result.unreachable:
            self._unreachable(result.unreachable)
        for key, why in result.failed.items():
            errors.setdefault(self._deployment_of(key), f"cannot apply {key[1]} {key[3]}: {why}")
        failed_deletes = await prune.delete(self.client, gone)
        self.pruned += len(gone) - len(failed_deletes)
        self.applier.forget(k for k in gone if k not in failed_deletes)
        for key, why in failed_deletes.items():
            log.warning("cannot delete %s %s/%s: %s", key[1], key[2], key[3], why)
        self.runs.not_created(desired, {**refused, **result.unsent, **result.failed})
        await self._start_new_releases(desired, before, result.written)
        self._follow_rollouts(result.written)
        errors.pop("", None)
        self.errors = errors
        if result.failed or failed_deletes or foreign:
            self.host.reconcile_later(RETRY)
        elif self._said_unreachable:
            log.info("the Kubernetes API server answers again")
            self._said_unreachable = False
        self.host.changed()

    async def status(self) -> RuntimeStatus:
        endpoint = self.gateways.metrics_endpoint if self.gateways is not None else None
        return RuntimeStatus(self._gateways(), self._report(), endpoint.url if endpoint is not None else None)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if hasattr(self, "wakeups"):
            await self.wakeups.close()
        if hasattr(self, "logs"):
            await self.last_lines.close()
            await self.logs.close()

    async def close(self) -> None:
        if self.gateways is not None:
            await self.gateways.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()

    def describe(self) -> str:
        server = self.client.config.cluster.server if self._client is not None else "?"
        gateways = f"; {self.gateways.describe()}" if self.gateways is not None else ""
        return (f"Kubernetes: {server} (field manager cellplane; drift read every {self.kube.drift_interval:g}s)"
                f"{gateways}")

    # -- applying ----------------------------------------------------------------------------------------------

    def drift_now(self) -> None:
        """Make the next ``apply`` read everything back (drift, leftovers), whenever the last read was."""
        self._next_drift = 0.0

    @staticmethod
    def _labels(desired: DesiredState) -> dict[str, str]:
        return prune.selector(desired.organization, desired.dataPlane)

    def _deployment_of(self, key: Key) -> str:
        obj = self.rendered.get(key)
        label = ((obj or {}).get("metadata") or {}).get("labels", {}).get(names.DEPLOYMENT)
        if self.desired is None or label is None:
            return ""
        return next((d.id for d in self.desired.deployments if names.label_value(d.id) == label), "")

    async def _foreign_namespaces(self, todo: list[dict[str, Any]]) -> set[str]:
        """The namespaces about to be applied for the first time that already exist without this data plane's
        labels (one GET each): the agent never takes over what it did not make."""
        out = set()
        for obj in todo:
            if obj["kind"] != "Namespace" or key_of(obj) in self.applier.applied:
                continue
            name = obj["metadata"]["name"]
            try:
                live = await self.client.get(resource("v1", "Namespace"), name)
            except ApiError as e:
                if e.status.code == 404:
                    continue
                raise
            labels = (dict(live).get("metadata") or {}).get("labels") or {}
            if labels.get(names.DATA_PLANE) != obj["metadata"]["labels"].get(names.DATA_PLANE):
                out.add(name)
        return out

    def _unreachable(self, error: BaseException) -> None:
        if not self._said_unreachable:
            log.warning("the Kubernetes API server cannot be reached (%s); the workloads keep running, the agent "
                        "tries again", message(error))
            self._said_unreachable = True
        self.host.reconcile_later(RETRY)

    # -- scaling -----------------------------------------------------------------------------------------------

    def deployment(self, deployment: str) -> DesiredDeployment | None:
        """The desired deployment with this id, if it is in the desired state."""
        return next((d for d in self.desired.deployments if d.id == deployment), None) if self.desired else None

    async def scale(self, deployment: str, replicas: int, reason: str, *, route: bool = True) -> None:
        """Set an autoscaled deployment's replica count through its Deployment's ``/scale`` (the agent's 0 <-> 1;
        see the module's docstring), said in its system log. To 0 it leaves the routes first; above 0 it is routed
        again once a pod is ready (``route``; a wake-up routes it itself, from the pods it watched). Raises the API
        server's error (``ApiError``)."""
        d = self.deployment(deployment)
        if d is None or self.desired is None or not autoscaling.autoscaled(d):
            raise ValueError(f"{deployment} is not an autoscaled deployment of the desired state")
        namespace = names.namespace(self.desired.organization, d.project, d.environment)
        if replicas == 0:  # out of the routes first: a request from now on is held and wakes it
            self.parked.add(d.id)
            if self.gateways is not None:
                await self.gateways.update(self.desired, self.observed, self.parked)
        await scale(self.client, namespace, names.workload(d.component, d.version), replicas)
        if replicas > 0 and route:
            self.parked.discard(d.id)
        self.decisions[d.id] = autoscaling.Decision(replicas, reason)
        count = "zero" if replicas == 0 else f"{replicas} replica{'s' if replicas > 1 else ''}"
        self.system_line(d, f"scaled to {count}: {reason}")
        self.host.changed()

    def wake(self, deployment: str) -> None:
        """The gateway holds a request for ``deployment``, which has no ready replica: wake it (``wakeups``; its
        count goes to 1 when it is at zero). Called on the agent's loop; a no-op for a deployment that is not
        autoscaled to zero, or while a wake-up of it is under way."""
        d = self.deployment(deployment)
        if d is None or self.desired is None or not autoscaling.autoscaled(d) or d.scaling is None:
            return
        namespace = names.namespace(self.desired.organization, d.project, d.environment)
        live = self.observed.deployments.get((namespace, names.workload(d.component, d.version)))
        decision = self.decisions.get(d.id)
        at_zero = ((decision is not None and decision.replicas == 0) or d.id in self.parked
                   or (live is not None and (live.get("spec") or {}).get("replicas") == 0))
        self.scaler.woke(d.id, time.monotonic())
        self.wakeups.wake(self.desired.organization, d, at_zero)

    def _count(self, d: DesiredDeployment) -> int | None:
        """A deployment's replica count as the agent knows it: 0 once it scaled it to zero, else the Deployment's
        as last observed (None: not observed yet)."""
        decision = self.decisions.get(d.id)
        if d.id in self.parked or (decision is not None and decision.replicas == 0):
            return 0
        if self.desired is None:
            return None
        namespace = names.namespace(self.desired.organization, d.project, d.environment)
        live = self.observed.deployments.get((namespace, names.workload(d.component, d.version)))
        return None if live is None else int((live.get("spec") or {}).get("replicas", 1))

    async def scale_tick(self) -> None:
        """One look at the gateway's demand (``scaler``): a deployment idle past its period goes to zero."""
        desired = self.desired
        if desired is None or self.gateways is None:
            return
        demand = self.gateways.gateway.demand()
        for d, decision in self.scaler.tick(desired, demand, time.monotonic(), self._count):
            if self.wakeups.under_way(d.id) or self.desired is not desired:
                continue
            try:
                await self.scale(d.id, 0, decision.reason)
            except Exception as e:  # (said; tried again at the next tick)
                log.warning("cannot scale %s to zero: %s", d.id, message(e))

    async def _scale_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                await self.scale_tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # one tick lost is not worth stopping the scaler for
                log.exception("the scaler's tick failed")

    def _scaling_points(self, at: str, seconds: float) -> None:
        """One "scaling" metric point per autoscaled deployment for the metrics window that just closed: its
        pods, its count, the cold starts of the window."""
        desired = self.desired
        cold = self.scaler.take_cold()
        if desired is None:
            return
        for d in desired.deployments:
            if not autoscaling.autoscaled(d):
                continue
            pods = [p for p in self.observed.pods_of(desired.organization, d)
                    if not p["metadata"].get("deletionTimestamp")]
            count, cold_seconds = cold.get(d.id, (0, 0.0))
            try:
                self.host.metric(MetricPointSent(
                    kind="scaling", environment=d.environment, project=d.project, component=d.component, at=at,
                    seconds=max(seconds, 0.001), replicas=len(pods), desiredReplicas=self._count(d) or 0,
                    coldStarts=count, coldStartSeconds=round(cold_seconds, 3)))
            except ValidationError as e:
                log.warning("a scaling point of %s was refused: %s", d.id, e)

    async def _routed(self, d: DesiredDeployment, pods: list[dict[str, Any]]) -> None:
        """A woken deployment has a ready pod: its pods into the observation, out of ``parked``, and the route
        table updated at once (the held requests go on)."""
        if self.desired is None:
            return
        namespace = names.namespace(self.desired.organization, d.project, d.environment)
        self.observed.pods[(namespace, names.workload(d.component, d.version))] = pods
        self.parked.discard(d.id)
        if self.gateways is not None:
            await self.gateways.update(self.desired, self.observed, self.parked)
        self.host.changed()

    def _wake_failed(self, d: DesiredDeployment, reason: str) -> None:
        self.system_line(d, f"wake-up failed: {reason}")
        if self.gateways is not None:
            self.gateways.wake_failed(d.id, reason)

    def system_line(self, d: DesiredDeployment, line: str) -> None:
        """An event in the deployment's log (stream ``system``), as the local runtime writes them."""
        self.host.log(LogLineSent(deployment=d.id, environment=d.environment, project=d.project,
                                  component=d.component, replica=None, stream="system",
                                  at=now_iso(), line=line))

    async def _hand_over_replicas(self, todo: list[dict[str, Any]], before: dict[Key, dict[str, Any]],
                                  live: dict[Key, dict[str, Any]] | None) -> None:
        """Before a Deployment whose ``replicas`` the agent's apply owned is applied without them (its deployment
        got ``scaling``), its count is written through ``/scale``: server-side apply would otherwise remove the
        field its only owner no longer sends, and the API server would default it to 1 until the HPA scales back
        (a service at 5 replicas dropping to 1). The ``/scale`` write's field manager (``client.SCALE_MANAGER``) keeps
        owning the count until the HPA or the agent's next ``/scale`` changes it."""
        for obj in todo:
            if obj["kind"] != "Deployment" or "replicas" in obj["spec"]:
                continue
            key = key_of(obj)
            namespace, name = key[2], key[3]
            current = (live or {}).get(key) or self.observed.deployments.get((namespace, name))
            if current is None or not _apply_owns_replicas(current):
                continue
            replicas = (before.get(key) or {}).get("spec", {}).get("replicas",
                                                                   (current.get("spec") or {}).get("replicas", 1))
            try:
                await scale(self.client, namespace, name, int(replicas))
            except Exception as e:  # (said; the apply goes on: the HPA scales back from the default)
                log.warning("cannot hand the replicas of %s/%s over to its autoscaler: %s", namespace, name,
                            message(e))

    async def _start_new_releases(self, desired: DesiredState, before: dict[Key, dict[str, Any]],
                                  written: list[Key]) -> None:
        """A new release of a deployment at zero starts one replica, as a rollout on the local data plane does: the
        deploy shows the release ready (or failing) now rather than at the first request; the idle period takes it
        back to zero."""
        for d in desired.deployments:
            if not autoscaling.autoscaled(d):
                continue
            namespace = names.namespace(desired.organization, d.project, d.environment)
            key: Key = ("apps/v1", "Deployment", namespace, names.workload(d.component, d.version))
            previous = ((before.get(key) or {}).get("spec", {}).get("template", {}).get("metadata", {})
                        .get("labels", {}).get(names.RELEASE))
            if key not in written or previous in (None, names.label_value(d.release)):
                continue
            live = self.observed.deployments.get((namespace, key[3]))
            decision = self.decisions.get(d.id)
            if (decision is not None and decision.replicas == 0) or d.id in self.parked or (
                    live is not None and (live.get("spec") or {}).get("replicas") == 0):
                try:
                    await self.scale(d.id, 1, f"release {d.release} deployed at zero: one replica started")
                except Exception as e:  # (said; the next request wakes it)
                    log.warning("cannot start the new release of %s: %s", d.id, message(e))

    async def _keep_scale(self, desired: DesiredState, seen: Observed) -> None:
        """After an observation: a Deployment at 0 that may not be there goes back to ``max(minReplicas, 1)``, and
        a decision of the agent's that the HPA overrode is forgotten (the report then says the HPA's reason)."""
        wakes = self.gateways is not None
        ids = {d.id for d in desired.deployments}
        self.parked &= ids
        for gone in [k for k in self.decisions if k not in ids]:
            del self.decisions[gone]
        for d in desired.deployments:
            if not autoscaling.autoscaled(d) or d.scaling is None:
                self.decisions.pop(d.id, None)
                self.parked.discard(d.id)
                continue
            namespace = names.namespace(desired.organization, d.project, d.environment)
            live = seen.deployments.get((namespace, names.workload(d.component, d.version)))
            if live is None:
                continue
            replicas = int((live.get("spec") or {}).get("replicas", 1))
            decision = self.decisions.get(d.id)
            if decision is not None and decision.replicas != replicas:
                del self.decisions[d.id]
            if replicas == 0 and (d.scaling.minReplicas > 0 or not wakes):
                why = (f"minReplicas {d.scaling.minReplicas}" if d.scaling.minReplicas > 0 else autoscaling.NO_WAKE)
                try:
                    await self.scale(d.id, autoscaling.floor(d), why)
                except Exception as e:  # (said; tried again at the next pass)
                    log.warning("cannot scale %s back up: %s", d.id, message(e))

    # -- observing ---------------------------------------------------------------------------------------------

    def _follow_rollouts(self, written: list[Key]) -> None:
        """The deployments whose Deployment an apply just wrote are observed at once, then every
        ``rollout_interval`` until each is ready, failed (or otherwise settled) or ``rollout_limit`` passed
        (``_observe_loop``): the release's ready reaches the control plane within a quarter of a second of the
        cluster's rather than at the next ``observe_interval``. An apply that writes no Deployment changes
        nothing: an idle data plane is observed at the normal period."""
        until = time.monotonic() + self.kube.rollout_limit
        changed = {self._deployment_of(key) for key in written if key[1] == "Deployment"} - {""}
        for deployment in changed:
            self.rollouts[deployment] = until
        if changed:
            self._observe_now.set()

    def _settle_rollouts(self) -> None:
        """After a pass: rollouts that ended (their report neither progressing, pending nor degraded for the
        current release), left the desired state or ran past ``rollout_limit`` are no longer observed closely."""
        if not self.rollouts:
            return
        now = time.monotonic()
        states = {r.id: (r.state, r.release) for r in self._reports}
        releases = {d.id: d.release for d in self.desired.deployments} if self.desired is not None else {}
        for deployment, until in list(self.rollouts.items()):
            state, release = states.get(deployment, (None, None))
            if (now >= until or deployment not in releases
                    or (release == releases[deployment] and state not in UNDER_WAY)):
                del self.rollouts[deployment]

    async def _observe_loop(self) -> None:
        """An observation pass every ``observe_interval`` seconds, or twice as long as the last pass took when that is
        longer (about 1.9 s for 500 deployments on a busy 2-core machine): observing never takes more than a third of
        the agent's time. While a rollout is under way (``rollouts``: set by an apply that wrote a Deployment, which
        also starts a pass at once) the period is ``rollout_interval`` instead (the same bound by the last pass's
        duration): the same four lists per namespace, only sooner, only over the rolling deployments' namespaces (the
        others' last observation kept; every namespace again every ``observe_interval``), and only until the rollouts
        settle or ``rollout_limit`` passed. Chosen over a watch on Deployments and pods: a watch per managed namespace
        is a long-lived connection each (hundreds for 500 cells) that must be re-listed whenever it breaks or its
        resourceVersion expires, to save requests only during the few seconds of a rollout."""
        while True:
            started = time.monotonic()
            self._observe_now.clear()
            fast = bool(self.rollouts)
            try:
                await self.observe()
                self.observe_passes += 1
                self.rollout_passes += fast
                self._settle_rollouts()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # (the API server away: the last observation stands)
                log.debug("observation failed: %s", message(e))
            period = self.kube.rollout_interval if self.rollouts else self.kube.observe_interval
            self.observe_delay = max(period, 2 * (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._observe_now.wait(), self.observe_delay)

    async def observe(self) -> None:
        """One observation pass (``observe``): the runs followed, the log streams kept, the host told when the
        status report changed."""
        desired = self.desired
        if desired is None:
            return
        namespaces = sorted({names.namespace(desired.organization, d.project, d.environment)
                             for d in desired.deployments} | self.runs.namespaces(desired.organization))
        rolling = sorted({names.namespace(desired.organization, d.project, d.environment)
                          for d in desired.deployments if d.id in self.rollouts})
        if rolling and time.monotonic() < self._next_full:  # a rollout pass: its namespaces only, the rest kept
            part = await observation.observe(self.client, self._labels(desired), rolling)
            seen = self.observed.replaced(part, set(rolling), set(namespaces))
            self.partial_passes += 1
        else:
            self._next_full = time.monotonic() + self.kube.observe_interval
            seen = await observation.observe(self.client, self._labels(desired), namespaces)
        self.observed = seen
        if self.gateways is not None and self.desired is desired:
            await self.gateways.update(desired, seen, self.parked)
        if self.desired is desired:
            await self._keep_scale(desired, seen)
        self.last_lines.want(observation.failing_pods(desired, seen))
        self.runs.follow(desired, seen.jobs, seen.job_pods)
        if self.kube.follow_logs:
            self.logs.sync(observation.running_pods(desired, seen))
        reports = self._report()
        if reports != self._reports:
            self._reports = reports
            self.host.changed()

    def _report(self) -> list[DeploymentReport]:
        if self.desired is None:
            return []
        return observation.reports(self.desired, self.observed, blocked=self.rendering.blocked, errors=self.errors,
                               applied=self.applier.applied, last_lines=self.last_lines.by_pod(),
                               decisions=self.decisions, wakes=self.gateways is not None)

    def _gateways(self) -> dict[str, GatewayReport]:
        """Every environment's gateway URLs: ``--external-url``/``--internal-url`` when given, else, when the agent
        serves the gateways, the gateway Services' in-cluster URLs (``ClusterLayout.gateway_base``)."""
        serving = self.gateways is not None
        if self.desired is None or not (self.kube.external_url or self.kube.internal_url or serving):
            return {}
        environments = {e.name for e in self.desired.environments} | {d.environment for d in self.desired.deployments}
        return {env: GatewayReport(
                    external=self.kube.external_url or (self.layout.gateway_base(env, "external") if serving else None),
                    internal=self.kube.internal_url or (self.layout.gateway_base(env, "internal") if serving else None))
                for env in sorted(environments)}


def _apply_owns_replicas(obj: dict[str, Any]) -> bool:
    """Whether the agent's server-side apply owns a live object's ``spec.replicas`` (its managed fields)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == MANAGER and entry.get("operation") == "Apply":
            return "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    return False


def runtime_factory(kube: KubernetesSettings) -> Any:
    """What ``run_agent`` takes: settings -> a ``KubernetesRuntime``."""
    def make(settings: AgentSettings) -> KubernetesRuntime:
        return KubernetesRuntime(settings, kube)
    return make

