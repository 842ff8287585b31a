"""The OpenID Connect half of single sign-on (``cellplane.console.sso``) against a real provider (panva's
oidc-provider, tests/oidckit.py): authorization code + PKCE, the sealed pending sign-in, and every check of the
callback and the ID token refusing what it must, each with one sentence for the sign-in page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from cellplane.console import sso
from cellplane.store.tables import IdentityProviderRow
from oidckit import Account, Client, OidcProvider, sign_in_at_provider

REDIRECT = "http://127.0.0.1:9/console/sso/callback"
KEY = b"k" * 32


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider([Client("cellplane", "client-secret", [REDIRECT]), Client("other", "other-secret", [REDIRECT])],
                      [Account("ada", "correct horse", groups=["devs", "ops"])]) as op:
        yield op


def _row(op: OidcProvider, client_id: str = "cellplane", issuer: str | None = None) -> IdentityProviderRow:
    return IdentityProviderRow(organization="acme", name="test-idp", issuer=issuer or op.issuer, client_id=client_id,
                               client_secret=None, scopes=["openid", "email", "profile", "groups"],
                               groups_claim="groups", group_roles=[], create_users=True)


def _authorize(op: OidcProvider, row: IdentityProviderRow) -> tuple[sso.Pending, dict[str, str]]:
    url, pending = asyncio.run(sso.start(row, REDIRECT, "/console/orgs/acme"))
    with httpx.Client() as browser:
        response = sign_in_at_provider(browser, url, "ada", "correct horse")
    location = response.headers["location"]
    assert location.startswith(REDIRECT), location
    return pending, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _refusal(call: Any) -> sso.SsoRefused:
    with pytest.raises(sso.SsoRefused) as refused:
        call()
    return refused.value


def test_the_authorization_request_carries_state_nonce_and_an_s256_challenge(provider: OidcProvider) -> None:
    url, pending = asyncio.run(sso.start(_row(provider), REDIRECT, "/console/"))
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(provider.issuer + "/auth?")
    assert query["state"] == pending.state and query["nonce"] == pending.nonce
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert pending.verifier not in url and query["scope"] == "openid email profile groups"
    assert query["redirect_uri"] == REDIRECT and query["client_id"] == "cellplane"


def test_the_pending_sign_in_is_sealed_and_refused_when_changed_foreign_or_old() -> None:
    pending = sso.Pending("acme", "idp", "st", "nn", "vv", "/console/", REDIRECT, time.time() + 600)
    sealed = sso.seal(KEY, pending)
    assert sso.unseal(KEY, sealed) == pending
    assert "vv" not in sealed and "nn" not in sealed  # the browser holds it, but cannot read it
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert "not started here" in _refusal(lambda: sso.unseal(KEY, tampered)).message
    assert "not started here" in _refusal(lambda: sso.unseal(b"x" * 32, sealed)).message
    assert "another browser" in _refusal(lambda: sso.unseal(KEY, None)).message
    assert "took too long" in _refusal(lambda: sso.unseal(KEY, sealed, at=time.time() + 601)).message


def test_a_sign_in_at_the_provider_gives_verified_claims_with_the_groups(provider: OidcProvider) -> None:
    row = _row(provider)
    pending, params = _authorize(provider, row)
    code = sso.check_callback(pending, params, provider.issuer)
    claims = asyncio.run(sso.finish(row, "client-secret", pending, code))
    assert claims["sub"] == "sub-ada" and claims["iss"] == provider.issuer and claims["aud"] == "cellplane"
    assert claims["groups"] == ["devs", "ops"]  # from the userinfo endpoint: the ID token holds only what it must
    assert claims["preferred_username"] == "ada" and claims["email"] == "ada@example.com"
    reused = _refusal(lambda: asyncio.run(sso.finish(row, "client-secret", pending, code)))
    assert reused.message == "test-idp refused the sign-in (the code could not be exchanged): sign in again."
    assert "invalid_grant" in reused.audit


def test_a_callback_for_another_sign_in_or_from_another_issuer_is_refused(provider: OidcProvider) -> None:
    pending = sso.Pending("acme", "idp", "the-state", "nn", "vv", "/console/", REDIRECT, time.time() + 600)
    mismatch = _refusal(lambda: sso.check_callback(pending, {"state": "another", "code": "c"}, provider.issuer))
    assert "state mismatch" in mismatch.message
    mixed = _refusal(lambda: sso.check_callback(pending, {"state": "the-state", "code": "c",
                                                          "iss": "https://evil.example"}, provider.issuer))
    assert "another provider" in mixed.message
    denied = _refusal(lambda: sso.check_callback(pending, {"state": "the-state", "error": "access_denied",
                                                           "error_description": "End-User aborted"}, provider.issuer))
    assert denied.message == "The provider refused the sign-in: End-User aborted"


def test_an_id_token_for_another_client_or_another_nonce_does_not_verify(provider: OidcProvider) -> None:
    row = _row(provider)
    pending, params = _authorize(provider, row)
    doc = asyncio.run(sso.discovery(row))
    token = httpx.post(doc["token_endpoint"], auth=("cellplane", "client-secret"), data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
        "code_verifier": pending.verifier}).json()
    raw = token["id_token"]
    assert asyncio.run(sso.verify_id_token(row, doc, raw, pending.nonce, None))["sub"] == "sub-ada"
    other = _refusal(lambda: asyncio.run(sso.verify_id_token(_row(provider, "other"), doc, raw, pending.nonce, None)))
    assert other.message.startswith("test-idp sent an ID token that does not verify") and "aud" in other.audit
    replayed = _refusal(lambda: asyncio.run(sso.verify_id_token(row, doc, raw, "another-nonce", None)))
    assert "nonce" in replayed.audit
    tampered = raw.split(".")
    tampered[1] = tampered[1][:-4] + ("AAAA" if tampered[1][-4:] != "AAAA" else "BBBB")
    assert _refusal(lambda: asyncio.run(sso.verify_id_token(row, doc, ".".join(tampered), pending.nonce, None)))


def test_an_id_token_signed_by_another_key_or_expired_is_refused(provider: OidcProvider) -> None:
    row = _row(provider)
    doc = asyncio.run(sso.discovery(row))
    forger = RSAKey.generate_key(2048, parameters={"kid": "forger"})
    now = int(time.time())
    claims = {"iss": provider.issuer, "sub": "sub-ada", "aud": "cellplane", "iat": now, "exp": now + 300,
              "nonce": "nn"}
    forged = jwt.encode({"alg": "RS256", "kid": "forger"}, claims, forger)
    refused = _refusal(lambda: asyncio.run(sso.verify_id_token(row, doc, forged, "nn", None)))
    assert refused.message.startswith("test-idp sent an ID token that does not verify")
    # the same key planted as the provider's (as if it had published it): then only the expiry refuses it
    planted = {**doc, "jwks_uri": provider.issuer + "/planted-jwks"}
    sso._JWKS.put(planted["jwks_uri"], {"keys": [forger.as_dict(private=False)]})
    assert asyncio.run(sso.verify_id_token(row, planted, forged, "nn", None))["sub"] == "sub-ada"
    expired = jwt.encode({"alg": "RS256", "kid": "forger"}, {**claims, "iat": now - 900, "exp": now - 300}, forger)
    assert "exp" in _refusal(lambda: asyncio.run(sso.verify_id_token(row, planted, expired, "nn", None))).audit.lower()


def test_a_provider_that_does_not_answer_or_names_another_issuer_is_refused(provider: OidcProvider) -> None:
    down = _refusal(lambda: asyncio.run(sso.start(_row(provider, issuer="http://127.0.0.1:9"), REDIRECT, "/")))
    assert down.message == "test-idp did not answer; try again later." and "ConnectError" in down.audit
    assert down.status == 502
    wrong = _refusal(lambda: asyncio.run(sso.start(_row(provider, issuer=provider.issuer + "/"), REDIRECT, "/")))
    assert "not set up correctly" in wrong.message and "issuer" in wrong.audit
