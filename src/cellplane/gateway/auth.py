"""Connection credentials: API keys, the OAuth2 client-credentials tokens of ``/_cellplane/token``, and the
credentials of cells.

Tokens are self-contained (consumer key and expiry, signed with HMAC-SHA256), so the gateway stores nothing
per token and an agent restart with the same secret keeps them valid. A token only names a consumer key;
whether that key still opens anything is decided against the current route table on every request, so a
revoked grant stops working at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from urllib.parse import parse_qs, unquote_plus

from cellplane.gateway.router import RouteIndex
from cellplane.gateway.routes import Grant

TOKEN_PATH = b"/_cellplane/token"
# Gateway tokens carry this prefix, so an Authorization header holding the workload's own bearer token
# (a JWT of its users, say) is recognisably not ours and is forwarded untouched.
TOKEN_PREFIX = "cpg1."
BEARER_PREFIX = b"bearer " + TOKEN_PREFIX.encode()
MAX_TOKEN_REQUEST = 16384


# A cell's credential: the first path segment of the URLs its workloads are given (``/_cell/<credential>/shop/...``),
# or the value of CELL_HEADER for clients that build their own URLs. Project names cannot start with "_".
CELL_PATH = b"/_cell/"
CELL_HEADER = "Cellplane-Cell-Key"
_CELL_HIDDEN = b"/_cell/*"


def cell_credential(key: bytes, environment: str, project: str) -> str:
    """The credential of one cell: HMAC-SHA256(key, environment, project) in base64url (43 characters).

    Derived rather than stored, so an agent needs one key (``cell.key``) for every cell and gives each the same
    credential again after a restart (the URLs its workloads hold stay valid)."""
    return _b64(hmac.new(key, f"cell\0{environment}\0{project}".encode(), hashlib.sha256).digest())


def hide_cell_credential(path: bytes) -> bytes:
    """``path`` with the segment after ``/_cell/`` replaced by ``*``: what access logs and spans may show."""
    end = path.find(b"/", len(CELL_PATH))
    return _CELL_HIDDEN if end < 0 else _CELL_HIDDEN + path[end:]


def secret_digest(secret: bytes) -> str:
    """How grants store a consumer secret (= the API key): sha256 hex."""
    return hashlib.sha256(secret).hexdigest()


class TokenIssuer:
    """Signs and checks access tokens: ``cpg1.`` base64url(consumer key, expiry) ``.`` base64url(HMAC)."""

    def __init__(self, secret: bytes, ttl: int) -> None:
        self._secret = secret
        self.ttl = ttl

    def issue(self, consumer_key: str) -> str:
        payload = f"{consumer_key}\n{int(time.time()) + self.ttl}".encode()
        return TOKEN_PREFIX + _b64(payload) + "." + _b64(self._sign(payload))

    def consumer_key(self, token: bytes) -> str | None:
        """The consumer key of a valid, unexpired token; None otherwise."""
        try:
            body, mac = token[len(TOKEN_PREFIX):].split(b".")
            payload = _unb64(body)
            if not hmac.compare_digest(_unb64(mac), self._sign(payload)):
                return None
            key, expiry = payload.decode().rsplit("\n", 1)
            return key if int(expiry) > time.time() else None
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()


def grant_for_secret(index: RouteIndex, secret: bytes, environment: str,
                     target: tuple[str, str, str]) -> tuple[Grant | None, bool]:
    """The grant an API key opens ``target`` with, and whether the key is known at all (for the message)."""
    grants = index.grants_for_secret(secret_digest(secret))
    for grant in grants:
        if grant.environment == environment and grant.target == target:
            return grant, True
    return None, bool(grants)


def grant_for_key(index: RouteIndex, consumer_key: str, environment: str,
                  target: tuple[str, str, str]) -> Grant | None:
    for grant in index.grants_for_key(consumer_key):
        if grant.environment == environment and grant.target == target:
            return grant
    return None


def token_endpoint(index: RouteIndex, issuer: TokenIssuer, environment: str, authorization: bytes | None,
                   content_type: bytes | None, body: bytes) -> tuple[int, dict[str, object]]:
    """Answer an OAuth2 client-credentials request: (status, JSON body) as RFC 6749 section 4.4 has them."""
    form: dict[str, list[str]] = {}
    if content_type is None or content_type.split(b";")[0].strip().lower() == b"application/x-www-form-urlencoded":
        form = parse_qs(body.decode("latin-1"))
    grant_type = form.get("grant_type", [None])[0]
    if grant_type is None:
        return 400, {"error": "invalid_request", "error_description": "grant_type is required"}
    if grant_type != "client_credentials":
        return 400, {"error": "unsupported_grant_type", "error_description": "only client_credentials is supported"}
    client_id, client_secret = _basic(authorization) or (form.get("client_id", [""])[0],
                                                          form.get("client_secret", [""])[0])
    if not client_id or not client_secret:
        return 401, {"error": "invalid_client", "error_description": "client id and secret are required"}
    digest = secret_digest(client_secret.encode())
    for grant in index.grants_for_key(client_id):
        if grant.environment == environment and hmac.compare_digest(grant.secret_digest, digest):
            return 200, {"access_token": issuer.issue(client_id), "token_type": "Bearer", "expires_in": issuer.ttl}
    return 401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"}


def _basic(authorization: bytes | None) -> tuple[str, str] | None:
    """Client id and secret from an HTTP Basic header (each form-urlencoded first, as RFC 6749 2.3.1 says)."""
    if authorization is None or authorization[:6].lower() != b"basic ":
        return None
    try:
        client_id, _, secret = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: bytes) -> bytes:
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
