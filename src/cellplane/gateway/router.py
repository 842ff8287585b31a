"""The route table compiled for the request path: one dict lookup per request, no regexes.

A request target ``/{project}/{component}/{version}{rest}`` is split at its first three slashes; the prefix
(``/shop/api/v1``, as bytes) keys the candidate routes of the listener's environment, longest base path first.
Everything a request needs from its route (byte strings, labels, policy flags) is computed here once per
``Gateway.update`` rather than once per request.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from cellplane.contract.requestmetrics import CELL_CONSUMER
from cellplane.contract.urlscheme import route_prefix
from cellplane.gateway.metrics import Labels
from cellplane.gateway.routes import Backend, Grant, RouteTable, Upstream
from cellplane.gateway.upstream import UpstreamPool


class Route:
    """One backend as the request path uses it, plus its round-robin position."""

    __slots__ = ("_by_consumer", "backend", "base", "base_slash", "cell_labels", "deployment", "label", "labels",
                 "name", "organization", "pools", "prefix", "project", "public", "requests", "rr")

    def __init__(self, backend: Backend, pools: tuple[UpstreamPool, ...]) -> None:
        b = backend
        self.backend = b
        self.project = b.project
        self.prefix = route_prefix(b.project, b.component, b.version).encode()
        self.base = b.base_path.encode() if b.base_path != "/" else b""  # empty: matches every path
        self.base_slash = self.base + b"/"
        self.name = f"{b.project}/{b.component}/{b.endpoint}"
        self.label = f"{b.project}/{b.component}"
        self.labels: Labels = (b.environment, b.project, b.component, b.endpoint, "")  # metrics, without consumer
        self.cell_labels: Labels = (*self.labels[:4], CELL_CONSUMER)  # requests from inside the project's cell
        self._by_consumer: dict[str, Labels] = {}
        self.public = "Public" in b.visibility
        self.organization = self.public or "Organization" in b.visibility
        self.pools = pools
        self.rr = 0
        self.deployment = b.deployment
        self.requests = 0  # routed here since Gateway.demand last read it

    def labels_for(self, consumer: Grant) -> Labels:
        """The metrics labels of a request admitted on ``consumer``'s grant (built once per consumer)."""
        name = consumer.consumer_label
        labels = self._by_consumer.get(name)
        if labels is None:
            labels = self._by_consumer[name] = (*self.labels[:4], name)
        return labels

    def pick(self) -> UpstreamPool | None:
        """The next replica in round-robin order whose circuit lets a request through; None if there is none."""
        pools = self.pools
        n = len(pools)
        start = self.rr
        for i in range(n):
            pool = pools[(start + i) % n]
            if pool.circuit.allows():
                self.rr = (start + i + 1) % n
                return pool
        return None


class RouteIndex:
    """A ``RouteTable`` compiled into dicts: routes by environment and prefix, grants by key and digest."""

    def __init__(self, table: RouteTable, pool_of: Callable[[Upstream], UpstreamPool]) -> None:
        self.table = table
        grouped: dict[str, dict[bytes, list[Route]]] = {}
        by_deployment: dict[str, list[Route]] = {}
        for backend in table.backends:
            pools = tuple(pool_of(u) for u in backend.upstreams)
            route = Route(backend, pools)
            grouped.setdefault(backend.environment, {}).setdefault(route.prefix, []).append(route)
            if backend.deployment:
                by_deployment.setdefault(backend.deployment, []).append(route)
                for pool in pools:
                    pool.deployment = backend.deployment
        self.by_deployment: dict[str, tuple[Route, ...]] = {d: tuple(rs) for d, rs in by_deployment.items()}
        self.routes: dict[str, dict[bytes, tuple[Route, ...]]] = {
            env: {prefix: tuple(sorted(rs, key=lambda r: -len(r.base))) for prefix, rs in by_prefix.items()}
            for env, by_prefix in grouped.items()}
        self.upstreams: frozenset[Upstream] = frozenset(u for b in table.backends for u in b.upstreams)
        self.by_digest: dict[str, list[Grant]] = {}
        self.by_key: dict[str, list[Grant]] = {}
        for grant in table.grants:
            self.by_digest.setdefault(grant.secret_digest, []).append(grant)
            self.by_key.setdefault(grant.consumer_key, []).append(grant)

    def match(self, environment: str, target: bytes) -> tuple[Route, bytes] | None:
        """The route of ``target`` on a listener of ``environment`` and the target its upstream gets; None: 404.

        A base path matches when it is a prefix of the rest on a segment boundary ("/" matches everything);
        candidates come longest base path first.

        Raises ``UnsafePath`` for targets whose rest contains dot segments, which an upstream could resolve
        into another endpoint's base path than the one whose visibility was checked.
        """
        routes = self.routes.get(environment)
        if routes is None:
            return None
        q = target.find(b"?")
        path = target if q < 0 else target[:q]
        i = path.find(b"/", 1)
        j = path.find(b"/", i + 1) if i > 0 else -1
        if j < 0:
            return None
        k = path.find(b"/", j + 1)
        prefix = path if k < 0 else path[:k]
        candidates = routes.get(prefix)
        if candidates is None:
            return None
        rest = path[len(prefix):]
        if b"%" in rest or b"/." in rest:
            rest = _normalized(rest)
        for route in candidates:
            base = route.base
            if not base or rest == base or rest.startswith(route.base_slash):
                upstream_target = target[len(prefix):]
                if not upstream_target or upstream_target[0] == 0x3F:  # "?"
                    upstream_target = b"/" + upstream_target
                return route, upstream_target
        return None

    def grants_for_secret(self, digest: str) -> list[Grant]:
        return self.by_digest.get(digest, [])

    def grants_for_key(self, consumer_key: str) -> list[Grant]:
        return self.by_key.get(consumer_key, [])


class UnsafePath(ValueError):
    """A request path with "." or ".." segments (also percent-encoded); refused with 400."""


def _normalized(rest: bytes) -> bytes:
    """The percent-decoded rest, for base-path matching the way the upstream will read it."""
    decoded = unquote_to_bytes(rest)
    if any(segment in (b".", b"..") for segment in decoded.split(b"/")):
        raise UnsafePath("the path must not contain '.' or '..' segments")
    return decoded
