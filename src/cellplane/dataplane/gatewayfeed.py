"""What the platform's gateway hands the agent's host, shared by the local and the Kubernetes runtime.

``GatewayFeed`` is a mixin for a runtime that runs a ``cellplane.gateway.server.Gateway``: it writes the gateway's
access log (``access.log`` in the data directory, rotated at ``ACCESS_LOG_BYTES``), ships routed access lines at
``access_log_rate`` per second at most, gathers the gateway's spans, and closes the gateway's metrics windows into
the contract's http points. The two items that come per request are not built on the request path: they are
gathered as they come (a list append) and built a batch at a time, ``BUILD_DELAY`` seconds after the first of a
batch, ``BUILD_STEP`` at each turn of the event loop (6 to 10 µs each). An item the contract refuses (the control
plane would refuse its whole batch) is dropped, counted and said once.

The runtime sets ``settings``, ``host`` and ``gateway``, calls ``feed_init`` in its constructor, ``feed_open``
when it starts (before the gateway answers) and ``feed_close`` after the gateway closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, BinaryIO

import orjson
from pydantic import ValidationError

from cellplane.contract import SpanSent
from cellplane.dataplane.runtimes.base import RuntimeHost
from cellplane.dataplane.settings import AgentSettings
from cellplane.dataplane.telemetry import TokenBucket, access_line, http_points, iso
from cellplane.gateway.server import Gateway

log = logging.getLogger("cellplane.dataplane")
ACCESS_LOG_BYTES = 64 << 20
BUILD_DELAY = 0.25  # seconds the gateway's spans and access entries wait to be built into the contract's models
BUILD_STEP = 100  # of them built at a time (about 1 ms), requests answered in between


class GatewayFeed:
    """The gateway's access lines, spans and http metrics, handed to the host (see the module's docstring)."""

    settings: AgentSettings
    host: RuntimeHost
    gateway: Gateway

    def feed_init(self, settings: AgentSettings) -> None:
        self._access: BinaryIO | None = None
        self.access_unshipped = 0  # routed access lines not sent (over access_log_rate)
        self._access_bucket = TokenBucket(settings.access_log_rate, settings.access_log_rate * 10, time.monotonic())
        self._window = (time.time(), time.monotonic())  # the current metrics window's start
        # the gateway's spans and the access entries to ship, not built into models yet (``_build_gathered``)
        self._gathered_spans: list[dict[str, Any]] = []
        self._gathered_access: list[dict[str, Any]] = []
        self._build_timer: asyncio.Handle | None = None
        self.refused_items = 0  # items the contract refused (dropped; the first one is said in the log)

    def feed_open(self) -> None:
        """At start, on the event loop: the access log opened."""
        self._loop = asyncio.get_running_loop()
        self._access = (self.settings.data_dir / "access.log").open("ab", buffering=1 << 16)
        self._access_bytes = self._access.tell()

    def feed_close(self) -> None:
        """After the gateway closed: the last, partial window and what is gathered handed over, the log closed."""
        with contextlib.suppress(Exception):
            self._http_window()  # the requests of the last, partial window
        with contextlib.suppress(Exception):
            self._build_gathered(None)  # and their spans and access lines
        if self._access is not None:
            self._access.close()
            self._access = None

    def _refused(self, what: str, error: ValidationError) -> None:
        """An item the contract refused as it was built for the host: dropped (the control plane would refuse the
        batch it came in), counted, and the first one said in the log; the runtime's work goes on. (A ``try`` at
        each place, not a context manager: that would cost a log line 2 µs more.)"""
        self.refused_items += 1
        if self.refused_items == 1:
            log.warning("a %s the control plane would refuse is not sent (%s); further ones are only counted",
                        what, error)

    def _access_line(self, entry: dict[str, Any]) -> None:
        """One JSON line per request; the file is rotated at ACCESS_LOG_BYTES (one old file is kept). Routed requests
        go to the control plane too, up to access_log_rate lines per second (gathered here, built later)."""
        if entry["component"] is not None:
            if self._access_bucket.take(time.monotonic()):
                self._gathered_access.append(entry)
                if self._build_timer is None:
                    self._build_timer = self._loop.call_later(BUILD_DELAY, self._build_gathered)
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

    def _gathered_span(self, span: dict[str, Any]) -> None:
        """The gateway's span of a sampled request (a ``SpanSent``'s keys), built later."""
        self._gathered_spans.append(span)
        if self._build_timer is None:
            self._build_timer = self._loop.call_later(BUILD_DELAY, self._build_gathered)

    def _build_gathered(self, step: int | None = BUILD_STEP) -> None:
        """The batching step of the per-request items: the gathered access entries and spans, built into the
        contract's models (off the request path) and handed to the host, ``step`` of each at a time (the rest at
        the loop's next turn; None: all of them now)."""
        if self._build_timer is not None:
            self._build_timer.cancel()
            self._build_timer = None
        entries, spans = self._gathered_access[:step], self._gathered_spans[:step]
        del self._gathered_access[:step], self._gathered_spans[:step]
        for entry in entries:
            try:
                self.host.access_line(access_line(entry))
            except ValidationError as e:
                self._refused("access line", e)
        for span in spans:
            try:
                self.host.span(SpanSent.model_validate(span))
            except ValidationError as e:
                self._refused("span", e)
        if self._gathered_access or self._gathered_spans:
            self._build_timer = self._loop.call_soon(self._build_gathered)

    def _http_window(self) -> tuple[str, float]:
        """Close the current metrics window: its http points go to the host; returns its (start, length)."""
        started_wall, started = self._window
        now = time.monotonic()
        self._window = (time.time(), now)
        at, seconds = iso(started_wall), now - started
        for point in http_points(self.gateway.metrics.delta(), at, seconds):
            self.host.metric(point)
        return at, seconds
