"""A real OpenID Connect provider for the single sign-on tests: panva's ``oidc-provider`` (npm, pinned in
tools/oidc/) run by Node with our own small configuration, tests/fixtures/oidc/provider.mjs.

``scripts/ensure-oidc-provider.sh`` (a prerequisite of ``make test``) installs the package into a cache keyed by its
version; ``--path`` says where. ``OidcProvider`` starts ``node provider.mjs CONFIG`` as a process of its own, on
127.0.0.1 on a port the provider picks (it prints its issuer), waits until its discovery document answers, and
stops it. Start: about 2 s on this project's 2-core machine (Node loading the library and koa). Its state
(sessions, codes, grants) lives in the process's memory and goes with it.

Missing Node or the package fails the test under ``CI=true`` with one line naming the script, and skips it
otherwise (the browserkit pattern).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ENSURE = "scripts/ensure-oidc-provider.sh"
PROVIDER_SCRIPT = ROOT / "tests" / "fixtures" / "oidc" / "provider.mjs"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> None:
    """Fail under CI, skip elsewhere, with one line saying how to install ``what``."""
    message = f"{what}; run `bash {ENSURE}` to install it"
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def provider_dir() -> Path | None:
    """The cache directory holding node_modules/oidc-provider, as the ensure script reports it (None when absent)."""
    result = subprocess.run(["bash", str(ROOT / ENSURE), "--path"], capture_output=True, text=True, check=False)
    path = Path(result.stdout.strip())
    return path if result.returncode == 0 and path.is_dir() else None


@dataclass
class Account:
    username: str
    password: str
    groups: list[str] = field(default_factory=list)
    email: str = ""
    sub: str = ""
    name: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "sub": self.sub or f"sub-{self.username}",
            "username": self.username,
            "password": self.password,
            "email": self.email or f"{self.username}@example.com",
            "name": self.name or self.username,
            "groups": self.groups,
        }


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]


class OidcProvider:
    """The provider process: ``with OidcProvider(clients, accounts) as op: op.issuer``."""

    def __init__(self, clients: list[Client], accounts: list[Account]) -> None:
        self.clients = clients
        self.accounts = accounts
        self.issuer = ""
        self._process: subprocess.Popen[str] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, timeout: float = 20.0) -> OidcProvider:
        node = shutil.which("node")
        if node is None:
            missing("node is not installed (scripts/ensure-build-tools.sh installs it)")
        package = provider_dir()
        if package is None:
            missing("oidc-provider is not installed in the cache")
        assert node is not None and package is not None
        self._dir = tempfile.TemporaryDirectory(prefix="cellplane-oidc-")
        config = Path(self._dir.name) / "config.json"
        config.write_text(
            json.dumps(
                {
                    "clients": [
                        {"client_id": c.client_id, "client_secret": c.client_secret, "redirect_uris": c.redirect_uris}
                        for c in self.clients
                    ],
                    "accounts": [a.as_json() for a in self.accounts],
                }
            )
        )
        log = open(Path(self._dir.name) / "provider.log", "w")  # noqa: SIM115 - closed with the process
        self._log = log
        env = {**os.environ, "OIDC_PROVIDER_DIR": str(package), "NODE_ENV": "test"}
        self._process = subprocess.Popen(
            [node, str(PROVIDER_SCRIPT), str(config)], stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # "issuer http://127.0.0.1:PORT", or "" when it died
        if not line.startswith("issuer "):
            self.stop()
            raise RuntimeError(f"the OIDC provider did not start: {self.log()[-2000:]}")
        self.issuer = line.split(" ", 1)[1].strip()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.issuer + "/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the OIDC provider's discovery never answered: {self.log()[-2000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "provider.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def sign_in_at_provider(client: httpx.Client, authorize_url: str, username: str, password: str) -> httpx.Response:
    """Follow an authorization URL through the provider's login form as a browser would, with ``client`` (its
    cookies), and return the provider's final redirect (to the client's redirect URI), not followed."""
    response = client.get(authorize_url, follow_redirects=True)
    if response.status_code != 200 or "/interaction/" not in str(response.url):
        raise AssertionError(f"expected the provider's login page, got {response.status_code} {response.url}")
    response = client.post(str(response.url), data={"username": username, "password": password})
    # the provider answers the form with redirects: back to /auth/<uid>, to the consent interaction (given at once)
    # and /auth/<uid> again, then to the client's redirect URI with the code
    for _ in range(10):
        if response.status_code not in (302, 303):
            return response
        location = response.headers["location"]
        target = httpx.URL(str(response.url)).join(location)
        if not str(target).startswith(str(httpx.URL(str(response.url)).copy_with(path="/", query=None))[:-1]):
            return response  # leaving the provider: the client's redirect URI
        response = client.get(target)
    raise AssertionError("the provider kept redirecting")
