"""W3C trace context (``traceparent``) for the request path, and the token bucket that bounds sampling.

Parsing is a ``split``, a ``translate`` and a few comparisons (no regex). The listener makes the ids itself, inline:
``random.getrandbits`` as lowercase hex (not secrets: a trace id only has to be unique, and one is made for
nearly every request).
"""

from __future__ import annotations

import time

_HEX_DASH = b"0123456789abcdef-"
_ODD = b"13579bdf"  # the last hex digit of the flags when bit 0 (sampled) is set
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
TRACEPARENT_LENGTH = 55  # "00-" 32 hex "-" 16 hex "-" 2 hex


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, bool] | None:
    """(trace id, parent span id, sampled) of a version-00 ``traceparent`` value; None when it is not valid
    (other versions, upper-case or non-hex digits, all-zero ids, wrong length)."""
    if len(value) != TRACEPARENT_LENGTH:
        value = value.strip()
        if len(value) != TRACEPARENT_LENGTH:
            return None
    parts = value.split(b"-")
    if len(parts) != 4 or value.translate(None, _HEX_DASH):
        return None
    version, trace_id, parent_id, flags = parts  # with 55 bytes in all, the parent id has 16
    if version != b"00" or len(trace_id) != 32 or len(flags) != 2 or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, flags[1] in _ODD


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` spends one when there is one.

    The caller passes the current ``time.perf_counter()`` (the gateway has it anyway: the request's start), so a
    check costs no clock call. Times that go backwards (requests taken out of order) do not refill it.
    """

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate = max(0.0, float(rate))
        self.burst = max(0.0, float(burst))
        self.tokens = self.burst
        self.last = time.perf_counter() if now is None else now

    def take(self, now: float) -> bool:
        tokens = self.tokens
        if now > self.last:
            tokens += (now - self.last) * self.rate
            if tokens > self.burst:
                tokens = self.burst
            self.last = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False
