"""Followed streams (``?follow=true``): one JSON document per line, and what such a stream does while
nothing new has come."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import Request

HEARTBEAT = 15.0  # seconds of silence before a followed stream says it is alive
POLL = 0.25  # seconds between two looks for new lines
HEARTBEAT_LINE = b'{"event": "heartbeat"}\n'


def line(document: Any) -> bytes:
    return (json.dumps(document) + "\n").encode()


class Quiet:
    """The pauses of a followed stream: a heartbeat line after HEARTBEAT seconds of silence, and the end of
    the stream once the client has gone."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.beat = time.monotonic()

    def spoke(self) -> None:
        """Something was sent: the silence starts again."""
        self.beat = time.monotonic()

    async def wait(self) -> bytes | None:
        """Wait a moment. Returns the line to send (a heartbeat when one is due, else nothing), or None when
        the client has gone and the stream should end."""
        due = time.monotonic() - self.beat > HEARTBEAT
        if await self.request.is_disconnected():
            return None
        await asyncio.sleep(POLL)
        if due:
            self.spoke()
            return HEARTBEAT_LINE
        return b""
