"""The agent's only way out: HTTPS (or HTTP) calls to the control plane. Never a port the control plane calls.

Calls raise ``Unreachable`` when the control plane cannot be reached or answers 5xx, so that the
agent's loops can tell "try again later" apart from a refusal (``ApiRefused``: 4xx, with its message). A 401 or
403 is ``CredentialRefused``: the token was revoked, expired or lacks the permission, which an operator fixes by
putting a valid token into the token file; so it is retried like ``Unreachable``, and the token file (when there is
one) is read again on each refusal, at the cost of one ``stat`` while it is unchanged. The first refusal is logged
once, and so is the first acceptance after it.

Every report is the contract's model (``cellplane.contract``): the registration, the status report, and the items of
the batches (``LogLineSent``, ``TaskRunSent``, ``AccessLineSent``, ``MetricPointSent``, ``SpanSent``, as the outboxes
queue and spool them), turned into JSON here, once (``wire``): the JSON the agent sent when they were dicts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from cellplane import __version__
from cellplane.contract import (
    AccessLineSent,
    AgentRegistration,
    LogLineSent,
    MetricPointSent,
    SpanSent,
    StatusReport,
    TaskRunSent,
)

log = logging.getLogger("cellplane.dataplane")


def wire(report: BaseModel) -> dict[str, Any]:
    """A report model's JSON document: the keys it was given, nothing else (a null given is sent as null)."""
    return report.model_dump(mode="json", exclude_unset=True)


class Unreachable(Exception):
    """The control plane did not answer (or answered 5xx); the call may be retried later."""


class ApiRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CredentialRefused(ApiRefused):
    """401 or 403: the control plane does not accept this data plane's token (yet). Retried later, like
    ``Unreachable``: reports wait on disk meanwhile."""


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
        err = body.get("error") or {}
        details = "; ".join(f"{d.get('field')}: {d.get('problem')}" for d in err.get("details") or [])
        return (err.get("message") or f"HTTP {response.status_code}") + (f" ({details})" if details else "")
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"


class ControlPlane:
    def __init__(self, url: str, token: str, organization: str, name: str, token_file: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.base = f"/api/v1/organizations/{organization}/dataplanes/{name}"
        self.token_file = token_file
        self._token_seen = self._stat(token_file)
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": f"cellplane-agent/{__version__}"}
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers,
                                       timeout=httpx.Timeout(15, read=75))
        self.refused = False  # the last answer was a refusal of the token (said once in the log)

    @staticmethod
    def _stat(path: Path | None) -> tuple[int, int, int] | None:
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None

    def reload_token(self) -> bool:
        """Read the token file again if it changed since it was last read; whether the token is a new one."""
        seen = self._stat(self.token_file)
        if self.token_file is None or seen is None or seen == self._token_seen:
            return False
        self._token_seen = seen
        try:
            token = self.token_file.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return False
        header = f"Bearer {token}"
        if not token or header == self._headers["Authorization"]:
            return False
        self._headers["Authorization"] = header
        self._http.headers["Authorization"] = header
        log.info("read a new token from %s", self.token_file)
        return True

    def _accepted(self) -> None:
        if self.refused:
            self.refused = False
            log.info("the control plane accepts this data plane's token again; sending what was kept")

    def _refusal(self, status: int, message: str) -> ApiRefused:
        if status not in (401, 403):
            return ApiRefused(status, message)
        if not self.refused:
            self.refused = True
            where = f"put a valid token into {self.token_file} (read again on every refusal)" if self.token_file \
                else "restart the agent with a valid token (--token-file lets it be replaced while running)"
            log.warning("the control plane refuses this data plane's token (%s): reports are kept on disk and "
                        "retried; %s", message, where)
        return CredentialRefused(status, message)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.HTTPError as e:
                raise Unreachable(f"{self.url}: {type(e).__name__}: {e}") from None
            if response.status_code in (401, 403) and attempt == 1 and self.reload_token():
                continue  # the same call, once, with the token just read
            break
        if response.status_code >= 500:
            raise Unreachable(f"{self.url}: {_message(response)}")
        if response.status_code >= 400:
            raise self._refusal(response.status_code, _message(response))
        self._accepted()
        return response.json()

    async def register(self, registration: AgentRegistration) -> dict[str, Any]:
        return await self._call("PUT", self.base + "/agent", json=wire(registration))

    async def desired(self, since: str | None, wait: int) -> dict[str, Any]:
        params: dict[str, Any] = {"wait": wait}
        if since:
            params["since"] = since
        return await self._call("GET", self.base + "/desired-state", params=params)

    async def status(self, report: StatusReport) -> None:
        await self._call("PUT", self.base + "/status", json=wire(report))

    async def logs(self, lines: Sequence[LogLineSent]) -> None:
        await self._call("POST", self.base + "/logs", json={"lines": [wire(line) for line in lines]})

    async def task_runs(self, runs: Sequence[TaskRunSent]) -> None:
        await self._call("POST", self.base + "/task-runs", json={"runs": [wire(run) for run in runs]})

    async def access_logs(self, lines: Sequence[AccessLineSent]) -> None:
        await self._call("POST", self.base + "/access-logs", json={"lines": [wire(line) for line in lines]})

    async def metrics(self, points: Sequence[MetricPointSent]) -> None:
        await self._call("POST", self.base + "/metrics", json={"points": [wire(point) for point in points]})

    async def spans(self, spans: Sequence[SpanSent]) -> None:
        await self._call("POST", self.base + "/spans", json={"spans": [wire(span) for span in spans]})

    def artifact(self, project: str, digest: str, dest: Path) -> None:
        """Fetch an artifact of a deployment of this data plane (blocking; the caller runs it in a thread)."""
        self.download(f"{self.base.removeprefix('/api/v1')}/artifacts/{project}/{digest}", dest)

    def download(self, api_path: str, dest: Path) -> None:
        """Fetch a binary body into ``dest`` (blocking; the caller runs it in a thread)."""
        for attempt in (1, 2):
            try:
                with httpx.stream("GET", self.url + "/api/v1" + api_path, headers=dict(self._headers),
                                  timeout=httpx.Timeout(30, read=300)) as response:
                    if response.status_code in (401, 403) and attempt == 1 and self.reload_token():
                        continue
                    if response.status_code >= 400:
                        response.read()
                        if response.status_code >= 500:
                            raise Unreachable(_message(response))
                        raise self._refusal(response.status_code, _message(response))
                    with dest.open("wb") as f:
                        for chunk in response.iter_bytes(1 << 20):
                            f.write(chunk)
                    return
            except httpx.HTTPError as e:
                raise Unreachable(f"{self.url}: {type(e).__name__}: {e}") from None

    async def close(self) -> None:
        await self._http.aclose()
