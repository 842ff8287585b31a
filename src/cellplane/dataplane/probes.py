"""Health probes of a replica: an HTTP GET or a TCP connect, with a deadline.

Probes use raw asyncio streams rather than an HTTP client: they run every second for every replica, must
never follow redirects or keep connections around, and only need the status line.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

USER_AGENT = "cellplane-probe"


@dataclass(frozen=True)
class ProbeSpec:
    """One probe. ``path`` set: HTTP GET, a 2xx or 3xx status passes; ``path`` None: a TCP connect passes."""

    path: str | None = None
    port: int | None = None  # None: the replica's port
    initial_delay: float = 0.0
    period: float = 1.0
    timeout: float = 1.0
    failure_threshold: int = 3


async def check(spec: ProbeSpec, host: str, port: int) -> tuple[bool, str]:
    """Run the probe once against ``host:port``; returns (passed, a reason fit for a status message)."""
    try:
        return await asyncio.wait_for(_probe(spec, host, port), spec.timeout)
    except TimeoutError:
        return False, f"no answer on port {port} within {spec.timeout:g}s"
    except ConnectionRefusedError:
        return False, f"connection refused on port {port}"
    except asyncio.IncompleteReadError:
        return False, f"port {port} closed the connection without answering"
    except (OSError, asyncio.LimitOverrunError, ValueError) as e:
        return False, f"port {port}: {e or type(e).__name__}"


async def _probe(spec: ProbeSpec, host: str, port: int) -> tuple[bool, str]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if spec.path is None:
            return True, f"listening on {port}"
        path = spec.path if spec.path.startswith("/") else "/" + spec.path
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n".encode("latin-1"))
        await writer.drain()
        status_line = (await reader.readuntil(b"\n")).decode("latin-1").strip()
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return False, f"GET {path} on port {port}: not an HTTP answer ({status_line[:80]!r})"
        status = int(parts[1])
        if 200 <= status < 400:
            return True, f"listening on {port} (GET {path}: {status})"
        return False, f"GET {path} on port {port} answered {status}"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
