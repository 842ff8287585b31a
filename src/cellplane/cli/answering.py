"""Whether a URL `up` prints answers yet: one real HTTP request to it, through the gateway.

A URL answers when a request to it gets a response from what it names: a replica's own answer (even its own 404),
never a refused connection, the gateway's own 404 (nothing routed there yet: a restarted agent before its routes are
in place) or a 502/503/504 (no ready replica yet, or one that cannot be reached). A gateway listener's own address
(``listener=True``) answers with any HTTP response: nothing is routed at its root. Each request costs one loopback
round trip with a 2 s timeout; ``wait`` polls every 0.2 s until all answer or its bound passes.
"""

from __future__ import annotations

import threading
import time

import httpx

NOT_YET = (502, 503, 504)


def why_not(url: str, listener: bool = False) -> str | None:
    """None when ``url`` answers, else why not (one short phrase)."""
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    if listener:
        return None
    if response.status_code in NOT_YET or (response.status_code == 404 and _gateways_own(response)):
        return f"{response.status_code} {_message(response) or response.reason_phrase}"
    return None


def wait(urls: list[str], stopping: threading.Event, timeout: float, listener: bool = False) -> dict[str, str]:
    """Poll until every URL answers, ``stopping`` is set or ``timeout`` seconds pass; returns the URLs that do not
    answer, each with why (empty when all do, or when stopped)."""
    deadline = time.monotonic() + timeout
    left = {url: "" for url in dict.fromkeys(urls)}
    while left and not stopping.is_set():
        left = {url: why for url in left if (why := why_not(url, listener)) is not None}
        if not left or time.monotonic() >= deadline:
            break
        stopping.wait(0.2)
    return {} if stopping.is_set() else left


def _error(response: httpx.Response) -> dict[str, object] | None:
    """The body of an error the gateway answers itself: {"error": {"code": ..., "message": ...}}."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) and len(body) == 1 else None
    return error if isinstance(error, dict) and {"code", "message"} <= set(error) else None


def _gateways_own(response: httpx.Response) -> bool:
    error = _error(response)
    return error is not None and error.get("code") == "not-found"


def _message(response: httpx.Response) -> str:
    error = _error(response)
    return str(error["message"]) if error is not None else ""
