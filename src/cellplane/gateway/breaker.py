"""The circuit breaker of one upstream: stop sending requests to a replica that keeps failing.

Closed, it costs one comparison per request. ``threshold`` consecutive failures (connect errors, connections
lost before a response, timeouts) open it for ``reset`` seconds; then it lets one trial request through per
period (half-open) until a success closes it again. A trial that never reports back does not wedge it: the
next period simply allows another.
"""

from __future__ import annotations

import time


class Circuit:
    __slots__ = ("failures", "open_until", "reset", "threshold")

    def __init__(self, threshold: int, reset: float) -> None:
        self.threshold = threshold
        self.reset = reset
        self.failures = 0
        self.open_until = 0.0

    def allows(self) -> bool:
        """Whether a request may go to the upstream now; when half-open, this request becomes the trial."""
        if self.failures < self.threshold:
            return True
        now = time.monotonic()
        if now < self.open_until:
            return False
        self.open_until = now + self.reset
        return True

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.open_until = time.monotonic() + self.reset

    def succeeded(self) -> None:
        self.failures = 0
