"""The activator: requests for a deployment with no ready replica are held, and the deployment woken once.

Knative's activator, inside the gateway. A backend the agent marks ``wake`` (``routes.Backend``) whose route has
no upstream does not answer 503: its requests wait here, one queue per deployment and gateway process, while the
data plane starts a replica (``Gateway(wake=...)``). The route table that brings the replica's upstream releases
them at once, in the order they came, round-robin as usual (``Gateway.update``).

Cost
- The request path of a backend with upstreams never comes here: ``Exchange._attempt`` reaches the activator only
  from the branch that answered 503 "no ready replica" before. What such a request pays is one attribute check per
  response head (the ``x-cellplane-cold-start`` header of released requests).
- A held request is one entry in its deployment's deque: the ``Exchange`` itself, its hold time in a slot. The
  hold timeout is ONE timer per deployment, not one per request: the timeout is the same for every request and
  entries are appended in the order they are held, so the deque is sorted by deadline (a timer wheel with one slot
  per deployment). The timer is armed for the first entry's deadline; when it fires it answers every due entry
  504 and re-arms for the next. ``loop.call_at`` per request would cost a libuv timer, its heap insert and its
  removal per held request (a thousand of them for a full queue); this costs one.
- A held client that goes away leaves a dead entry in place (O(1)); dead entries are skipped, and the deque is
  rebuilt once they outnumber the live ones.
- The body of a held request is not read beyond ``proxy.PENDING_LIMIT`` (the exchange pauses the client, as it
  does while connecting to a replica). A bodiless one leaves reading on, so a client that closes (or half-closes,
  as Go's net/http reads it) is seen at once and leaves the queue.

Wake-ups: one ``wake(deployment)`` call per episode. An episode begins with the first held request (in this
process, or a worker's "wake" message in the agent's gateway) and ends when a route table gives the deployment an
upstream, when ``wake_failed`` is called, or ``hold_timeout`` after it began without either (the next held request
then wakes again: a lost wake-up cannot hold a deployment's requests forever). The agent's gateway counts each
episode that ended with a replica routed as one cold start (its duration: first hold to routed); workers hold and
release their own requests but count no cold starts, so the sum over processes counts each wake-up once.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from cellplane.gateway.proxy import Exchange
    from cellplane.gateway.router import Route, RouteIndex
    from cellplane.gateway.server import Gateway

log = logging.getLogger("cellplane.gateway")

RETRY_AFTER = ((b"Retry-After", b"1"),)
COLD_START = b"x-cellplane-cold-start: %.3f\r\n"


class Queue:
    """The requests held for one deployment in this process, oldest first, and their one timeout timer."""

    __slots__ = ("activator", "deployment", "entries", "live", "loop", "timer")

    def __init__(self, activator: Activator, deployment: str, loop: asyncio.AbstractEventLoop) -> None:
        self.activator = activator
        self.deployment = deployment
        self.loop = loop
        self.entries: deque[Exchange] = deque()  # dead ones (held is None) included
        self.live = 0
        self.timer: asyncio.TimerHandle | None = None

    def hold(self, exchange: Exchange, now: float) -> None:
        exchange.held = self
        exchange.held_since = now
        self.entries.append(exchange)
        self.live += 1
        if self.timer is None:
            self.timer = self.loop.call_later(self.activator.timeout, self.expire)

    def leave(self, exchange: Exchange) -> None:
        """A held client went away: its entry dies in place."""
        exchange.held = None
        self.live -= 1
        if self.live == 0:
            self.close()
        elif len(self.entries) > 64 and len(self.entries) > 2 * self.live:
            self.entries = deque(e for e in self.entries if e.held is self)

    def expire(self) -> None:
        """Answer 504 to every request held for ``hold_timeout``; re-arm for the next one."""
        self.timer = None
        timeout = self.activator.timeout
        due = time.monotonic() - timeout + 0.001  # the loop's clock may fire a millisecond early
        entries = self.entries
        expired = []
        while entries:
            exchange = entries[0]
            if exchange.held is not self:
                entries.popleft()
            elif exchange.held_since <= due:
                entries.popleft()
                self.live -= 1
                expired.append(exchange)
            else:
                break
        if entries:
            self.timer = self.loop.call_later(max(0.0, entries[0].held_since + timeout - time.monotonic()),
                                              self.expire)
        else:
            self.close()
        for exchange in expired:
            exchange.held = None
            exchange.fail(504, "wake-timeout", f"no replica of {exchange.route.label} became ready within "
                          f"{timeout:g}s", "unavailable")

    def take(self) -> list[Exchange]:
        """Every live held request, oldest first; the queue is left empty."""
        taken = [e for e in self.entries if e.held is self]
        for exchange in taken:
            exchange.held = None
        self.close()
        return taken

    def close(self) -> None:
        self.entries.clear()
        self.live = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.activator.queues.get(self.deployment) is self:
            del self.activator.queues[self.deployment]


class Activator:
    """The held requests and wake-up episodes of one gateway process (``Gateway.activator``)."""

    def __init__(self, gateway: Gateway, wake: Callable[[str], None] | None) -> None:
        self.gateway = gateway
        self._wake = wake
        self.limit = gateway.settings.hold_queue
        self.timeout = gateway.settings.hold_timeout
        self.queues: dict[str, Queue] = {}
        self.episodes: dict[str, float] = {}  # deployment -> time.monotonic() its wake-up began
        self.counts_cold_starts = True  # the agent's gateway; a worker's leaves it to the agent
        self._cold: dict[str, tuple[int, float]] = {}  # since the last take_cold_starts
        self._wake_failures = 0

    # -- the request path's way in -----------------------------------------------------------------------------

    def hold(self, exchange: Exchange) -> None:
        """Hold a request whose route has no upstream (the backend says ``wake``), and wake its deployment."""
        route = exchange.route
        deployment = route.deployment
        queue = self.queues.get(deployment)
        if queue is None:
            queue = self.queues[deployment] = Queue(self, deployment, exchange.client.loop)
        elif queue.live >= self.limit:
            exchange.fail(503, "wake-queue-full", f"{self.limit} requests are already waiting for a replica of "
                          f"{route.label} to start; retry in a second", "unavailable", RETRY_AFTER)
            return
        now = time.monotonic()
        queue.hold(exchange, now)
        self.wake(deployment, now)

    def wake(self, deployment: str, now: float | None = None) -> None:
        """Begin a wake-up episode unless one is under way (or the deployment has an upstream by now)."""
        now = time.monotonic() if now is None else now
        began = self.episodes.get(deployment)
        if began is not None and now - began < self.timeout:
            return
        if _has_upstream(self.gateway.index, deployment):  # a worker's request that raced the routes
            return
        self.episodes[deployment] = now
        if self._wake is None:
            return
        try:
            self._wake(deployment)
        except Exception as e:
            self._wake_failures += 1
            if self._wake_failures == 1:
                log.error("the gateway's wake callback failed; held requests wait for their timeout, further "
                          "failures are not reported", exc_info=e)

    # -- what the agent says -----------------------------------------------------------------------------------

    def routed(self, index: RouteIndex) -> None:
        """A new route table: end the episodes it brought an upstream, release (or re-route) held requests."""
        if not self.episodes and not self.queues:
            return
        now = time.monotonic()
        for deployment, began in list(self.episodes.items()):
            routes = index.by_deployment.get(deployment)
            if routes is None:  # no longer routed: no cold start to count
                del self.episodes[deployment]
            elif any(r.pools for r in routes):
                del self.episodes[deployment]
                if self.counts_cold_starts:
                    count, seconds = self._cold.get(deployment, (0, 0.0))
                    self._cold[deployment] = (count + 1, seconds + now - began)
                    self.gateway.metrics.cold_start(routes[0].labels[:3], now - began)
        for deployment, queue in list(self.queues.items()):
            routes = index.by_deployment.get(deployment, ())
            if routes and not any(r.pools for r in routes) and all(r.backend.wake for r in routes):
                for exchange in queue.entries:  # still nothing to forward to: wait on, on the new routes
                    exchange.route = _same(exchange.route, routes) or exchange.route
                continue
            for exchange in queue.take():
                route = _same(exchange.route, routes)
                if route is None:
                    exchange.fail(503, "unavailable", f"{exchange.route.label} is no longer routed here",
                                  "unavailable")
                else:  # an upstream now, or no longer woken (then the usual 503)
                    exchange.go(route, COLD_START % (now - exchange.held_since))

    def failed(self, deployment: str, reason: str) -> None:
        """The wake-up failed: the held requests are answered at once, with the reason."""
        self.episodes.pop(deployment, None)
        queue = self.queues.get(deployment)
        if queue is None:
            return
        for exchange in queue.take():
            exchange.fail(503, "wake-failed", f"{exchange.route.label} could not be started: {reason}",
                          "unavailable")

    # -- what demand reads -------------------------------------------------------------------------------------

    def held(self) -> dict[str, int]:
        return {deployment: queue.live for deployment, queue in self.queues.items() if queue.live}

    def take_cold_starts(self) -> dict[str, tuple[int, float]]:
        """Cold starts (count, seconds) per deployment since the previous call."""
        cold, self._cold = self._cold, {}
        return cold


def _has_upstream(index: RouteIndex, deployment: str) -> bool:
    return any(r.pools for r in index.by_deployment.get(deployment, ()))


def _same(route: Route, routes: tuple[Route, ...]) -> Route | None:
    """The route of ``routes`` that serves what ``route`` served (same endpoint, version and base path)."""
    for candidate in routes:
        if candidate.name == route.name and candidate.prefix == route.prefix and candidate.base == route.base:
            return candidate
    return None
