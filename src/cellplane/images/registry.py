"""A client of the OCI distribution API over httpx: what pushing an image needs, and no Docker daemon.

- ``blob_exists`` is a ``HEAD /v2/<name>/blobs/<digest>``; ``mount`` asks the registry to link a blob another
  repository already holds (``POST .../blobs/uploads/?mount=<digest>&from=<repo>``: 201 when it did, no bytes
  sent); ``upload`` sends a blob in one ``PUT`` when it is small (``CHUNK`` or less) and otherwise in ``PATCH``
  chunks with ``Content-Range`` followed by the closing ``PUT ?digest=``. The registry checks the digest.
- ``manifest`` reads one (by tag or digest, any media type ``manifest.ACCEPT`` lists) and ``put_manifest``
  writes one, returning the digest of the bytes sent (which is what the registry names it by).
- Authentication (``RegistryAuth``, an ``httpx.Auth``): a request answered 401 is retried once with what the
  ``WWW-Authenticate`` challenge asks for: ``Basic`` sends the credentials; ``Bearer realm=..,service=..,
  scope=..`` fetches a token from the realm (with the credentials as basic auth when there are any, anonymous
  otherwise), keeps it per repository and sends it from then on, so a push costs one token request per
  repository, not one per call.

Errors are ``RegistryError`` with one line: the method, the path, the status and the registry's own error code
and message when it sent one (``{"errors": [{"code", "message"}]}``); never the credentials.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from cellplane.images import manifest as manifests

CHUNK = 8 << 20  # blobs up to this size go in one PUT; larger ones in PATCH chunks of this size
_REPOSITORY = re.compile(r"/v2/(.+?)/(?:blobs|manifests|tags)/")
_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def __repr__(self) -> str:  # never the password
        return f"Credentials({self.username!r}, ****)"


def challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y"`` -> ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAM.findall(rest))


class RegistryAuth(httpx.Auth):
    """Answers a registry's 401 challenge (basic or Bearer token) and reuses what it got."""

    requires_response_body = True  # the token endpoint's answer is read

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self.tokens: dict[str, str] = {}  # repository ("" for others) -> bearer token
        self.basic = False  # the registry asked for basic auth once: send it from then on
        self.token_requests = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        repository = _repository_of(request.url.path)
        self._apply(request, repository)
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if self.credentials is None or self.basic:
                return
            self.basic = True
        elif scheme == "bearer" and params.get("realm"):
            # A challenge may name several scopes, space-separated (a mount needs pull on the source too):
            # the token endpoint takes each as a `scope` parameter of its own.
            query: list[tuple[str, str | int | float | bool | None]] = (
                [("service", params["service"])] if "service" in params else [])
            query += [("scope", scope) for scope in params.get("scope", "").split()]
            token_request = httpx.Request("GET", params["realm"], params=query)
            if self.credentials is not None:
                token_request.headers["Authorization"] = self.credentials.basic()
            token_response = yield token_request
            self.token_requests += 1
            if token_response.status_code != 200:
                return
            body = token_response.json()
            token = body.get("token") or body.get("access_token")
            if not token:
                return
            self.tokens[repository] = str(token)
        else:
            return
        self._apply(request, repository)
        yield request

    def _apply(self, request: httpx.Request, repository: str) -> None:
        if repository in self.tokens:
            request.headers["Authorization"] = "Bearer " + self.tokens[repository]
        elif self.basic and self.credentials is not None:
            request.headers["Authorization"] = self.credentials.basic()


def _repository_of(path: str) -> str:
    m = _REPOSITORY.match(path)
    return m.group(1) if m else ""


class Registry:
    """One registry at ``url`` (``https://registry.example.com``; ``http://`` for a registry on loopback)."""

    def __init__(self, url: str, credentials: Credentials | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.auth = RegistryAuth(credentials)
        self.client = httpx.Client(base_url=self.url, auth=self.auth, timeout=timeout, transport=transport,
                                   follow_redirects=True)

    @property
    def host(self) -> str:
        """The registry as image references name it: ``host[:port]``."""
        return httpx.URL(self.url).netloc.decode()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- blobs ---------------------------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str) -> bool:
        r = self.client.head(f"/v2/{repository}/blobs/{digest}")
        if r.status_code == 404:
            return False
        self._check(r, "HEAD")
        return True

    def blob(self, repository: str, digest: str) -> bytes:
        r = self.client.get(f"/v2/{repository}/blobs/{digest}")
        self._check(r, "GET")
        if "sha256:" + hashlib.sha256(r.content).hexdigest() != digest:
            raise RegistryError(f"GET /v2/{repository}/blobs/{digest}: the bytes received have another digest")
        return r.content

    def mount(self, repository: str, digest: str, source: str) -> bool:
        """Link ``digest`` from repository ``source`` into ``repository``; False when the registry would not."""
        r = self.client.post(f"/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source})
        if r.status_code == 201:
            return True
        self._check(r, "POST")
        if r.status_code == 202 and r.headers.get("location"):  # an upload session was opened instead
            self.client.delete(self._location(r))
        return False

    def upload(self, repository: str, digest: str, data: bytes | Path) -> None:
        """Upload one blob (bytes, or a file read ``CHUNK`` at a time) and check the registry took it."""
        r = self.client.post(f"/v2/{repository}/blobs/uploads/")
        self._check(r, "POST")
        location = self._location(r)
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        if size <= CHUNK:
            body = data if isinstance(data, bytes) else data.read_bytes()
            r = self.client.put(_with_digest(location, digest), content=body,
                                headers={"Content-Type": "application/octet-stream"})
            self._check(r, "PUT")
            return
        offset = 0
        for chunk in _chunks(data):
            r = self.client.patch(location, content=chunk, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}", "Content-Length": str(len(chunk))})
            self._check(r, "PATCH")
            location = self._location(r)
            offset += len(chunk)
        r = self.client.put(_with_digest(location, digest), content=b"")
        self._check(r, "PUT")

    # -- manifests -----------------------------------------------------------------------------------------

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest, by tag or digest."""
        r = self.client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": manifests.ACCEPT})
        self._check(r, "GET")
        digest = "sha256:" + hashlib.sha256(r.content).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"GET /v2/{repository}/manifests/{reference}: the bytes received have another digest")
        media_type = r.headers.get("content-type", "").split(";")[0].strip() or str(
            manifests.parse(r.content).get("mediaType", ""))
        return r.content, media_type, digest

    def manifest_exists(self, repository: str, reference: str) -> bool:
        r = self.client.head(f"/v2/{repository}/manifests/{reference}", headers={"Accept": manifests.ACCEPT})
        if r.status_code == 404:
            return False
        self._check(r, "HEAD")
        return True

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        r = self.client.put(f"/v2/{repository}/manifests/{reference}", content=body,
                            headers={"Content-Type": media_type})
        self._check(r, "PUT")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (``GET /v2/<name>/tags/list``, following ``Link`` pages); [] when the
        repository does not exist."""
        found: list[str] = []
        url: str | None = f"/v2/{repository}/tags/list?n=1000"
        while url:
            r = self.client.get(url)
            if r.status_code == 404:
                return found
            self._check(r, "GET")
            found += [str(t) for t in (r.json().get("tags") or [])]
            url = r.links.get("next", {}).get("url")
        return found

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest by digest (and so every tag naming it). False when the registry does not allow
        deletes (``405``: docker-registry without ``storage.delete.enabled``); a manifest already gone is done."""
        r = self.client.delete(f"/v2/{repository}/manifests/{digest}")
        if r.status_code == 405:
            return False
        if r.status_code != 404:
            self._check(r, "DELETE")
        return True

    # -- helpers -------------------------------------------------------------------------------------------

    def _location(self, r: httpx.Response) -> str:
        location = r.headers.get("location")
        if not location:
            raise RegistryError(f"{r.request.method} {r.request.url.path}: the registry answered "
                                f"{r.status_code} without a Location")
        return urljoin(str(r.request.url), location)

    def _check(self, r: httpx.Response, method: str) -> None:
        if r.status_code < 400:
            return
        detail = ""
        try:
            errors: list[dict[str, Any]] = r.json().get("errors") or []
            if errors:
                detail = f": {errors[0].get('code', '')} {errors[0].get('message', '')}".rstrip()
        except ValueError:
            pass
        if r.status_code == 401:
            detail += (" (the registry refused the credentials: check registry.credentials)"
                       if self.auth.credentials is not None else
                       " (the registry wants credentials: set registry.credentials)")
        raise RegistryError(f"{method} {r.request.url.path} answered {r.status_code}{detail}", r.status_code)


def _with_digest(location: str, digest: str) -> httpx.URL:
    """The upload URL with ``digest=`` added to the query the registry put there (its upload state)."""
    return httpx.URL(location).copy_merge_params({"digest": digest})


def _chunks(data: bytes | Path) -> Iterator[bytes]:
    if isinstance(data, bytes):
        for i in range(0, len(data), CHUNK):
            yield data[i:i + CHUNK]
        return
    with data.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk
