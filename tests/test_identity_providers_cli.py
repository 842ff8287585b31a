"""`cellplane idp`: apply, list, get and delete an organization's OpenID Connect providers with the real command
against a real control plane; the client secret comes from a file or stdin and is never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liveserver import LiveServer, fails, ok, run_cli

ORG = "idpcli"
SECRET = "cli-secret-value-never-printed"

@pytest.fixture(scope="module")
def live_server(shared_live_server: LiveServer) -> LiveServer:
    """This module works in an organization of its own: it shares the session's control plane."""
    api = shared_live_server.client()
    response = api.post("/organizations", json={"metadata": {"name": ORG}, "spec": {}})
    assert response.status_code == 201, response.text
    assert api.post(f"/organizations/{ORG}/projects", json={"metadata": {"name": "shop"}, "spec": {}}).status_code \
        == 201
    return shared_live_server

def test_apply_list_get_and_delete_a_provider_without_ever_printing_its_secret(live_server: LiveServer,
                                                                               tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    applied = ok(run_cli(live_server, "--org", ORG, "idp", "apply", "corp", "--issuer", "https://login.example.com",
                         "--client-id", "cellplane", "--client-secret-file", str(secret_file),
                         "--scope", "openid", "--scope", "email", "--scope", "groups",
                         "--group-role", "platform=admin", "--group-role", "shop-devs=developer,project=shop",
                         "--create-users"))
    assert "identity provider idpcli/corp applied (with a client secret)" in applied.stdout
    assert f"redirect URI: {live_server.url}/console/sso/callback" in applied.stdout
    listed = ok(run_cli(live_server, "--org", ORG, "idp", "list"))
    assert "corp" in listed.stdout and "shop-devs -> developer on project shop" in listed.stdout
    shown = ok(run_cli(live_server, "--org", ORG, "idp", "get", "corp"))
    assert "secret        set" in shown.stdout and "https://login.example.com" in shown.stdout
    as_json = json.loads(ok(run_cli(live_server, "--org", ORG, "idp", "get", "corp", "-o", "json")).stdout)
    assert as_json["clientSecretSet"] is True and as_json["scopes"] == ["openid", "email", "groups"]
    assert as_json["groupRoles"] == [{"group": "platform", "role": "admin"},
                                     {"group": "shop-devs", "role": "developer", "project": "shop"}]
    for result in (applied, listed, shown):
        assert SECRET not in result.stdout + result.stderr
    # applied again without a secret: the stored one is kept; from stdin: replaced
    kept = ok(run_cli(live_server, "--org", ORG, "idp", "apply", "corp", "--issuer", "https://login.example.com",
                      "--client-id", "cellplane"))
    assert "(with a client secret)" in kept.stdout
    public = ok(run_cli(live_server, "--org", ORG, "idp", "apply", "corp", "--issuer", "https://login.example.com",
                        "--client-id", "cellplane", "--public-client"))
    assert "(without a client secret)" in public.stdout
    piped = ok(run_cli(live_server, "--org", ORG, "idp", "apply", "corp", "--issuer", "https://login.example.com",
                       "--client-id", "cellplane", "--client-secret-file", "-", input="from-stdin\n"))
    assert "(with a client secret)" in piped.stdout
    prompted = ok(run_cli(live_server, "--org", ORG, "idp", "apply", "corp", "--issuer", "https://login.example.com",
                          "--client-id", "cellplane", "--client-secret-prompt", input="typed-secret\n"))
    assert "(with a client secret)" in prompted.stdout and "typed-secret" not in prompted.stdout + prompted.stderr
    assert "deleted" in ok(run_cli(live_server, "--org", ORG, "idp", "delete", "corp")).stdout
    assert "No identity providers" in ok(run_cli(live_server, "--org", ORG, "idp", "list")).stderr

def test_mistakes_are_one_line_errors(live_server: LiveServer, tmp_path: Path) -> None:
    base = ("--org", ORG, "idp", "apply", "broken", "--client-id", "c")
    line = fails(run_cli(live_server, *base, "--issuer", "https://x.example.com", "--group-role", "platform"))
    assert "GROUP=ROLE" in line
    line = fails(run_cli(live_server, *base, "--issuer", "http://login.example.com"))
    assert "issuer" in line and "https" in line
    line = fails(run_cli(live_server, *base, "--issuer", "https://x.example.com", "--group-role",
                         "g=viewer,project=nowhere"))
    assert "groupRoles[0].project" in line and "not found" in line
    line = fails(run_cli(live_server, *base, "--issuer", "https://x.example.com", "--client-secret-file",
                         str(tmp_path / "missing")))
    assert "--client-secret-file" in line
    assert "not found" in fails(run_cli(live_server, "--org", ORG, "idp", "get", "broken"))
