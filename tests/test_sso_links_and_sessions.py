"""Single sign-on, after the first sign-in: an administrator links an existing user to a provider's account (API and
CLI; who may link whom), the linked account then signs in as that user through a provider that creates no users;
signing out of a session the provider started offers to sign out at the provider too (its end_session_endpoint);
disabling or deleting a provider, or unlinking a user, ends the console sessions it started at once. A real control
plane (liveserver) and a real OpenID Connect provider (panva's oidc-provider, tests/oidckit.py), over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from consolekit import CSRF_META, make_user, session_client
from liveserver import LiveServer, fails, ok, run_cli
from oidckit import Account, Client, OidcProvider, sign_in_at_provider

ORG = "acme"
CALLBACK = "/console/sso/callback"
PASSWORD = "correct horse battery"
BASE = f"/organizations/{ORG}/identity-providers"


@pytest.fixture(scope="module")
def provider(live_server: LiveServer) -> Iterator[OidcProvider]:
    redirect = [live_server.url + CALLBACK]
    accounts = [Account("linus", PASSWORD, groups=["acme-devs"]), Account("ada", PASSWORD, groups=["acme-viewers"])]
    with OidcProvider([Client("cellplane", "corp-secret", redirect)], accounts) as op:
        yield op


@pytest.fixture(scope="module")
def admin(live_server: LiveServer, provider: OidcProvider) -> httpx.Client:
    """The platform admin's API client; organization acme with two providers of one client: corp (creates users,
    acme-viewers -> viewer) and closed (creates none, acme-devs -> developer)."""
    api = live_server.client()
    for org in (ORG, "other"):
        assert api.post("/organizations", json={"metadata": {"name": org}, "spec": {}}).status_code == 201
    corp = {"issuer": provider.issuer, "clientId": "cellplane", "clientSecret": "corp-secret",
            "scopes": ["openid", "email", "profile", "groups"], "createUsers": True,
            "groupRoles": [{"group": "acme-viewers", "role": "viewer"}, {"group": "acme-devs", "role": "developer"}]}
    for name, body in (("corp", corp), ("closed", {**corp, "createUsers": False})):
        response = api.put(f"{BASE}/{name}", json=body)
        assert response.status_code == 201, response.text
    return api


def _signed_in(live_server: LiveServer, provider: str, account: str) -> httpx.Client:
    """A browser-like client signed in through ``provider`` as ``account`` (its session cookie in its jar)."""
    client = httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=False)
    started = client.get(f"/console/sso/{ORG}/{provider}")
    assert started.status_code == 303, started.text
    back = sign_in_at_provider(client, started.headers["location"], account, PASSWORD)
    answer = client.get(back.headers["location"])
    assert answer.status_code == 303, answer.text
    return client


def _home(client: httpx.Client) -> httpx.Response:
    return client.get("/console/")


def test_an_org_admin_links_an_existing_user_who_then_signs_in_through_a_provider_that_creates_none(
        live_server: LiveServer, admin: httpx.Client) -> None:
    make_user(live_server, "lin", role="viewer", org=ORG)
    orgadmin = live_server.client(make_user(live_server, "olga", role="admin", org=ORG).token)
    viewer = live_server.client(make_user(live_server, "vera", role="viewer", org=ORG).token)
    make_user(live_server, "otto", role="viewer", org="other")
    # not linked yet: the account is refused, as closed creates no users
    refused = httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=False)
    started = refused.get(f"/console/sso/{ORG}/closed")
    back = sign_in_at_provider(refused, started.headers["location"], "linus", PASSWORD)
    assert refused.get(back.headers["location"]).status_code == 403

    link = {"user": "lin", "subject": "sub-linus"}
    assert viewer.post(f"{BASE}/closed/links", json=link).status_code == 403  # an organization admin's
    created = orgadmin.post(f"{BASE}/closed/links", json=link)
    assert created.status_code == 201, created.text
    assert created.json()["user"] == "lin" and created.json()["lastSignInAt"] is None
    assert orgadmin.post(f"{BASE}/closed/links", json=link).status_code == 200  # there already
    shown = orgadmin.get(f"{BASE}/closed").json()["links"]
    assert [(x["user"], x["subject"]) for x in shown] == [("lin", "sub-linus")]
    assert "links" not in orgadmin.get(BASE).json()["items"][0]
    # who may not be linked by an organization admin: a platform administrator, a user with roles elsewhere
    for user, why in (("admin", "is a platform administrator"), ("otto", "holds roles in organization 'other'")):
        answer = orgadmin.post(f"{BASE}/closed/links", json={"user": user, "subject": f"sub-{user}"})
        assert answer.status_code == 403 and why in answer.json()["error"]["message"], answer.text
    assert admin.post(f"{BASE}/closed/links", json={"user": "otto", "subject": "sub-otto"}).status_code == 201
    taken = orgadmin.post(f"{BASE}/closed/links", json={"user": "vera", "subject": "sub-linus"})
    assert taken.status_code == 409 and "linked to user 'lin' already" in taken.json()["error"]["message"]
    second = orgadmin.post(f"{BASE}/closed/links", json={"user": "lin", "subject": "sub-other"})
    assert second.status_code == 409 and second.json()["error"]["details"][0]["field"] == "user"
    nobody = orgadmin.post(f"{BASE}/closed/links", json={"user": "nobody", "subject": "x"})
    assert nobody.status_code == 404

    # linked: the account signs in as lin, with the role of its group (besides lin's own)
    client = _signed_in(live_server, "closed", "linus")
    assert "Signed in as <strong>lin</strong>" in _home(client).text
    assert orgadmin.get(f"{BASE}/closed").json()["links"][0]["lastSignInAt"] is not None
    bindings = admin.get(f"/organizations/{ORG}/rolebindings").json()["items"]
    assert sorted(b["role"] for b in bindings if b["user"] == "lin") == ["developer", "viewer"]
    events = [e for e in admin.get("/audit", params={"actor": "olga"}).json()["items"]
              if e["action"] == "identityprovider.link" and e["outcome"] == "succeeded"]
    assert events and "account 'sub-linus' linked to user 'lin'" in events[-1]["message"]

    # unlinked: the provider's role and the session it started go, lin's own role stays
    assert orgadmin.delete(f"{BASE}/closed/links/lin").json() == {"deleted": "lin"}
    assert _home(client).status_code == 303
    bindings = admin.get(f"/organizations/{ORG}/rolebindings").json()["items"]
    assert [b["role"] for b in bindings if b["user"] == "lin"] == ["viewer"]
    assert orgadmin.delete(f"{BASE}/closed/links/lin").status_code == 404
    left = orgadmin.get(f"{BASE}/closed").json()["links"]
    assert [(x["user"], x["subject"]) for x in left] == [("otto", "sub-otto")]


def test_the_cli_links_lists_and_unlinks(live_server: LiveServer, admin: httpx.Client) -> None:
    make_user(live_server, "cleo", role="viewer", org=ORG)
    linked = ok(run_cli(live_server, "--org", ORG, "idp", "link", "closed", "--user", "cleo", "--subject", "s-cleo"))
    assert "user cleo linked to account s-cleo of acme/closed" in linked.stdout
    shown = ok(run_cli(live_server, "--org", ORG, "idp", "get", "closed")).stdout
    assert "linked        cleo <- s-cleo (last sign-in: never signed in)" in shown
    assert "unlinked" in ok(run_cli(live_server, "--org", ORG, "idp", "unlink", "closed", "--user", "cleo")).stdout
    assert "cleo" not in ok(run_cli(live_server, "--org", ORG, "idp", "get", "closed")).stdout
    assert "is not linked" in fails(run_cli(live_server, "--org", ORG, "idp", "unlink", "closed", "--user", "cleo"))


def test_signing_out_of_a_session_of_the_provider_offers_to_sign_out_at_the_provider(
        live_server: LiveServer, provider: OidcProvider, admin: httpx.Client) -> None:
    client = _signed_in(live_server, "corp", "ada")
    csrf = CSRF_META.search(_home(client).text)
    assert csrf
    out = client.post("/console/sign-out", data={"csrf": csrf.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/console/sso/signed-out/acme/corp"
    assert _home(client).status_code == 303  # the console session has ended
    page = client.get(out.headers["location"])
    assert page.status_code == 200 and "You are signed out of Cellplane." in page.text
    end_session = httpx.get(provider.issuer + "/.well-known/openid-configuration").json()["end_session_endpoint"]
    assert f'href="{end_session}?client_id=cellplane"' in page.text
    assert client.get(f"{end_session}?client_id=cellplane").status_code == 200  # the provider's own sign-out page
    # a password's session signs out to the sign-in page
    password = session_client(live_server, make_user(live_server, "pia", role="viewer", org=ORG))
    assert password.form("/console/sign-out").headers["location"] == "/console/sign-in"


def test_disabling_or_deleting_a_provider_ends_the_sessions_it_started_at_once(
        live_server: LiveServer, provider: OidcProvider, admin: httpx.Client) -> None:
    body = admin.get(f"{BASE}/corp").json()
    temp = {k: body[k] for k in ("issuer", "clientId", "scopes", "groupsClaim", "groupRoles", "createUsers")}
    assert admin.put(f"{BASE}/temp", json={**temp, "clientSecret": "corp-secret"}).status_code == 201
    through_temp = _signed_in(live_server, "temp", "ada")
    through_corp = _signed_in(live_server, "corp", "ada")
    password = session_client(live_server, make_user(live_server, "paul", role="viewer", org=ORG))
    for client in (through_temp, through_corp, password):
        assert _home(client).status_code == 200

    # disabled: its sessions end, it leaves the sign-in page, and a sign-in through it is refused
    disabled = admin.put(f"{BASE}/temp", json={**temp, "disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert _home(through_temp).status_code == 303 and "/console/sign-in" in _home(through_temp).headers["location"]
    assert _home(through_corp).status_code == 200 and _home(password).status_code == 200
    with httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=False) as browser:
        assert "Sign in with temp" not in browser.get("/console/sign-in").text
        refused = browser.get(f"/console/sso/{ORG}/temp")
        assert refused.status_code == 403 and "temp is disabled" in refused.text
    assert f"  {'disabled':<13} yes" in ok(run_cli(live_server, "--org", ORG, "idp", "get", "temp")).stdout

    # enabled again (the client secret kept): signing in works; deleted: the session ends again
    assert admin.put(f"{BASE}/temp", json=temp).json()["disabled"] is False
    through_temp = _signed_in(live_server, "temp", "ada")
    assert _home(through_temp).status_code == 200
    assert admin.delete(f"{BASE}/temp").status_code == 200
    assert _home(through_temp).status_code == 303
    assert _home(through_corp).status_code == 200 and _home(password).status_code == 200
