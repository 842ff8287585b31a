"""The single sign-on tests' OpenID Connect provider (tests/oidckit.py): panva's oidc-provider as a real process,
with our configuration: discovery, PKCE required, our login form checking passwords, codes sent to the client's
redirect URI, and the account's groups and email in the claims."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

import oidckit
from oidckit import Account, Client, OidcProvider, sign_in_at_provider

REDIRECT = "http://127.0.0.1:9/callback"


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider(
        [Client("kit", "kit-secret", [REDIRECT])],
        [Account("ada", "correct horse battery", groups=["platform", "devs"])],
    ) as op:
        yield op


def _authorize_url(op: OidcProvider, verifier: str | None) -> str:
    params = {
        "client_id": "kit",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid email profile groups",
        "state": "st",
        "nonce": "nn",
    }
    if verifier is not None:
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return f"{op.issuer}/auth?{urlencode(params)}"


def test_the_provider_publishes_its_discovery_document_on_loopback(provider: OidcProvider) -> None:
    assert provider.issuer.startswith("http://127.0.0.1:")
    doc = httpx.get(provider.issuer + "/.well-known/openid-configuration").json()
    assert doc["issuer"] == provider.issuer
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "groups" in doc["claims_supported"]


def test_an_authorization_request_without_pkce_is_refused(provider: OidcProvider) -> None:
    response = httpx.get(_authorize_url(provider, None))
    location = response.headers.get("location", "")
    assert response.status_code in (302, 303) and location.startswith(REDIRECT), (response.status_code, location)
    assert parse_qs(urlsplit(location).query)["error"] == ["invalid_request"]


def test_a_wrong_password_stays_on_the_login_page(provider: OidcProvider) -> None:
    with httpx.Client() as browser:
        response = sign_in_at_provider(browser, _authorize_url(provider, secrets.token_urlsafe(48)), "ada", "wrong")
    assert response.status_code == 401 and "Unknown username or wrong password" in response.text


def test_signing_in_sends_a_code_whose_tokens_carry_the_groups(provider: OidcProvider) -> None:
    verifier = secrets.token_urlsafe(48)
    with httpx.Client() as browser:
        response = sign_in_at_provider(browser, _authorize_url(provider, verifier), "ada", "correct horse battery")
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st"] and query["iss"] == [provider.issuer]
    token = httpx.post(
        provider.issuer + "/token",
        auth=("kit", "kit-secret"),
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    tokens = token.json()
    assert tokens["id_token"].count(".") == 2
    info = httpx.get(provider.issuer + "/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert info["groups"] == ["platform", "devs"]
    assert info["email"] == "ada@example.com" and info["preferred_username"] == "ada"


def test_a_missing_provider_fails_under_ci_and_names_the_script(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("CELLPLANE_OIDC_CACHE", str(tmp_path / "empty"))
    assert oidckit.provider_dir() is None
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"oidc-provider is not installed in the cache; run `bash "
                       r"scripts/ensure-oidc-provider.sh`"):
        OidcProvider([], []).start()
