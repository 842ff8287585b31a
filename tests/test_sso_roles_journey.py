"""Single sign-on and roles in the real browser: an account of the provider in group "viewers" signs in through the
provider's real login page and, on a deployed component's Deploy tab and the project page, is offered no deploy,
promote or create; the provider moves it to group "developers" (the provider restarted with the account's new
groups, as an administrator would change them) and after signing in again the buttons are there and a deploy from
the Deploy tab rolls out on the local data plane; moved out of every mapped group, the next sign-in takes the
provider's roles away. A real control plane with builds and a real data plane (buildkit, dataplanekit), panva's
oidc-provider (oidckit), Debian's Chromium (browserkit)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from browserkit import axe
from buildkit import BuildServer
from dataplanekit import AgentProcess, build_app, deploy, service, wait_state
from oidckit import Account, Client, OidcProvider

ROOT = Path(__file__).resolve().parent.parent
ORG = "/organizations/default"
PROVIDERS = f"{ORG}/identity-providers"
PROJECT_PAGE = "/console/orgs/default/projects/shop"
DEPLOY = PROJECT_PAGE + "/components/api/deploy"
PASSWORD = "correct horse battery"
CALLBACK = "/console/sso/callback"


@pytest.fixture(scope="module")
def shop(build_server: BuildServer, dataplane: AgentProcess) -> dict[str, Any]:
    """api built once and running in development; provider corp of organization default maps group viewers to
    viewer and developers to developer, and creates users."""
    c = build_server.client
    built = build_app(c, "shop", "api", service())
    deploy(c, "shop", "api", "development")
    wait_state(c, "shop", "api")
    return {"build": built}


class Provider:
    """The provider of the journey, restarted with an account's new groups (its issuer changes with its port, and
    the organization's provider is pointed at it again: the client secret kept)."""

    def __init__(self, server_url: str, admin: httpx.Client) -> None:
        self.server_url, self.admin = server_url, admin
        self.current: OidcProvider | None = None

    def restart(self, groups: list[str]) -> None:
        self.stop()
        self.current = OidcProvider([Client("cellplane", "corp-secret", [self.server_url + CALLBACK])],
                                    [Account("robin", PASSWORD, groups=groups)]).start()
        body: dict[str, Any] = {"issuer": self.current.issuer, "clientId": "cellplane",
                                "scopes": ["openid", "email", "profile", "groups"], "createUsers": True,
                                "groupRoles": [{"group": "viewers", "role": "viewer"},
                                               {"group": "developers", "role": "developer"}]}
        if self.admin.get(f"{PROVIDERS}/corp").status_code == 404:
            body["clientSecret"] = "corp-secret"
        response = self.admin.put(f"{PROVIDERS}/corp", json=body)
        assert response.status_code in (200, 201), response.text

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="module")
def provider(build_server: BuildServer) -> Iterator[Provider]:
    p = Provider(build_server.server.url, build_server.client)
    try:
        yield p
    finally:
        p.stop()


def _sign_in(page: Any, url: str, next_path: str) -> None:
    """Sign in through the sign-in page's link and the provider's own login page, as robin."""
    page.goto(url + "/console/sign-in?next=" + next_path)
    page.get_by_role("link", name="Sign in with corp").click()
    page.wait_for_url("**/interaction/**")
    page.get_by_label("Username").fill("robin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + next_path)


def _sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/sso/signed-out/default/corp")
    assert page.get_by_role("link", name="Sign out at corp too").count() == 1


def _roles(admin: httpx.Client) -> list[str]:
    return sorted(b["role"] for b in admin.get(f"{ORG}/rolebindings").json()["items"] if b["user"] == "robin")


def _serious(page: Any) -> list[str]:
    return [v["id"] for v in axe(page) if v.get("impact") in ("serious", "critical")]


def test_the_providers_groups_decide_what_the_console_offers_and_allows(
        page: Any, build_server: BuildServer, shop: dict[str, Any], provider: Provider) -> None:
    url, admin = build_server.server.url, build_server.client
    number = shop["build"]["number"]

    # in group viewers: the tab and the project page show the state, and no action
    provider.restart(["viewers"])
    _sign_in(page, url, DEPLOY)
    assert _roles(admin) == ["viewer"]
    assert page.locator("#env-development").count() == 1 and "ready" in page.locator("#env-development").inner_text()
    main = page.locator("main")
    assert main.locator("form").count() == 0
    assert main.get_by_role("link", name=re.compile("Promote from")).count() == 0
    page.goto(url + PROJECT_PAGE)
    assert page.get_by_role("link", name="Create a component").count() == 0
    _sign_out(page)
    assert _serious(page) == []
    if os.environ.get("CELLPLANE_SCREENSHOTS") == "1":
        page.screenshot(path=str(ROOT / "docs" / "console" / "signed-out-sso.png"), full_page=True)

    # moved to group developers at the provider: after signing in again, the actions are offered and work
    provider.restart(["developers"])
    _sign_in(page, url, DEPLOY)
    assert _roles(admin) == ["developer"]
    staging = page.locator("#env-staging")
    assert staging.get_by_role("link", name="Promote from development…").count() == 1
    staging.get_by_role("button", name=f"Deploy build #{number}").click()
    page.wait_for_url(re.compile(".*/deploy(#.*)?$"))
    deployed = wait_state(admin, "shop", "api", env="staging")
    assert deployed["requestedBy"] == "robin" and deployed["state"] == "ready"
    page.goto(url + PROJECT_PAGE)
    assert page.get_by_role("link", name="Create a component").count() == 1
    _sign_out(page)

    # moved out of every mapped group: the next sign-in takes the provider's roles away
    provider.restart(["contractors"])
    _sign_in(page, url, "/console/")
    assert _roles(admin) == []
    response = page.goto(url + DEPLOY)
    assert response is not None and response.status in (403, 404)
    assert page.locator("main form").count() == 0
