"""The Cellplane gateway in the cluster: the agent's pod serves the data plane's external and internal gateways.

With ``--serve-gateways`` the Kubernetes runtime runs the same ``cellplane.gateway.server.Gateway`` as the local
runtime, so API keys, OAuth2 tokens, visibility, access logs, metrics and spans behave exactly as on the local data
plane (``cellplane.dataplane.gatewayfeed`` hands them to the host, the code the local runtime uses). Per
environment it opens an external and an internal listener (the gateway's listeners are per environment: the URL
scheme ``/{project}/{component}/{version}`` does not name one); the first environment's take ``external_port`` and
``internal_port`` (8080 and 8081 by default), each further one the next pair (+2, +4, ...). The environments the
install named (``--gateway-environment``, in order) take the first pairs, the ports the agent's pod names and the
gateway Services target (``install``); others take the next free pair, kept in the data directory's
``ports.json`` (``slot/<environment>``) so that a restarted agent listens where it listened before.

The route table is built from the desired state and the last observation: every HTTP endpoint of a service is
routed (its visibility as on the local data plane), to one upstream, the endpoint's Service in its cell namespace
(the Service balances over the ready pods), once at least one of the deployment's pods is ready and not
terminating (scaled to zero: the route is empty as soon as the last pod is being deleted); until then it is
routed to nothing (the gateway's usual 503). Grants come from the desired state as the local runtime builds them.
The upstream's address is the ``Resolver``'s, by default cluster DNS (``<service>.<namespace>.svc.<domain>``);
tests give one that maps to servers on 127.0.0.1. With a ``metrics_port`` the agent's Prometheus endpoint serves
the gateway's counters (its bearer token as on the local data plane; the install's probes connect to that port).
A deployment whose ``scaling`` allows zero is routed with ``wake``: without a ready pod, the gateway's activator
holds its requests and calls the runtime's ``wake`` (``start(wake=...)``) instead of answering 503. Cost: a table
rebuilt per apply and per observation pass (a pass over the deployments), swapped into the gateway
only when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from cellplane.contract import DesiredState
from cellplane.dataplane.gatewayfeed import GatewayFeed
from cellplane.dataplane.runtimes.base import RuntimeHost
from cellplane.dataplane.settings import AgentSettings
from cellplane.dataplane.telemetry import MetricsEndpoint, counter
from cellplane.gateway.routes import Backend, Grant, ListenerKind, ListenerSpec, RouteTable, Upstream
from cellplane.gateway.server import Gateway
from cellplane.kubernetes import autoscaling, health, names
from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.observe import Observed
from cellplane.kubernetes.workloads import HTTP_TYPES, TASK_TYPES

log = logging.getLogger("cellplane.dataplane")
Resolver = Callable[[str, str, int], Upstream]  # (Service, namespace, port) -> the upstream the gateway dials
KINDS = ("external", "internal")


def cluster_dns(domain: str) -> Resolver:
    """The cluster's DNS name of a Service: what the gateway dials in the cluster."""
    def resolve(service: str, namespace: str, port: int) -> Upstream:
        return Upstream(f"{service}.{namespace}.svc.{domain}", port)
    return resolve


@dataclass(frozen=True)
class ServeGateways:
    """What ``--serve-gateways`` and its options say."""

    host: str = "0.0.0.0"  # noqa: S104 (the pod's address)
    external_port: int = 8080  # the first environment's external listener (0: any free port)
    internal_port: int = 8081  # and its internal one
    resolver: Resolver | None = None  # None: cluster DNS
    environments: tuple[str, ...] = ()  # --gateway-environment: these take the slots 0, 1, ... in this order


def grants(desired: DesiredState) -> tuple[Grant, ...]:
    """The desired state's grants, as the gateway checks them (as the local runtime builds them)."""
    return tuple(Grant(g.consumerKey, g.secretDigest, g.environment, g.project, g.component,
                       (g.target.project, g.target.component, g.target.endpoint)) for g in desired.grants)


def route_table(desired: DesiredState, seen: Observed, resolve: Resolver,
                parked: Collection[str] = frozenset()) -> RouteTable:
    """Every service's HTTP endpoints, each to its Service once a pod of the deployment is ready (see the module's
    docstring); an endpoint whose base path repeats an earlier one's is not routed, as on the local data plane.
    ``parked``: deployments being scaled to zero, routed to nothing whatever their pods say (a request is held and
    wakes them rather than reaching a Service whose pods go)."""
    backends = []
    for d in desired.deployments:
        if d.type in TASK_TYPES:
            continue
        # (a pod being deleted has left the Service's endpoints)
        ready = d.id not in parked and any(health.pod_ready(p) and not p["metadata"].get("deletionTimestamp")
                                           for p in seen.pods_of(desired.organization, d))
        namespace = names.namespace(desired.organization, d.project, d.environment)
        wakes = autoscaling.autoscaled(d) and d.scaling is not None and d.scaling.minReplicas == 0
        paths: set[str] = set()
        for ep in d.endpoints:
            if ep.type not in HTTP_TYPES or ep.basePath in paths:
                continue
            paths.add(ep.basePath)
            ups = (resolve(names.service(d.component, d.version, ep.name), namespace, int(ep.port)),) if ready else ()
            backends.append(Backend(d.environment, d.project, d.component, ep.name, d.version, ep.basePath,
                                    frozenset(ep.visibility or ["Project"]), ups, d.id, wakes))
    return RouteTable(tuple(backends), grants(desired))


class ClusterGateways(GatewayFeed):
    """The gateway the agent's pod serves (see the module's docstring)."""

    def __init__(self, settings: AgentSettings, options: ServeGateways, layout: ClusterLayout) -> None:
        self.settings = settings
        self.options = options
        self.layout = layout
        self.resolve = options.resolver or cluster_dns(layout.cluster_domain)
        self._table: RouteTable | None = None
        self._task: asyncio.Task[None] | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.gauges: Callable[[], str] = str  # more for the Prometheus endpoint (the scaler's, for the HPA)
        self.window_closed: Callable[[str, float], None] = lambda at, seconds: None  # a metrics window's end
        self.feed_init(settings)

    async def start(self, host: RuntimeHost, wake: Callable[[str], None] | None = None) -> None:
        """Listen (the listeners open with the first ``update``); ``wake`` is the activator's: called with a
        deployment id when a request is held for a deployment at zero (``KubernetesRuntime.wake``)."""
        self.host = host
        self.ports: dict[str, int] = host.state.ports()
        self.feed_open()
        self.gateway = Gateway(access_log=self._access_line, token_secret=host.state.token_secret(),
                               span=self._gathered_span, wake=wake)
        await self.gateway.start()
        self._window = (time.time(), time.monotonic())
        self._task = asyncio.create_task(self._metrics_loop(), name="kube-gateway-metrics")
        if self.settings.metrics_port is not None:
            self.metrics_endpoint = await MetricsEndpoint.open(self.prometheus, host.state.metrics_token(),
                                                               self.options.host, self.settings.metrics_port)

    def prometheus(self) -> str:
        """What the agent's Prometheus endpoint serves: the gateway's counters, as the local runtime's."""
        return self.gateway.metrics.prometheus() + counter(
            "cellplane_agent_access_lines_unshipped_total",
            "Access-log lines of routed requests not sent to the control plane (over the rate limit).",
            self.access_unshipped) + self.gauges()

    async def update(self, desired: DesiredState, seen: Observed, parked: Collection[str] = frozenset()) -> None:
        """The listeners of the desired state's environments opened (the others closed) and the route table
        swapped in when it changed. Routed before a listener opens, as the local runtime does."""
        table = route_table(desired, seen, self.resolve, parked)
        if table != self._table:
            self._table = table
            self.gateway.update(table)
        environments = {e.name for e in desired.environments} | {d.environment for d in desired.deployments}
        await self._listen(environments)

    async def _listen(self, environments: set[str]) -> None:
        open_now = self.gateway.listeners()
        wanted = {f"{kind}/{env}" for env in environments for kind in KINDS}
        for key in [k for k in open_now if k not in wanted]:
            await self.gateway.close_listener(key)
        before = dict(self.ports)
        for env in sorted(environments):
            slot = self._slot(env)
            pairs: tuple[tuple[ListenerKind, int], ...] = (("external", self.options.external_port),
                                                            ("internal", self.options.internal_port))
            for kind, first in pairs:
                key = f"{kind}/{env}"
                if key in open_now:
                    continue
                port = first + 2 * slot if first else 0
                try:
                    got = await self.gateway.ensure_listener(ListenerSpec(kind, env, host=self.options.host,
                                                                          port=port))
                except OSError as e:  # (another process has the port: said, tried again at the next apply)
                    log.warning("the %s gateway of %s cannot listen on %s port %s: %s", kind, env,
                                self.options.host, port, e.strerror or e)
                    self.host.reconcile_later(5.0)
                    continue
                self.ports[key] = got
        if self.ports != before:
            self.host.state.save_ports(self.ports)

    def _slot(self, environment: str) -> int:
        """The environment's place in the port pairs: its place in ``environments`` (the install's order: the
        ports its pod names), else kept in ports.json (``slot/<environment>``), else the first free one."""
        given = self.options.environments
        if environment in given:
            return given.index(environment)
        key = f"slot/{environment}"
        if key not in self.ports:
            taken = {p for k, p in self.ports.items() if k.startswith("slot/")} | set(range(len(given)))
            self.ports[key] = next(i for i in range(len(taken) + 1) if i not in taken)
        return self.ports[key]

    @property
    def table(self) -> RouteTable | None:
        """The route table the gateway serves (None before the first ``update``)."""
        return self._table

    def wake_failed(self, deployment: str, reason: str) -> None:
        """No replica of ``deployment`` became ready: the requests the gateway holds for it are answered with
        ``reason`` (the activator's ``wake_failed``)."""
        self.gateway.wake_failed(deployment, reason)

    def port(self, kind: str, environment: str) -> int | None:
        """The port a listener listens on (None: not open)."""
        return self.gateway.listeners().get(f"{kind}/{environment}")

    async def _metrics_loop(self) -> None:
        interval = max(0.05, self.settings.metrics_interval)
        while True:
            await asyncio.sleep(max(0.0, self._window[1] + interval - time.monotonic()))
            try:
                self.window_closed(*self._http_window())
            except Exception:  # a window lost is not worth stopping the metrics for
                log.exception("the gateway's metrics window failed")
                await asyncio.sleep(interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if hasattr(self, "gateway"):
            await self.gateway.close()
        self.feed_close()
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.close()

    def describe(self) -> str:
        return "gateways: " + ", ".join(f"{k} :{p}" for k, p in sorted(self.gateway.listeners().items()))
