"""The gateway: listeners, the current route table, and the upstream pools they share.

The agent owns the event loop (uvloop) and drives the gateway through this class: it opens listeners,
swaps in a new route table whenever replicas or grants change, and drains replicas before stopping them.
The request path itself lives in ``client`` (client connections), ``listener`` (routing and admission),
``proxy`` (one proxied request) and ``upstream`` (replica connections).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cellplane.gateway.auth import TokenIssuer
from cellplane.gateway.listener import Listener
from cellplane.gateway.metrics import Metrics
from cellplane.gateway.router import RouteIndex
from cellplane.gateway.routes import ListenerSpec, RouteTable, Upstream
from cellplane.gateway.tracing import TokenBucket
from cellplane.gateway.upstream import UpstreamPool

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


class Gateway:
    """The agent's handle on the gateway; every method runs on (and only on) the agent's event loop."""

    def __init__(self, settings: GatewaySettings | None = None,
                 access_log: Callable[[dict[str, Any]], None] | None = None,
                 token_secret: bytes | None = None,
                 span: Callable[[dict[str, Any]], None] | None = None) -> None:
        """``access_log`` gets one dict per answered request, ``span`` one per sampled routed request (a Span of
        the observability contract); either may be None (off). Both are called on the request path: keep them
        cheap, and their exceptions are swallowed (reported once)."""
        self.settings = settings or GatewaySettings()
        self.access_log = access_log
        self.span = span
        self.metrics = Metrics()
        self.trace_bucket = TokenBucket(self.settings.trace_rate, self.settings.trace_burst)
        self.hop_bucket = TokenBucket(self.settings.hop_rate, self.settings.hop_burst)
        self.tokens = TokenIssuer(token_secret or secrets.token_bytes(32), self.settings.token_ttl)
        self._pools: dict[Upstream, UpstreamPool] = {}
        self.index = RouteIndex(RouteTable(), self._pool_of)
        self._listeners: dict[str, Listener] = {}
        self._request_ids = itertools.count(1)
        self._request_id_prefix = secrets.token_hex(6).encode()
        self._access_log_failures = 0
        self._span_failures = 0

    # -- listeners ---------------------------------------------------------------------------------------------

    async def ensure_listener(self, spec: ListenerSpec) -> int:
        """Open the listener unless one with the same key is open; its port either way."""
        existing = self._listeners.get(spec.key)
        if existing is not None:
            return existing.port
        listener = Listener(self, spec)
        port = await listener.open()
        raced = self._listeners.get(spec.key)
        if raced is not None:  # opened by a concurrent call meanwhile
            await listener.close()
            return raced.port
        self._listeners[spec.key] = listener
        return port

    async def close_listener(self, key: str) -> None:
        listener = self._listeners.pop(key, None)
        if listener is not None:
            await listener.close()

    def listeners(self) -> dict[str, int]:
        return {key: listener.port for key, listener in self._listeners.items()}

    # -- routes and upstreams ----------------------------------------------------------------------------------

    def update(self, table: RouteTable) -> None:
        """Swap in a new route table at once. Requests in flight finish where they are; idle connections to
        upstreams that left the table are closed (and any that finish later are not kept)."""
        index = RouteIndex(table, self._pool_of)
        for upstream, pool in list(self._pools.items()):
            pool.live = upstream in index.upstreams
            if not pool.live:
                pool.close_idle()
                if pool.inflight == 0:
                    del self._pools[upstream]  # a replica that reuses the port later starts afresh
        self.index = index
        self.metrics.routed({(b.environment, b.project, b.component, b.endpoint) for b in table.backends})

    def inflight(self, upstream: Upstream) -> int:
        """Requests currently proxied to ``upstream`` (an open WebSocket tunnel counts as one)."""
        pool = self._pools.get(upstream)
        return pool.inflight if pool is not None else 0

    async def drain(self, upstreams: Iterable[Upstream], timeout: float = 30.0) -> bool:
        """Wait until no request is in flight on ``upstreams`` (True) or ``timeout`` passed (False); then close
        their idle pooled connections. Rollouts call it after the upstreams left the route table."""
        pools = [pool for u in set(upstreams) if (pool := self._pools.get(u)) is not None]
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

    async def close(self) -> None:
        """Stop every listener (cutting open connections) and close the pooled upstream connections."""
        for key in list(self._listeners):
            await self.close_listener(key)
        for pool in self._pools.values():
            pool.live = False  # a connection still being opened is closed when it arrives
            pool.close_idle()
