"""OpenID Connect sign-in (authorization code + PKCE), the protocol half: no page, no session.

``start`` makes the provider's authorization URL (from its discovery document) with a fresh ``state``, ``nonce``
and PKCE verifier (S256), and the sealed ``Pending`` that carries them to the callback in a short-lived cookie
(AES-256-GCM under a key derived from the control plane's token key: the browser holds it but can neither read nor
change it). ``finish`` checks the callback against it (state, and the ``iss`` parameter of RFC 9207 when the
provider sends one), exchanges the code with Authlib's httpx client (client secret, PKCE verifier), verifies the ID
token against the provider's JWKS (signature, ``iss``, ``aud``, ``exp``, ``iat``, ``nonce``, ``at_hash``) and adds
the userinfo endpoint's claims (same ``sub``) when the ID token lacks the groups or the user's name. What a verified
account then signs in as is ``controlplane.identityproviders.sign_in``; the pages are ``pages_sso``.

Cost: discovery documents and key sets are kept per issuer for ``CACHE_SECONDS`` (a key id not in the kept set
fetches the set again once), so a sign-in costs the provider two requests (token, and userinfo when needed) after
the first. Every failure is an ``SsoRefused`` with one sentence for the sign-in page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from cellplane.controlplane.identityproviders import list_rows
from cellplane.store import Store
from cellplane.store.tables import IdentityProviderRow

COOKIE = "cellplane_sso"
COOKIE_PATH = "/console/sso"
PENDING_SECONDS = 600  # how long a sign-in may stay at the provider
CACHE_SECONDS = 300.0
TIMEOUT = 10.0
LEEWAY = 60  # seconds of clock skew allowed in the ID token's times
CALLBACK = "/console/sso/callback"


class SsoRefused(Exception):
    """A sign-in that cannot go on; ``message`` is the one sentence the sign-in page shows, ``status`` its HTTP
    status (400: the answer does not match a sign-in started here; 403: the account may not sign in; 404: no such
    provider; 502: the provider did not answer as it should)."""

    def __init__(self, message: str, audit: str = "", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.audit = audit or message  # what the audit event says (may say more than the page)
        self.status = status


@dataclass(frozen=True)
class Pending:
    """A sign-in under way: what the callback must match, carried in the sealed cookie."""

    org: str
    provider: str
    state: str
    nonce: str
    verifier: str
    next: str
    redirect_uri: str
    expires: float


def _cookie_key(token_key: bytes) -> bytes:
    return hmac.new(token_key, b"cellplane console sso cookie", hashlib.sha256).digest()


def seal(token_key: bytes, pending: Pending) -> str:
    nonce = secrets.token_bytes(12)
    data = AESGCM(_cookie_key(token_key)).encrypt(nonce, json.dumps(asdict(pending)).encode(), COOKIE.encode())
    return base64.urlsafe_b64encode(nonce + data).decode().rstrip("=")


def unseal(token_key: bytes, value: str | None, at: float | None = None) -> Pending:
    """The pending sign-in of the cookie's value; ``SsoRefused`` when there is none, or it is not ours or too old."""
    if not value:
        raise SsoRefused("This sign-in was not started here, or it was started in another browser: sign in again.")
    try:
        blob = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        pending = Pending(**json.loads(AESGCM(_cookie_key(token_key)).decrypt(blob[:12], blob[12:],
                                                                                COOKIE.encode())))
    except (ValueError, TypeError, InvalidTag):
        raise SsoRefused("This sign-in was not started here: sign in again.") from None
    if pending.expires < (time.time() if at is None else at):
        raise SsoRefused("The sign-in took too long: sign in again.")
    return pending


# -- the provider's documents ---------------------------------------------------------------------------------------


class _Kept:
    def __init__(self) -> None:
        self.docs: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        kept = self.docs.get(key)
        return kept[1] if kept is not None and time.monotonic() - kept[0] < CACHE_SECONDS else None

    def put(self, key: str, doc: dict[str, Any]) -> None:
        if len(self.docs) > 1000:
            self.docs.clear()
        self.docs[key] = (time.monotonic(), doc)


_DISCOVERY = _Kept()
_JWKS = _Kept()


async def _fetch_json(url: str, what: str, name: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as e:
        raise SsoRefused(f"{name} did not answer; try again later.",
                         f"{what} {url}: {type(e).__name__}: {e}", 502) from None
    if response.status_code != 200:
        raise SsoRefused(f"{name} did not answer as expected; try again later.",
                         f"{what} {url}: HTTP {response.status_code}", 502)
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise SsoRefused(f"{name} did not answer as expected; try again later.", f"{what} {url}: not a JSON object",
                         502)
    return doc


async def discovery(row: IdentityProviderRow) -> dict[str, Any]:
    """The provider's discovery document (kept a few minutes); its ``issuer`` must be the configured one."""
    kept = _DISCOVERY.get(row.issuer)
    if kept is not None:
        return kept
    doc = await _fetch_json(row.issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery", row.name)
    if doc.get("issuer") != row.issuer:
        raise SsoRefused(f"{row.name} is not set up correctly: ask an administrator of the organization.",
                         f"the discovery document's issuer is {doc.get('issuer')!r}, not {row.issuer!r}", 502)
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not isinstance(doc.get(k), str)]
    if missing:
        raise SsoRefused(f"{row.name} is not set up correctly: ask an administrator of the organization.",
                         f"the discovery document has no {', '.join(missing)}", 502)
    _DISCOVERY.put(row.issuer, doc)
    return doc


async def _key_set(row: IdentityProviderRow, uri: str, refresh: bool = False) -> KeySet:
    doc = None if refresh else _JWKS.get(uri)
    if doc is None:
        doc = await _fetch_json(uri, "key set", row.name)
        _JWKS.put(uri, doc)
    try:
        return KeySet.import_key_set(doc)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as e:
        raise SsoRefused(f"{row.name} is not set up correctly: ask an administrator of the organization.",
                         f"its key set cannot be read: {e}", 502) from None


# -- the two halves of the flow -------------------------------------------------------------------------------------


def _client(row: IdentityProviderRow, secret: str | None, redirect_uri: str) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(client_id=row.client_id, client_secret=secret, scope=" ".join(row.scopes),
                             redirect_uri=redirect_uri, code_challenge_method="S256",
                             token_endpoint_auth_method="client_secret_basic" if secret else "none",
                             timeout=TIMEOUT)


async def start(row: IdentityProviderRow, redirect_uri: str, next_path: str, at: float | None = None
                ) -> tuple[str, Pending]:
    """The authorization URL to send the browser to, and the pending sign-in to seal into the cookie."""
    doc = await discovery(row)
    pending = Pending(org=row.organization, provider=row.name, state=secrets.token_urlsafe(24),
                      nonce=secrets.token_urlsafe(24), verifier=secrets.token_urlsafe(48), next=next_path,
                      redirect_uri=redirect_uri, expires=(time.time() if at is None else at) + PENDING_SECONDS)
    async with _client(row, None, redirect_uri) as client:
        url, _ = client.create_authorization_url(doc["authorization_endpoint"], state=pending.state,
                                                 code_verifier=pending.verifier, nonce=pending.nonce)
    return url, pending


def check_callback(pending: Pending, params: dict[str, str], issuer: str) -> str:
    """The authorization code of a callback that answers ``pending`` (``SsoRefused`` otherwise)."""
    if not hmac.compare_digest(params.get("state", ""), pending.state):
        raise SsoRefused("The sign-in answer does not match the sign-in started here (state mismatch): sign in "
                         "again.", "state mismatch")
    if "iss" in params and params["iss"] != issuer:
        raise SsoRefused("The sign-in answer came from another provider: sign in again.",
                         f"iss parameter {params['iss']!r}, expected {issuer!r}")
    if params.get("error"):
        said = params.get("error_description") or params["error"]
        raise SsoRefused(f"The provider refused the sign-in: {said[:200]}", f"provider error {params['error']}: "
                         f"{said[:500]}")
    code = params.get("code")
    if not code:
        raise SsoRefused("The sign-in answer has no authorization code: sign in again.", "no code")
    return code


async def finish(row: IdentityProviderRow, secret: str | None, pending: Pending, code: str) -> dict[str, Any]:
    """Exchange the code and verify the ID token; returns the account's claims (``sub`` among them)."""
    doc = await discovery(row)
    try:
        async with _client(row, secret, pending.redirect_uri) as client:
            token = await client.fetch_token(doc["token_endpoint"], grant_type="authorization_code", code=code,
                                             code_verifier=pending.verifier)
    except httpx.HTTPError as e:
        raise SsoRefused(f"{row.name} did not answer; try again later.", f"token endpoint: {e}", 502) from None
    except Exception as e:  # authlib's OAuthError, or a token endpoint answering something else than JSON
        raise SsoRefused(f"{row.name} refused the sign-in (the code could not be exchanged): sign in again.",
                         f"token endpoint: {type(e).__name__}: {e}") from None
    raw = token.get("id_token")
    if not isinstance(raw, str):
        raise SsoRefused(f"{row.name} sent no ID token: ask an administrator to check the scopes (openid).",
                         "no id_token in the token response")
    claims = await verify_id_token(row, doc, raw, pending.nonce, token.get("access_token"))
    if not (row.groups_claim in claims and ("preferred_username" in claims or "email" in claims)):
        claims = await _with_userinfo(row, doc, claims, token.get("access_token"))
    return claims


async def verify_id_token(row: IdentityProviderRow, doc: dict[str, Any], raw: str, nonce: str,
                          access_token: str | None) -> dict[str, Any]:
    algorithms = [a for a in doc.get("id_token_signing_alg_values_supported") or ["RS256"]
                  if isinstance(a, str) and a != "none" and not a.startswith("HS")]
    registry = JWSRegistry(algorithms=algorithms or ["RS256"], strict_check_header=False)
    invalid = f"{row.name} sent an ID token that does not verify: sign in again, or ask an administrator."
    try:
        try:
            decoded = jwt.decode(raw, await _key_set(row, doc["jwks_uri"]), registry=registry)
        except InvalidKeyIdError:  # the provider rotated its keys since the set was kept
            decoded = jwt.decode(raw, await _key_set(row, doc["jwks_uri"], refresh=True), registry=registry)
        params: dict[str, Any] = {"nonce": nonce, "client_id": row.client_id}
        if access_token:
            params["access_token"] = access_token
        options = {"iss": {"essential": True, "values": [row.issuer]},
                   "aud": {"essential": True, "values": [row.client_id]}}
        claims = CodeIDToken(decoded.claims, decoded.header, options, params)
        claims.validate(leeway=LEEWAY)
        audience = decoded.claims.get("aud")
        if row.client_id not in (audience if isinstance(audience, list) else [audience]):
            raise ValueError(f"aud {audience!r} does not name the client {row.client_id!r}")
    except (JoseError, ValueError) as e:
        raise SsoRefused(invalid, f"ID token: {type(e).__name__}: {e}") from None
    return dict(decoded.claims)


async def _with_userinfo(row: IdentityProviderRow, doc: dict[str, Any], claims: dict[str, Any],
                         access_token: str | None) -> dict[str, Any]:
    uri = doc.get("userinfo_endpoint")
    if not isinstance(uri, str) or not access_token:
        return claims
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(uri, headers={"Authorization": f"Bearer {access_token}",
                                                      "Accept": "application/json"})
        info = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        info = None
    if not isinstance(info, dict) or info.get("sub") != claims.get("sub"):
        raise SsoRefused(f"{row.name} did not say who signed in (userinfo); try again later.",
                         "userinfo failed or named another subject", 502)
    return {**info, **claims}


SIGNED_OUT = "/console/sso/signed-out"


def signed_out_path(session_provider: str) -> str:
    """Where sign-out sends a session that ``session_provider`` (``oidc:<org>/<name>``) started: a page offering to
    sign out at the provider too (``pages_sso.signed_out``)."""
    return f"{SIGNED_OUT}/{session_provider.removeprefix('oidc:')}"


async def end_session_url(row: IdentityProviderRow) -> str | None:
    """The provider's end_session_endpoint (RP-initiated logout) with our client id, when its discovery document
    names one (None otherwise, or when the provider does not answer: signing out here never waits on it). Without
    an id_token_hint (the console keeps no ID token), the provider asks its user to confirm."""
    try:
        doc = await discovery(row)
    except SsoRefused:
        return None
    endpoint = doc.get("end_session_endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        return None
    return endpoint + ("&" if "?" in endpoint else "?") + urlencode({"client_id": row.client_id})


class _Listed:
    """The sign-in page's list of providers, kept while nothing wrote ``identity_providers`` through this process and
    for at most ``ttl`` seconds (another replica may have written): the page then costs no query, on the event loop."""

    ttl = 5.0

    def __init__(self) -> None:
        self.kept: tuple[Store, int, float, list[dict[str, str]]] | None = None

    def __call__(self, store: Store) -> list[dict[str, str]]:
        kept = self.kept
        if (kept is not None and kept[0] is store and time.monotonic() - kept[2] < self.ttl
                and not store.changes.since(kept[1], ("identity_providers",))):
            return kept[3]
        seq = store.changes.seq  # before reading: a change committed meanwhile makes the list stale
        with store.read() as s:
            listed = [{"organization": r.organization, "name": r.name,
                       "url": f"/console/sso/{r.organization}/{r.name}"} for r in list_rows(s)
                      if not r.disabled]
        self.kept = (store, seq, time.monotonic(), listed)
        return listed


# Every organization's providers, for the sign-in page's "Sign in with ..." links (one indexed read, then kept).
sign_in_providers = _Listed()
