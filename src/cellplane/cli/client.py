"""A small REST client of the control plane. The CLI never touches the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from cellplane import __version__


class CliError(Exception):
    """Printed as one line on stderr; the CLI exits non-zero."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class ApiError(CliError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        given = body.get("error")
        err: dict[str, Any] = given if isinstance(given, dict) else {}
        self.status = status
        self.error_code = err.get("code", "error")
        self.details = err.get("details") or []
        message = err.get("message") or f"HTTP {status}"
        if self.details:
            message += ": " + "; ".join(
                f"{d.get('field')}: {d.get('problem')}" if d.get("field") else str(d.get("problem"))
                for d in self.details)
        super().__init__(message)


def _raise_for(response: httpx.Response) -> None:
    """An ApiError for a streamed response that failed (its body is read first)."""
    if response.status_code < 400:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        body = {}
    raise ApiError(response.status_code, body if isinstance(body, dict) else {})


class Client:
    def __init__(self, server: str, token: str | None, timeout: float = 60.0) -> None:
        headers = {"User-Agent": f"cellplane-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.server = server
        self._http = httpx.Client(base_url=server + "/api/v1", headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise CliError(f"cannot reach the control plane at {self.server}: is it running (make run)? "
                           "Use --server or CELLPLANE_SERVER to point elsewhere") from None
        except httpx.TimeoutException:
            raise CliError(f"the control plane at {self.server} did not answer in time") from None
        except httpx.HTTPError as e:
            raise CliError(f"request to {self.server} failed: {e}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            if response.status_code == 401 and not self._http.headers.get("Authorization"):
                raise CliError("not logged in: run `cellplane login --server URL --token TOKEN` "
                               "(the admin token is in <data-dir>/admin.token)")
            raise ApiError(response.status_code, body if isinstance(body, dict) else {})
        return body

    def upload(self, path: str, data: Any, **params: Any) -> Any:
        """POST a .tar.gz body (a file object or an iterator of bytes)."""
        return self.request("POST", path, content=data, headers={"Content-Type": "application/gzip"},
                            params={k: v for k, v in params.items() if v is not None}, timeout=600)

    def stream_lines(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """An NDJSON stream, one decoded object per line, until the server ends it."""
        try:
            with self._http.stream("GET", path, params={k: v for k, v in params.items() if v is not None},
                                   timeout=httpx.Timeout(30, read=None)) as response:
                _raise_for(response)
                for line in response.iter_lines():
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except ValueError:
                            continue
        except httpx.ConnectError:
            raise CliError(f"cannot reach the control plane at {self.server}") from None
        except httpx.HTTPError as e:
            raise CliError(f"the stream from {self.server} broke: {e}") from None

    def download(self, path: str, dest: Any) -> dict[str, str]:
        """GET a binary body into the file object ``dest``; returns the response headers."""
        try:
            with self._http.stream("GET", path, timeout=httpx.Timeout(30, read=300)) as response:
                _raise_for(response)
                for chunk in response.iter_bytes(1 << 20):
                    dest.write(chunk)
                return dict(response.headers)
        except httpx.ConnectError:
            raise CliError(f"cannot reach the control plane at {self.server}") from None
        except httpx.HTTPError as e:
            raise CliError(f"the download from {self.server} failed: {e}") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, json: Any, **params: Any) -> Any:
        return self.request("POST", path, json=json, params={k: v for k, v in params.items() if v is not None})

    def put(self, path: str, json: Any, **params: Any) -> Any:
        return self.request("PUT", path, json=json, params={k: v for k, v in params.items() if v is not None})

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params={k: v for k, v in params.items() if v is not None})

    def list_all(self, path: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, following continue tokens."""
        token, seen = None, 0
        while True:
            page = self.get(path, limit=min(limit - seen, 500) if limit else 500, **{"continue": token})
            for item in page.get("items", []):
                yield item
                seen += 1
                if limit and seen >= limit:
                    return
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
