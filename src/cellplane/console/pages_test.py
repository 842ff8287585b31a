"""The component's Test tab: each deployed endpoint's OpenAPI contract, and a try-it through a same-origin proxy.

The page (``.../test?env=E``) reads the deployment in E (its endpoints and URLs, and its artifact's digest) and
the component's spec (each endpoint's ``contract`` path); the contract is read from the artifact
(``GET .../artifacts/{digest}`` through the in-process API, so ``artifacts:get`` applies) and cached per digest and
path (an artifact never changes). Each operation has a form that posts to ``.../test/{env}/try``.

The proxy is the one place the console makes a request of its own, so it only ever calls THIS component's
deployed endpoint: the form names an endpoint and a path, never a URL; the endpoint's URL comes from the
deployment the caller may read (the gateway's external listener for a Public endpoint, else the internal or the
cell's); the path must be an absolute path below it (no scheme, host, ``//``, ``..``, backslash or control
character), and the joined URL is checked to keep the endpoint's scheme, host, port and base path. It forwards the
method, query and body with httpx (10 s timeout, no redirects followed, at most ``MAX_BODY`` bytes of the answer
kept) and shows the status, headers and body as text, with the equivalent curl command. An endpoint that needs
credentials (an Organization or Project one, through the internal listener) gets the caller's own, typed in the
form (an API key, an Authorization header): forwarded, never shown back. Refusals are 422 with one
line saying why, and nothing is sent.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import shlex
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from cellplane.console import apicontract
from cellplane.console.apicall import ApiProblem
from cellplane.console.place import Place, place
from cellplane.console.viewer import Viewer, viewer
from cellplane.controlplane.rbac import Target

router = APIRouter()
# Sending requests to a deployed endpoint from the console: a developer's (or an admin's) act, as deploying is; a
# viewer reads the contract only. (Public endpoints are open to anyone anyway; the others take the caller's key.)
INVOKE = "endpoints:invoke"
COMPONENT = "/console/orgs/{org}/projects/{project}/components/{component}"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_BODY = 256_000  # bytes of the endpoint's answer shown
MAX_REQUEST = 1_000_000  # bytes of a request body sent
TIMEOUT = 10.0
CACHE_SIZE = 64
UNSAFE_PATH = re.compile(r"[\x00-\x20\x7f\\#]")

_contracts: OrderedDict[tuple[str, str], dict[str, Any] | str] = OrderedDict()

Text = Annotated[str, Query(max_length=200)]


class Refused(Exception):
    """The proxy will not send this request (one line saying why)."""


def endpoint_url(endpoint: dict[str, Any]) -> str | None:
    """The URL the proxy calls for a deployed endpoint: external for a Public one, else internal, else the cell's."""
    urls = endpoint.get("urls") or {}
    return urls.get("external") or urls.get("internal") or urls.get("project")


def target_url(base: str, path: str, query: list[tuple[str, str]]) -> str:
    """``base`` + ``path`` (+ query), refusing anything that would leave the endpoint."""
    if not path.startswith("/") or path.startswith("//"):
        raise Refused("the path must start with a single '/': it is appended to the endpoint's URL")
    if UNSAFE_PATH.search(path) or "://" in path:
        raise Refused("the path may not contain spaces, control characters, '\\', '#' or a URL")
    only = path.split("?", 1)[0]
    if any(part in ("..", ".") for part in only.split("/")) or "%2e" in only.lower():
        raise Refused("the path may not contain '.' or '..' segments")
    root = urlsplit(base)
    url = base.rstrip("/") + path
    if query:
        url += ("&" if "?" in path else "?") + urlencode(query)
    got = urlsplit(url)
    base_path = root.path.rstrip("/") + "/"
    if (got.scheme, got.netloc) != (root.scheme, root.netloc) or not (got.path + "/").startswith(base_path) \
            or posixpath.normpath(got.path).rstrip("/") + "/" != got.path.rstrip("/") + "/":
        raise Refused("that URL is not the component's endpoint")
    return url


CREDENTIALS = (("api_key", "Choreo-API-Key", "$API_KEY"), ("authorization", "Authorization", "$AUTHORIZATION"))


def credentials(form: dict[str, str]) -> dict[str, str]:
    """The caller's own credentials for an endpoint that needs them (an API key, an Authorization header), as
    typed in the form: forwarded as they are, never shown back (the curl command names a variable instead)."""
    out = {}
    for field_, header, _ in CREDENTIALS:
        value = form.get(field_, "").strip()
        if value:
            if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
                raise Refused(f"the {header} header may not contain control characters")
            out[header] = value
    return out


def curl(method: str, url: str, content_type: str | None, body: str, sent: dict[str, str] | None = None) -> str:
    parts = ["curl", "-sS", "-i", "-X", method, shlex.quote(url)]
    for _, header, variable in CREDENTIALS:
        if header in (sent or {}):
            parts += ["-H", f'"{header}: {variable}"']
    if body:
        parts += ["-H", shlex.quote(f"Content-Type: {content_type or 'application/json'}"),
                  "--data-raw", shlex.quote(body)]
    return " ".join(parts)


@dataclass
class Tried:
    method: str
    url: str
    curl: str
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] | None = None
    body: str = ""
    truncated: bool = False
    millis: float = 0.0
    problem: str = ""


async def contract_of(v: Viewer, p: Place, path: str) -> dict[str, Any] | str:
    """The parsed contract, or the one line saying why it cannot be shown."""
    d = p.deployment or {}
    digest = d.get("artifact")
    if not digest:
        return "no build is deployed here, so there is no contract to read"
    key = (str(digest), path)
    if key in _contracts:
        _contracts.move_to_end(key)
        return _contracts[key]
    status, raw = await v.api.call("GET", f"/organizations/{p.org}/projects/{p.project}/artifacts/{digest}")
    if status != 200:
        try:
            message = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"the API answered {status}"
        return f"the build's artifact cannot be read: {message}"
    try:
        found: dict[str, Any] | str = apicontract.from_artifact(raw, path)
    except apicontract.ContractProblem as e:
        found = str(e)
    _contracts[key] = found
    while len(_contracts) > CACHE_SIZE:
        _contracts.popitem(last=False)
    return found


async def _endpoints(v: Viewer, p: Place) -> list[dict[str, Any]]:
    declared = {e["name"]: e for e in p.spec.get("endpoints") or []}
    out = []
    for e in (p.deployment or {}).get("endpoints") or []:
        contract_path = (declared.get(e["name"]) or {}).get("contract")
        contract: dict[str, Any] | str | None = None
        groups: list[tuple[str, list[apicontract.Operation]]] = []
        if contract_path:
            contract = await contract_of(v, p, contract_path)
            if isinstance(contract, dict):
                groups = apicontract.operations(contract)
        out.append({"name": e["name"], "type": e.get("type"), "visibility": e.get("visibility") or [],
                    "url": endpoint_url(e), "contract_path": contract_path,
                    "contract_problem": contract if isinstance(contract, str) else None,
                    "title": ((contract or {}).get("info") or {}).get("title") if isinstance(contract, dict) else None,
                    "groups": groups})
    return out


async def _page(v: Viewer, p: Place, status: int = 200, tried: Tried | None = None) -> HTMLResponse:
    return v.render("component/test.html", status=status, place=p, tab="test", breadcrumbs=p.breadcrumbs("Test"),
                    endpoints=await _endpoints(v, p), methods=METHODS, tried=tried, tried_id=None,
                    can_try=v.can(INVOKE, p.org, p.project, p.environment),
                    cli=f"cellplane get endpoints --env {p.environment} -p {p.project}")


@router.get(COMPONENT + "/test", include_in_schema=False)
async def test_page(org: str, project: str, component: str, env: Text = "",
                    v: Viewer = Depends(viewer)) -> HTMLResponse:
    try:
        p = await place(v, org, project, component, env)
    except ApiProblem as e:
        return v.problem(e)
    return await _page(v, p)


def _request_of(form: dict[str, str], base: str) -> tuple[str, str, str, str | None]:
    """(method, url, body, content type) from the try-it form; Refused when it would leave the endpoint."""
    method = form.get("method", "GET").upper()
    if method not in METHODS:
        raise Refused(f"method {method} is not one of {', '.join(METHODS)}")
    template = form.get("path", "/") or "/"

    def fill(match: re.Match[str]) -> str:
        value = form.get("path." + match.group(1), "")
        if not value:
            raise Refused(f"path parameter '{match.group(1)}' is required")
        return quote(value, safe="")

    path = re.sub(r"\{([^}/]+)\}", fill, template)
    query = [(k[6:], val) for k, val in form.items() if k.startswith("query.") and val != ""]
    body = form.get("body", "")
    if len(body.encode()) > MAX_REQUEST:
        raise Refused(f"the body is larger than {MAX_REQUEST // 1_000_000} MB")
    return method, target_url(base, path, query), body, form.get("content_type") or None


async def send(method: str, url: str, body: str, content_type: str | None,
               sent: dict[str, str] | None = None) -> Tried:
    tried = Tried(method, url, curl(method, url, content_type, body, sent))
    headers = {"content-type": content_type or "application/json"} if body else {}
    headers.update(sent or {})
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client, \
                client.stream(method, url, content=body.encode() if body else None, headers=headers) as answer:
            chunks: list[bytes] = []
            size = 0
            async for chunk in answer.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY:
                    tried.truncated = True
                    break
            tried.status, tried.reason = answer.status_code, answer.reason_phrase
            tried.headers = list(answer.headers.items())
            raw = b"".join(chunks)[:MAX_BODY]
    except httpx.HTTPError as e:
        tried.problem = f"the endpoint did not answer: {type(e).__name__}: {e}"
        return tried
    finally:
        tried.millis = (time.perf_counter() - started) * 1000
    text = raw.decode("utf-8", errors="replace")
    if "json" in (dict(tried.headers or []).get("content-type") or "") and not tried.truncated:
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    tried.body = text
    return tried


@router.post(COMPONENT + "/test/{env}/try", include_in_schema=False)
async def try_it(request: Request, org: str, project: str, component: str, env: str,
                 v: Viewer = Depends(viewer)) -> HTMLResponse:
    """Forward one request to this component's endpoint in ``env``; the answer as a fragment (htmx) or the page."""
    try:
        p = await place(v, org, project, component, env)
    except ApiProblem as e:
        return v.problem(e)
    if not v.can(INVOKE, org, project, env):  # the server refuses what the page does not offer
        target = Target(org, project, env)
        return v.problem(ApiProblem(403, "forbidden", f"permission '{INVOKE}' is required on {target.describe()}"))
    form = {k: str(val) for k, val in (await request.form()).items() if k != "csrf"}
    fragment = bool(request.headers.get("hx-request"))
    endpoint = next((e for e in (p.deployment or {}).get("endpoints") or []
                     if p.environment == env and e.get("name") == form.get("endpoint")), None)
    base = endpoint_url(endpoint) if endpoint else None
    try:
        if base is None:
            raise Refused(f"'{form.get('endpoint', '')}' is not an endpoint of {component} deployed in {env}")
        method, url, body, content_type = _request_of(form, base)
        sent = credentials(form)
    except Refused as e:
        tried = Tried(form.get("method", "GET"), "", "", problem=str(e))
        if fragment:  # htmx swaps only 2xx answers: the refusal is said in the fragment
            return v.render("component/_try_result.html", tried=tried)
        return await _page(v, p, 422, tried)
    tried = await send(method, url, body, content_type, sent)
    if fragment:
        return v.render("component/_try_result.html", tried=tried)
    return await _page(v, p, 200, tried)
