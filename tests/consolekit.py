"""What the console's tests need: users with a password and a role, a browser page signed in, and an HTTP client
signed in (its session cookie and its CSRF token) for plain HTTP checks.

A control plane comes from tests/liveserver.py (``live_server``, one per module, or ``shared_live_server``); users
are made through its API with the admin's token, exactly as an operator would (``POST /users``, ``PUT
/users/{user}/password``, ``POST /organizations/{org}/rolebindings``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from liveserver import LiveServer

SIGN_IN = "/console/sign-in"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
CSRF_FIELD = re.compile(r'<input type="hidden" name="csrf" value="([^"]*)">')


@dataclass
class ConsoleUser:
    name: str
    password: str
    token: str  # an API token of the same user, to compare the console with the API


def make_user(server: LiveServer, name: str, role: str | None = "developer", org: str = "default",
              project: str | None = None, environment: str | None = None, password: str | None = None,
              superuser: bool = False) -> ConsoleUser:
    """A user with a password and (unless ``role`` is None) one role binding in ``org``."""
    admin = server.client()
    password = password or "pw-" + secrets.token_urlsafe(12)
    r = admin.post("/users", json={"name": name, "superuser": superuser})
    assert r.status_code == 201, r.text
    r = admin.put(f"/users/{name}/password", json={"password": password})
    assert r.status_code == 200, r.text
    if role is not None:
        binding: dict[str, Any] = {"user": name, "role": role}
        if project:
            binding["project"] = project
        if environment:
            binding["environment"] = environment
        r = admin.post(f"/organizations/{org}/rolebindings", json=binding)
        assert r.status_code == 201, r.text
    r = admin.post(f"/users/{name}/tokens", json={"name": "console-test"})
    assert r.status_code == 201, r.text
    return ConsoleUser(name, password, r.json()["token"])


def signed_in(page: Any, server: LiveServer, user: ConsoleUser, next_path: str = "/console/") -> Any:
    """Signs ``page`` (Playwright) in through the real sign-in form; returns the page, at ``next_path``."""
    page.goto(server.url + SIGN_IN + "?next=" + next_path)
    page.get_by_label("User name").fill(user.name)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + next_path)
    return page


class ConsoleClient(httpx.Client):
    """An httpx client with a console session: its cookie jar holds the session, ``csrf`` its CSRF token."""

    csrf: str = ""

    def form(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """POST a form as the console's pages do (the csrf field added)."""
        return self.post(path, data={"csrf": self.csrf, **(data or {})}, **kwargs)


def sign_in_form(client: httpx.Client) -> str:
    """GET the sign-in page (which sets the pre-session CSRF cookie); returns the form's csrf field."""
    r = client.get(SIGN_IN)
    assert r.status_code == 200, r.text
    found = CSRF_FIELD.search(r.text)
    assert found, r.text
    return found.group(1)


def session_client(server: LiveServer, user: ConsoleUser) -> ConsoleClient:
    """A client signed in as ``user`` through the sign-in form, with the session's CSRF token in ``csrf``."""
    client = ConsoleClient(base_url=server.url, timeout=30, follow_redirects=False)
    csrf = sign_in_form(client)
    r = client.post(SIGN_IN, data={"csrf": csrf, "username": user.name, "password": user.password,
                                   "next": "/console/"})
    assert r.status_code == 303, r.text
    r = client.get("/console/")
    assert r.status_code == 200, r.text
    found = CSRF_META.search(r.text)
    assert found, r.text
    client.csrf = found.group(1)
    return client
