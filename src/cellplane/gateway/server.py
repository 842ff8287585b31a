"""The gateway: listeners, the current route table, and the upstream pools they share.

The agent owns the event loop (uvloop) and drives the gateway through this class: it opens listeners,
swaps in a new route table whenever replicas or grants change, and drains replicas before stopping them.
The request path itself lives in ``client`` (client connections), ``listener`` (routing and admission),
``proxy`` (one proxied request) and ``upstream`` (replica connections); requests for a deployment at zero wait
in the ``activator``, and ``demand`` tells the data plane's scaler what each deployment is asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cellplane.gateway.activator import Activator
from cellplane.gateway.auth import TokenIssuer
from cellplane.gateway.demand import Demand
from cellplane.gateway.listener import Listener
from cellplane.gateway.metrics import Metrics
from cellplane.gateway.router import RouteIndex
from cellplane.gateway.routes import ListenerSpec, RouteTable, Upstream
from cellplane.gateway.tracing import TokenBucket
from cellplane.gateway.upstream import UpstreamPool
from cellplane.gateway.workers import Workers

log = logging.getLogger("cellplane.gateway")


@dataclass
class GatewaySettings:
    """Limits and timeouts; the defaults follow common reverse-proxy practice (nginx's, mostly)."""

    connect_timeout: float = 5.0
    read_timeout: float = 60.0  # waiting for upstream response headers / between body chunks
    idle_timeout: float = 75.0  # client keep-alive idle
    max_header_bytes: int = 65536
    max_headers: int = 100
    retries: int = 2  # extra attempts for idempotent requests on connect failure or 503
    breaker_failures: int = 5  # consecutive failures that open an upstream's circuit
    breaker_reset: float = 5.0  # seconds before a half-open probe
    pool_size: int = 64  # idle keep-alive connections kept per upstream
    token_ttl: int = 3600  # OAuth2 access tokens issued at /_cellplane/token
    trace_rate: float = 100.0  # new (and external) traces sampled per second at most ...
    trace_burst: int = 200  # ... with bursts up to this many
    hop_rate: float = 1000.0  # spans per second of traces continued inside (so that one chatty caller that samples
    hop_burst: int = 2000  # everything cannot flood the span store), with bursts up to this many
    hold_queue: int = 1000  # requests held per deployment (and process) while it wakes; more: 503, Retry-After
    hold_timeout: float = 30.0  # seconds a request is held at most (then 504)


class Gateway:
    """The agent's handle on the gateway; every method runs on (and only on) the agent's event loop."""

    def __init__(self, settings: GatewaySettings | None = None,
                 access_log: Callable[[dict[str, Any]], None] | None = None,
                 token_secret: bytes | None = None,
                 span: Callable[[dict[str, Any]], None] | None = None, workers: int = 0, share: int = 1,
                 wake: Callable[[str], None] | None = None) -> None:
        """``access_log`` gets one dict per answered request, ``span`` one per sampled routed request (a Span of
        the observability contract); either may be None (off). Both are called on the request path: keep them
        cheap, and their exceptions are swallowed (reported once).

        ``workers``: processes to start (``start``) that serve the same listeners (``cellplane.gateway.workers``);
        their requests reach ``access_log``, ``span`` and ``metrics`` here too. ``share``: of how many processes
        this gateway is one (a worker's is); the trace sampling rates are divided among them.

        ``wake``: called with a deployment id when a request is held for it (its backend says ``wake`` and has no
        upstream) and no wake-up of it is under way, in this process or a worker: once per wake-up episode, which
        ends when a route table gives it an upstream or ``wake_failed`` is called (``cellplane.gateway.activator``).
        Called on the request path: keep it cheap (schedule the work); its exceptions are swallowed (reported
        once)."""
        self.settings = settings or GatewaySettings()
        self.access_log = access_log
        self.span = span
        self.metrics = Metrics()
        share = max(1, share, workers + 1)
        s = self.settings
        self.trace_bucket = TokenBucket(s.trace_rate / share, _burst_share(s.trace_burst, share))
        self.hop_bucket = TokenBucket(s.hop_rate / share, _burst_share(s.hop_burst, share))
        self._token_secret = token_secret or secrets.token_bytes(32)
        self.tokens = TokenIssuer(self._token_secret, self.settings.token_ttl)
        self.workers = Workers(self, workers, self._token_secret) if workers > 0 else None
        self._pools: dict[Upstream, UpstreamPool] = {}
        self.index = RouteIndex(RouteTable(), self._pool_of)
        self._listeners: dict[str, Listener] = {}
        self._request_ids = itertools.count(1)
        self._request_id_prefix = secrets.token_hex(6).encode()
        self._access_log_failures = 0
        self._span_failures = 0
        self.activator = Activator(self, wake)
        self._requests: dict[str, int] = {}  # counted on routes that left the table, since demand() last read

    async def start(self) -> None:
        """Start the worker processes, if any (before the first listener, or any time)."""
        if self.workers is not None:
            await self.workers.start()

    # -- listeners ---------------------------------------------------------------------------------------------

    async def ensure_listener(self, spec: ListenerSpec, sock: socket.socket | None = None) -> int:
        """Open the listener unless one with the same key is open; its port either way. With ``sock`` (a worker's
        copy of the agent's listening socket) accept on that instead of listening anew."""
        existing = self._listeners.get(spec.key)
        if existing is not None:
            return existing.port
        listener = Listener(self, spec)
        port = await listener.open(sock)
        raced = self._listeners.get(spec.key)
        if raced is not None:  # opened by a concurrent call meanwhile
            await listener.close()
            return raced.port
        self._listeners[spec.key] = listener
        if self.workers is not None and listener.server is not None:
            self.workers.listen(dataclasses.replace(spec, port=port), listener.server.sockets[0].fileno())
        return port

    async def close_listener(self, key: str) -> None:
        listener = self._listeners.pop(key, None)
        if listener is not None:
            if self.workers is not None:
                self.workers.close_listener(key)
            await listener.close()

    def listeners(self) -> dict[str, int]:
        return {key: listener.port for key, listener in self._listeners.items()}

    # -- routes and upstreams ----------------------------------------------------------------------------------

    def update(self, table: RouteTable) -> None:
        """Swap in a new route table at once. Requests in flight finish where they are; idle connections to
        upstreams that left the table are closed (and any that finish later are not kept)."""
        index = RouteIndex(table, self._pool_of)
        self._harvest_requests(self.index)
        for upstream, pool in list(self._pools.items()):
            pool.live = upstream in index.upstreams
            if not pool.live:
                pool.close_idle()
                if pool.inflight == 0:
                    del self._pools[upstream]  # a replica that reuses the port later starts afresh
        self.index = index
        self.activator.routed(index)
        self.metrics.routed({(b.environment, b.project, b.component, b.endpoint) for b in table.backends})
        if self.workers is not None:
            self.workers.update(table)

    async def routed(self, timeout: float = 5.0) -> bool:
        """Wait until every worker routes by the latest table (True), or ``timeout`` passed (False)."""
        return True if self.workers is None else await self.workers.routed(timeout)

    # -- scaling: the activator and demand ---------------------------------------------------------------------

    def wake_failed(self, deployment: str, reason: str) -> None:
        """The deployment's wake-up failed (e.g. "replica 0 exited with code 3: ..."): every request held for it,
        here and in the workers, is answered at once (503 "wake-failed", the reason in the message); the next
        request wakes it again."""
        self.activator.failed(deployment, reason)
        if self.workers is not None:
            self.workers.wake_failed(deployment, reason)

    def demand(self) -> dict[str, Demand]:
        """Per deployment of the route table (and any still busy): requests in flight and held now, requests and
        cold starts since the previous call; summed over the worker processes (theirs at most ``worker.FLUSH``
        seconds old). Meant for one reader: the data plane's scaler."""
        out: dict[str, Demand] = {deployment: Demand() for deployment in self.index.by_deployment}

        def of(deployment: str) -> Demand:
            demand = out.get(deployment)
            if demand is None:
                demand = out[deployment] = Demand()
            return demand

        self._harvest_requests(self.index)
        requests, self._requests = self._requests, {}
        for deployment, n in requests.items():
            of(deployment).requests += n
        for pool in self._pools.values():
            if pool.inflight and pool.deployment:
                of(pool.deployment).inflight += pool.inflight
        for deployment, n in self.activator.held().items():
            demand = of(deployment)
            demand.held += n
            demand.inflight += n
        for deployment, (count, seconds) in self.activator.take_cold_starts().items():
            demand = of(deployment)
            demand.cold_starts += count
            demand.cold_start_seconds += seconds
        if self.workers is not None:
            for deployment, theirs in self.workers.demand().items():
                of(deployment).add(theirs)
        return out

    def _harvest_requests(self, index: RouteIndex) -> None:
        requests = self._requests
        for deployment, routes in index.by_deployment.items():
            n = 0
            for route in routes:
                n += route.requests
                route.requests = 0
            if n:
                requests[deployment] = requests.get(deployment, 0) + n

    def inflight(self, upstream: Upstream) -> int:
        """Requests currently proxied to ``upstream`` (an open WebSocket tunnel counts as one)."""
        pool = self._pools.get(upstream)
        return pool.inflight if pool is not None else 0

    async def drain(self, upstreams: Iterable[Upstream], timeout: float = 30.0) -> bool:
        """Wait until no request is in flight on ``upstreams`` (True) or ``timeout`` passed (False); then close
        their idle pooled connections. Rollouts call it after the upstreams left the route table. With workers,
        their requests count too."""
        upstreams = set(upstreams)
        if self.workers is not None:
            here, there = await asyncio.gather(self._drain(upstreams, timeout),
                                               self.workers.drain(list(upstreams), timeout))
            return here and there
        return await self._drain(upstreams, timeout)

    async def _drain(self, upstreams: set[Upstream], timeout: float) -> bool:
        pools = [pool for u in upstreams if (pool := self._pools.get(u)) is not None]
        waiting = [pool.drained() for pool in pools if pool.inflight]
        drained = True
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=timeout)
            drained = not pending
        for pool in pools:
            pool.close_idle()
            if not pool.live and pool.inflight == 0 and self._pools.get(pool.upstream) is pool:
                del self._pools[pool.upstream]
        return drained

    def _pool_of(self, upstream: Upstream) -> UpstreamPool:
        pool = self._pools.get(upstream)
        if pool is None:
            pool = self._pools[upstream] = UpstreamPool(upstream, self.settings)
        return pool

    # -- used by the request path ------------------------------------------------------------------------------

    def new_request_id(self) -> bytes:
        """A request id unique to this gateway instance: a random prefix and a counter (no syscall per id)."""
        return b"%s-%x" % (self._request_id_prefix, next(self._request_ids))

    def access_log_failed(self, error: Exception) -> None:
        """A failing access-log callback is reported once, not once per request."""
        self._access_log_failures += 1
        if self._access_log_failures == 1:
            log.error("the gateway's access-log callback failed; requests go on, further failures are not "
                      "reported", exc_info=error)

    def span_failed(self, error: Exception) -> None:
        """A failing span callback is reported once, not once per request."""
        self._span_failures += 1
        if self._span_failures == 1:
            log.error("the gateway's span callback failed; requests go on, further failures are not reported",
                      exc_info=error)

    def absorb(self, keys: tuple[str, ...] | None, entries: list[tuple[Any, ...]], spans: list[dict[str, Any]],
               counts: list[tuple[Any, ...]]) -> None:
        """What a worker's requests produced: counted, logged and traced as if answered here."""
        for labels, status, buckets, count, seconds in counts:
            self.metrics.add(labels, status, buckets, count, seconds)
        access_log = self.access_log
        if access_log is not None and keys is not None:
            for values in entries:
                try:
                    access_log(dict(zip(keys, values, strict=True)))
                except Exception as e:
                    self.access_log_failed(e)
        record = self.span
        if record is not None:
            for span in spans:
                try:
                    record(span)
                except Exception as e:
                    self.span_failed(e)

    async def close(self) -> None:
        """Stop every listener (cutting open connections) and close the pooled upstream connections; workers first
        (their last requests are counted and logged here before this returns)."""
        if self.workers is not None:
            await self.workers.close()
        for key in list(self._listeners):
            await self.close_listener(key)
        for pool in self._pools.values():
            pool.live = False  # a connection still being opened is closed when it arrives
            pool.close_idle()


def _burst_share(burst: float, share: int) -> float:
    """A process's part of a burst: at least one token, unless the burst is none at all."""
    return burst if share == 1 or burst <= 0 else max(1.0, burst / share)
