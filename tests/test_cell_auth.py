"""A cell listener serves only its own cell: callers must show the cell's credential, which the agent puts into
the URLs of that cell's connections and the gateway cuts off before anything else sees the path.

End to end: a real control plane and agent, echo workloads (tests/fixtures/apps/echo) in two projects: `vault`
(keeper: Project only; desk: Organization; front: Public, connected to both) and `thief` (prowler: Public,
connected to its own project's `loot`). The thief calls vault's cell listener from inside its process, with no
credential and with its own cell's; vault's front reaches both through the URLs it was given. The gateway-level
test at the end checks what a replica receives (path and headers) on real sockets.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from dataplanekit import ORG, AgentProcess, build_app, deploy, poll, service, wait_state
from gatewaykit import Harness, backend

CELL = re.compile(r"^(http://127\.0\.0\.1:\d+)/_cell/([A-Za-z0-9_-]{43})/vault/keeper/v1$")


@pytest.fixture(scope="module")
def vault(build_server: Any, dataplane: AgentProcess) -> dict[str, Any]:
    c = build_server.client
    build_app(c, "vault", "keeper", service(visibility=["Project"]))
    build_app(c, "vault", "desk", service(visibility=["Organization"]))
    build_app(c, "vault", "front", service(visibility=["Public"], dependencies=[
        {"name": "keeper", "component": "keeper"}, {"name": "desk", "component": "desk"}]))
    build_app(c, "thief", "loot", service(visibility=["Project"]))
    build_app(c, "thief", "prowler", service(visibility=["Public"], dependencies=[
        {"name": "loot", "component": "loot"}]))
    for project, name in (("vault", "keeper"), ("vault", "desk"), ("vault", "front"), ("thief", "loot"),
                          ("thief", "prowler")):
        deploy(c, project, name)
    for project, name in (("vault", "keeper"), ("vault", "desk"), ("vault", "front"), ("thief", "loot"),
                          ("thief", "prowler")):
        wait_state(c, project, name)
    gw = dataplane.gateway()
    external = gw["external"]
    keeper_url = _env(external, "vault", "front", "CHOREO_KEEPER_SERVICEURL")
    match = CELL.match(keeper_url)
    assert match, keeper_url
    base, credential = match.groups()
    assert base == gw["cells"]["vault"]  # the listener the control plane knows, without the credential
    return {"client": c, "external": external, "internal": gw["internal"], "base": base, "credential": credential,
            "cell": f"{base}/_cell/{credential}"}


def _env(external: str, project: str, component: str, name: str) -> str:
    r = httpx.get(f"{external}/{project}/{component}/v1/env", params={"name": name}, timeout=10)
    assert r.status_code == 200, r.text
    value = r.json()["value"]
    assert value, name
    return str(value)


def call(vault: dict[str, Any], caller: str, **params: str) -> dict[str, Any]:
    """Make ``caller`` (vault/front or thief/prowler, through the external listener) call a URL from its process."""
    r = httpx.get(vault["external"] + f"/{caller}/v1/call", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()



@pytest.mark.parametrize("path", ["/vault/keeper/v1/", "/vault/desk/v1/"])
def test_another_projects_workload_without_the_cell_credential_gets_403(vault: dict[str, Any], path: str) -> None:
    got = call(vault, "thief/prowler", url=vault["base"] + path)
    assert got["status"] == 403, got
    assert "no cell credential" in json.loads(got["body"])["error"]["message"]
    # its own cell's credential opens its own cell only
    loot = _env(vault["external"], "thief", "prowler", "CHOREO_LOOT_SERVICEURL")
    thief_cell = loot.removesuffix("/thief/loot/v1")
    assert call(vault, "thief/prowler", url=loot)["status"] == 200
    stolen = vault["base"] + urlsplit(thief_cell).path + path  # thief's credential on vault's listener
    got = call(vault, "thief/prowler", url=stolen)
    assert got["status"] == 403, got
    assert "not the one of project vault's cell" in json.loads(got["body"])["error"]["message"]
    got = call(vault, "thief/prowler", url=thief_cell + path)  # vault's route on thief's own listener
    assert got["status"] == 403 and "belongs to project vault" in got["body"], got


def test_a_local_process_without_the_credential_gets_403_whatever_it_tries(vault: dict[str, Any]) -> None:
    base, credential = vault["base"], vault["credential"]
    wrong = secrets.token_urlsafe(32)
    for path in ("/vault/keeper/v1/", "/vault/desk/v1/"):
        assert httpx.get(base + path, timeout=10).status_code == 403
        assert httpx.get(f"{base}/_cell/{wrong}{path}", timeout=10).status_code == 403
        assert httpx.get(base + path, headers={"Cellplane-Cell-Key": wrong}, timeout=10).status_code == 403
        assert httpx.get(f"{base}/_cell/{credential[:-1]}{path}", timeout=10).status_code == 403
        # a connection credential of the internal listener is no cell credential
        assert httpx.get(base + path, headers={"Choreo-API-Key": credential}, timeout=10).status_code == 403
        # and the Organization endpoint is no more open on the other listeners
        assert httpx.get(vault["internal"] + path, timeout=10).status_code == 403
        assert httpx.get(vault["external"] + path, timeout=10).status_code == 403


def test_the_cells_own_workload_reaches_its_endpoints_through_the_urls_it_was_given(vault: dict[str, Any]) -> None:
    for name, component in (("CHOREO_KEEPER_SERVICEURL", "keeper"), ("CHOREO_DESK_SERVICEURL", "desk")):
        got = call(vault, "vault/front", env=name)
        assert got["status"] == 200, got
        assert json.loads(got["body"])["component"] == component
    # the replica sees the path after its route, without the credential
    got = call(vault, "vault/front", env="CHOREO_KEEPER_SERVICEURL", path="/some/where?x=1")
    assert json.loads(got["body"]) == {"path": "/some/where?x=1"}
    # a client building its own URLs may send the credential as a header instead
    r = httpx.get(vault["base"] + "/vault/desk/v1/", headers={"Cellplane-Cell-Key": vault["credential"]}, timeout=10)
    assert r.status_code == 200 and r.json()["component"] == "desk"


def test_the_cell_credential_appears_in_no_access_line_span_log_or_report(vault: dict[str, Any],
                                                                          dataplane: AgentProcess,
                                                                          build_server: Any) -> None:
    c, credential = vault["client"], vault["credential"]
    trace_id = secrets.token_hex(16)
    got = call(vault, "vault/front", env="CHOREO_KEEPER_SERVICEURL", path="/traced")
    assert got["status"] == 200
    r = httpx.get(vault["external"] + "/vault/front/v1/call", params={"env": "CHOREO_KEEPER_SERVICEURL",
                                                                      "path": "/traced"},
                  headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == 200
    assert httpx.get(f"{vault['base']}/_cell/{credential}x/vault/keeper/v1/refused", timeout=10).status_code == 403

    # what reaches the control plane: access lines and the trace's spans, the paths as routed
    shipped = poll(lambda: c.get(f"{ORG}/projects/vault/components/keeper/access-logs",
                                 params={"environment": "development"}).json()["items"],
                   lambda items: any(x["path"] == "/vault/keeper/v1/traced" and x["listener"] ==
                                     "cell/development/vault" for x in items))
    trace = poll(lambda: c.get(f"{ORG}/traces/{trace_id}"), lambda r: r.status_code == 200 and
                 len(r.json()["spans"]) == 2).json()
    assert [(s["component"], s["listener"], s["name"]) for s in trace["spans"]] == [
        ("front", "external", "GET /vault/front/v1/call"), ("keeper", "cell", "GET /vault/keeper/v1/traced")]
    shown = [c.get(f"{ORG}/projects/vault/components/{name}/deployments/development").text
             for name in ("keeper", "front")]
    # the agent's own access log (written through a buffer: complete once the agent stopped): the refusal is there
    # with the credential hidden
    assert dataplane.stop() == 0
    local = [json.loads(line) for line in (dataplane.data_dir / "access.log").read_text().splitlines()]
    cell = [x for x in local if x["listener"] == "cell/development/vault"]
    assert any(x["path"] == "/vault/keeper/v1/traced" and x["status"] == 200 for x in cell)
    refused = next(x for x in cell if x["path"] == "/_cell/*/vault/keeper/v1/refused")
    assert refused["status"] == 403 and refused["decision"] == "denied"
    for text in (json.dumps(shipped), json.dumps(trace), json.dumps(local), *shown,
                 (dataplane.data_dir / "status.json").read_text(), dataplane.log(), build_server.server.log()):
        assert credential not in text
    assert (dataplane.data_dir / "cell.key").stat().st_mode & 0o777 == 0o600


# -- what the replica receives, on the gateway alone -----------------------------------------------------------


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def test_the_replica_never_sees_the_cell_credential_in_its_path_or_headers(h: Harness) -> None:
    app = h.app("keeper")
    h.routes(backend("vault", "keeper", app, visibility=("Project",)),
             backend("vault", "desk", app, visibility=("Organization",)))
    cell = h.listen("cell", "dev", "vault")
    credential = h.cell_credential("dev", "vault")
    base = cell.removesuffix(f"/_cell/{credential}")
    by_path = httpx.get(cell + "/vault/keeper/v1/a/b?c=d", headers={"X-Forwarded-For": "10.1.2.3"}).json()
    by_header = httpx.get(base + "/vault/desk/v1/e", headers={"Cellplane-Cell-Key": credential}).json()
    assert (by_path["path"], by_header["path"]) == ("/a/b?c=d", "/e")
    for seen in (by_path, by_header):
        assert credential not in json.dumps(seen)
        assert "cellplane-cell-key" not in seen["headers"]
    assert by_path["headers"]["x-forwarded-prefix"] == "/vault/keeper/v1"
    assert by_path["headers"]["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"  # a cell caller's relay is kept
    assert [(x["path"], x["status"]) for x in h.log] == [("/vault/keeper/v1/a/b", 200), ("/vault/desk/v1/e", 200)]
    # refused: without, with a wrong one, with one that only starts like it; nothing reaches the replica
    for url, headers in ((base + "/vault/keeper/v1/", {}), (f"{base}/_cell/{credential[::-1]}/vault/keeper/v1/", {}),
                         (f"{base}/_cell/{credential}x/vault/keeper/v1/", {}),
                         (base + "/vault/keeper/v1/", {"Cellplane-Cell-Key": credential + "x"})):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", url
    assert app.requests == 2
    refused = h.log[2:]
    assert [x["decision"] for x in refused] == ["denied"] * 4
    assert [x["path"] for x in refused] == ["/vault/keeper/v1/", "/_cell/*/vault/keeper/v1/",
                                            "/_cell/*/vault/keeper/v1/", "/vault/keeper/v1/"]
    assert credential not in json.dumps(h.log) and credential[::-1] not in json.dumps(h.log)


def test_a_gateway_worker_process_checks_the_cell_credential_too() -> None:
    h = Harness(workers=1)
    try:
        app = h.app("keeper")
        h.routes(backend("vault", "keeper", app, visibility=("Project",)))
        cell = h.listen("cell", "dev", "vault")
        base = cell.removesuffix(f"/_cell/{h.cell_credential('dev', 'vault')}")
        own = h.call(h.gateway.new_request_id).decode().rsplit("-", 1)[0]

        def fan_out(url: str) -> list[int]:
            def one(_: int) -> int:
                with httpx.Client(timeout=10) as c:
                    return c.get(url).status_code

            with ThreadPoolExecutor(24) as pool:
                return list(pool.map(one, range(24)))

        rounds = 0
        while rounds < 10:  # new connections go to whichever process accepts first
            rounds += 1
            assert fan_out(base + "/vault/keeper/v1/") == [403] * 24
            assert fan_out(cell + "/vault/keeper/v1/") == [200] * 24
            time.sleep(0.2)  # the worker's access-log entries reach the agent's gateway within 50 ms
            by_worker = {(x["status"], x["path"]) for x in h.log if not x["request_id"].startswith(own + "-")}
            if by_worker == {(403, "/vault/keeper/v1/"), (200, "/vault/keeper/v1/")}:
                break
        else:
            raise AssertionError(f"the worker did not serve both kinds of request: {by_worker}")
        assert app.requests == 24 * rounds  # none of the refused ones
    finally:
        h.close()
