"""The agent's only way out: HTTPS (or HTTP) calls to the control plane. Never a port the control plane calls.

Calls raise ``Unreachable`` when the control plane cannot be reached or answers 5xx, so that the
agent's loops can tell "try again later" apart from a refusal (``ApiRefused``: 4xx, with its message).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from cellplane import __version__


class Unreachable(Exception):
    """The control plane did not answer (or answered 5xx); the call may be retried later."""


class ApiRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
        err = body.get("error") or {}
        details = "; ".join(f"{d.get('field')}: {d.get('problem')}" for d in err.get("details") or [])
        return (err.get("message") or f"HTTP {response.status_code}") + (f" ({details})" if details else "")
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"


class ControlPlane:
    def __init__(self, url: str, token: str, organization: str, name: str) -> None:
        self.url = url.rstrip("/")
        self.base = f"/api/v1/organizations/{organization}/dataplanes/{name}"
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": f"cellplane-agent/{__version__}"}
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers,
                                       timeout=httpx.Timeout(15, read=75))

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise Unreachable(f"{self.url}: {type(e).__name__}: {e}") from None
        if response.status_code >= 500:
            raise Unreachable(f"{self.url}: {_message(response)}")
        if response.status_code >= 400:
            raise ApiRefused(response.status_code, _message(response))
        return response.json()

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PUT", self.base + "/agent", json=body)

    async def desired(self, since: str | None, wait: int) -> dict[str, Any]:
        params: dict[str, Any] = {"wait": wait}
        if since:
            params["since"] = since
        return await self._call("GET", self.base + "/desired-state", params=params)

    async def status(self, body: dict[str, Any]) -> None:
        await self._call("PUT", self.base + "/status", json=body)

    async def logs(self, lines: list[dict[str, Any]]) -> None:
        await self._call("POST", self.base + "/logs", json={"lines": lines})

    async def task_runs(self, runs: list[dict[str, Any]]) -> None:
        await self._call("POST", self.base + "/task-runs", json={"runs": runs})

    async def access_logs(self, lines: list[dict[str, Any]]) -> None:
        await self._call("POST", self.base + "/access-logs", json={"lines": lines})

    async def metrics(self, points: list[dict[str, Any]]) -> None:
        await self._call("POST", self.base + "/metrics", json={"points": points})

    async def spans(self, spans: list[dict[str, Any]]) -> None:
        await self._call("POST", self.base + "/spans", json={"spans": spans})

    def download(self, api_path: str, dest: Path) -> None:
        """Fetch an artifact (blocking; the caller runs it in a thread)."""
        try:
            with httpx.stream("GET", self.url + "/api/v1" + api_path, headers=self._headers,
                              timeout=httpx.Timeout(30, read=300)) as response:
                if response.status_code >= 400:
                    response.read()
                    error = Unreachable if response.status_code >= 500 else ApiRefused
                    if error is ApiRefused:
                        raise ApiRefused(response.status_code, _message(response))
                    raise Unreachable(_message(response))
                with dest.open("wb") as f:
                    for chunk in response.iter_bytes(1 << 20):
                        f.write(chunk)
        except httpx.HTTPError as e:
            raise Unreachable(f"{self.url}: {type(e).__name__}: {e}") from None

    async def close(self) -> None:
        await self._http.aclose()
