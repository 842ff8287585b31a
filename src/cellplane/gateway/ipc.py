"""Messages between the agent's gateway and its worker processes: length-prefixed pickles over socket pairs.

Two socket pairs per worker. "Down" (agent to worker) carries the settings, route tables, listeners (their
listening socket as SCM_RIGHTS ancillary data, with the message's first bytes), drains, failed wake-ups and the
stop; the agent writes it with blocking sends. "Up" (worker to agent) carries what the worker's requests produced
(access-log entries, spans, metric counts, its demand), its wake-ups and the answers to drains; the agent reads
it with asyncio streams.

Pickle is safe here: both ends are the same program, and the socket pairs are private to the two processes.
"""

from __future__ import annotations

import pickle
import struct
from collections import deque
from typing import Any

HEADER = struct.Struct("!I")
MAX_FDS = 16  # per read: more than one listening socket can arrive in one read


def frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def load(data: bytes | bytearray) -> tuple[Any, ...]:
    """The message of one frame's body."""
    return pickle.loads(data)  # noqa: S301 - see the module's docstring


class Decoder:
    """Frames (and the file descriptors that came with them, in order) out of a byte stream read in pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.fds: deque[int] = deque()

    def feed(self, data: bytes, fds: list[int] | None = None) -> list[tuple[Any, ...]]:
        self._buffer += data
        if fds:
            self.fds.extend(fds)
        out = []
        buffer = self._buffer
        while len(buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer)
            end = HEADER.size + size
            if len(buffer) < end:
                break
            out.append(load(buffer[HEADER.size:end]))
            del buffer[:end]
        return out
