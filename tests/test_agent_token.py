"""A data plane's agent token (role dataplane-agent on one data plane), through the real API: what it may do (its own
data plane's agent calls) and everything it may not (user APIs, other data planes, other artifacts, more tokens);
how it is made and revoked; and `cellplane admin recover-token`, the break-glass way back to an admin token."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.sealing import public_key_text
from liveserver import LiveServer, fails, ok, run_cli, start_server

ORG = "/organizations/default"
PLANE = f"{ORG}/dataplanes/edge"
DIGEST = "sha256:" + "0" * 64


def agent_token(admin: httpx.Client, plane: str = "edge", **body: object) -> dict[str, object]:
    r = admin.post(f"{ORG}/dataplanes/{plane}/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def registration() -> dict[str, str]:
    return {"agentId": "agent-1", "publicKey": public_key_text(X25519PrivateKey.generate())}


def test_an_agent_token_does_its_data_planes_calls_and_nothing_else(live_server: LiveServer) -> None:
    admin = live_server.client()
    assert admin.post(f"{ORG}/projects", json={"metadata": {"name": "agentless"}}).status_code == 201
    issued = agent_token(admin)
    assert issued["user"] == "dataplane:default:edge" and str(issued["token"]).startswith("cpt_")
    assert admin.get(PLANE).json()["spec"]["type"] == "local"  # made with the token, by the admin
    agent = live_server.client(str(issued["token"]))

    # its own data plane's calls
    r = agent.put(PLANE + "/agent", json={**registration(), "bindUnbound": True})
    assert r.status_code == 200, r.text
    assert r.json()["environments"] == []  # binding environments is the admin's decision, not the agent's
    assert agent.get(PLANE + "/desired-state", params={"wait": 0}).status_code == 200
    assert agent.put(PLANE + "/status", json={"agentId": "agent-1"}).status_code == 200
    assert agent.post(PLANE + "/logs", json={"lines": []}).json() == {"accepted": 0}
    assert agent.post(PLANE + "/task-runs", json={"runs": []}).status_code == 200
    for path, key in (("access-logs", "lines"), ("metrics", "points"), ("spans", "spans")):
        assert agent.post(f"{PLANE}/{path}", json={key: []}).status_code == 200, path
    # an artifact its desired state does not run is not found (the digest of any project's artifact is no key)
    r = agent.get(f"{PLANE}/artifacts/agentless/{DIGEST}")
    assert r.status_code == 404 and "not in the desired state" in r.json()["error"]["message"]

    # nothing a user does: read configuration, create, list, read the organization's resources, make tokens
    refused = {
        "read configuration": agent.get(f"{ORG}/projects/agentless/components/x/config"),
        "create a project": agent.post(f"{ORG}/projects", json={"metadata": {"name": "by-agent"}}),
        "list projects": agent.get(f"{ORG}/projects"),
        "get a project": agent.get(f"{ORG}/projects/agentless"),
        "list environments": agent.get(f"{ORG}/environments"),
        "get its data plane": agent.get(PLANE),
        "update its data plane": agent.put(PLANE, json={"metadata": {"name": "edge"}, "spec": {"type": "local"}}),
        "download an artifact": agent.get(f"{ORG}/projects/agentless/artifacts/{DIGEST}"),
        "make a token": agent.post(f"/users/{issued['user']}/tokens", json={"name": "more"}),
        "make an agent token": agent.post(f"{PLANE}/tokens", json={}),
        "grant a role": agent.post(f"{ORG}/rolebindings", json={"user": "admin", "role": "viewer"}),
        "create a user": agent.post("/users", json={"name": "mallory"}),
    }
    for what, r in refused.items():
        assert r.status_code == 403, f"{what}: {r.status_code} {r.text}"
        assert r.json()["error"]["code"] == "forbidden", what
    assert "by-agent" not in [p["metadata"]["name"] for p in admin.get(f"{ORG}/projects").json()["items"]]
    assert agent.get("/whoami").json()["roles"] == [
        {"role": "dataplane-agent", "organization": "default", "project": None, "environment": None}]

    # another data plane of the same organization is not its own
    agent_token(admin, "other")
    for r in (agent.put(f"{ORG}/dataplanes/other/agent", json=registration()),
              agent.get(f"{ORG}/dataplanes/other/desired-state", params={"wait": 0}),
              agent.post(f"{ORG}/dataplanes/other/logs", json={"lines": []})):
        assert r.status_code == 403, r.text
        assert "dataplanes:update" in r.json()["error"]["message"]


def test_only_an_admin_makes_agent_tokens_and_the_role_is_never_granted(live_server: LiveServer) -> None:
    admin = live_server.client()
    assert admin.post("/users", json={"name": "dev-of-planes"}).status_code == 201
    token = admin.post("/users/dev-of-planes/tokens", json={"name": "t"}).json()["token"]
    assert admin.post(f"{ORG}/rolebindings", json={"user": "dev-of-planes", "role": "developer"}).status_code == 201
    dev = live_server.client(token)
    r = dev.post(f"{ORG}/dataplanes/edge2/tokens", json={})
    assert r.status_code == 403 and "dataplanes:update" in r.json()["error"]["message"]
    r = admin.post(f"{ORG}/rolebindings", json={"user": "dev-of-planes", "role": "dataplane-agent"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "role", r.text
    issued = agent_token(admin, "edge2")
    r = admin.post(f"{ORG}/rolebindings", json={"user": issued["user"], "role": "admin"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "user", r.text
    bindings = [b for b in admin.get(f"{ORG}/rolebindings").json()["items"] if b["user"] == issued["user"]]
    assert [(b["role"], b["dataplane"]) for b in bindings] == [("dataplane-agent", "edge2")]
    events = admin.get("/audit", params={"kind": "DataPlane", "limit": 1000}).json()["items"]
    assert any(e["action"] == "dataplane.token" and e["name"] == "edge2" and e["outcome"] == "succeeded"
               for e in events)


def test_a_revoked_agent_token_or_a_deleted_data_plane_stops_the_agent(live_server: LiveServer) -> None:
    admin = live_server.client()
    first, second = agent_token(admin, "edge3"), agent_token(admin, "edge3")
    a1, a2 = live_server.client(str(first["token"])), live_server.client(str(second["token"]))
    assert a1.put(f"{ORG}/dataplanes/edge3/agent", json=registration()).status_code == 200
    assert admin.delete(f"/tokens/{first['id']}").status_code == 200
    assert a1.put(f"{ORG}/dataplanes/edge3/status", json={"agentId": "a"}).status_code == 401
    assert a2.put(f"{ORG}/dataplanes/edge3/status", json={"agentId": "a"}).status_code == 200  # the other still works
    assert admin.delete(f"{ORG}/dataplanes/edge3").status_code == 200
    assert admin.post(f"{ORG}/dataplanes", json={"metadata": {"name": "edge3"}, "spec": {"type": "local"}}
                      ).status_code == 201
    r = a2.put(f"{ORG}/dataplanes/edge3/status", json={"agentId": "a"})  # a namesake inherits no agent
    assert r.status_code == 403, r.text


def test_the_dataplane_token_command_writes_a_private_token_file(live_server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "agent.token"
    result = ok(run_cli(live_server, "dataplane", "token", "--name", "edge4", "--output", str(path)))
    assert result.stdout == "" and "written to" in result.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    agent = live_server.client(path.read_text().strip())
    assert agent.put(f"{ORG}/dataplanes/edge4/agent", json=registration()).status_code == 200
    line = fails(run_cli(live_server, "dataplane", "token", "--name", "edge4", token=path.read_text().strip()))
    assert "dataplanes:update" in line


def test_recover_token_makes_a_working_audited_admin_token_from_the_data_directory(tmp_path: Path) -> None:
    live_server = start_server(tmp_path / "cp")  # its own: this test revokes the bootstrap admin token
    try:
        _recover(live_server, tmp_path)
    finally:
        live_server.stop()


def _recover(live_server: LiveServer, tmp_path: Path) -> None:
    admin = live_server.client()
    bootstrap = next(t for t in admin.get("/users/admin/tokens").json()["items"] if t["name"] == "bootstrap")
    spare = admin.post("/users/admin/tokens", json={"name": "spare"}).json()["token"]  # to look on afterwards
    assert admin.delete(f"/tokens/{bootstrap['id']}").status_code == 200
    assert live_server.client().get("/whoami").status_code == 401  # admin.token is dead: no admin token on disk

    printed = ok(run_cli(None, "admin", "recover-token", "--data-dir", str(live_server.data_dir)))
    token = printed.stdout.strip()
    assert token.startswith("cpt_") and printed.stdout.count("\n") == 1
    me = live_server.client(token).get("/whoami").json()
    assert me["user"] == "admin" and me["superuser"] is True
    out = tmp_path / "admin.token"
    ok(run_cli(None, "admin", "recover-token", "--data-dir", str(live_server.data_dir), "--user", "rescuer",
               "--output", str(out)))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    rescuer = live_server.client(out.read_text().strip())
    assert rescuer.post("/organizations", json={"metadata": {"name": "rescued"}}).status_code == 201

    events = live_server.client(spare).get("/audit", params={"limit": 1000}).json()["items"]
    recovered = [e for e in events if e["action"] == "token.recover"]
    assert {e["name"] for e in recovered} == {"admin", "rescuer"}
    assert all(e["actor"].startswith("recover-token:") and e["outcome"] == "succeeded" for e in recovered)

    # not a way to make anyone else a platform administrator, nor to work without the data directory
    assert live_server.client(spare).post("/users", json={"name": "plain"}).status_code == 201
    line = fails(run_cli(None, "admin", "recover-token", "--data-dir", str(live_server.data_dir), "--user", "plain"))
    assert "not an enabled platform administrator" in line
    line = fails(run_cli(None, "admin", "recover-token", "--data-dir", str(tmp_path / "nowhere")))
    assert "no such directory" in line
