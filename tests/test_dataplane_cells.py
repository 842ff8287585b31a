"""Cells end to end: two projects, Public / Organization / Project endpoints, connections — who reaches what.

Real control plane, real agent, real processes built from tests/fixtures/apps/echo, real HTTP through
the gateway's listeners. Each assertion goes through the URL a workload was given (or the listener a
person would use), never around the gateway.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dataplanekit import ORG, AgentProcess, build_app, deploy, deployment, logs, service, wait_state
from liveserver import run_cli

SECRET = "s3cr3t-Value-nobody-may-see"


@pytest.fixture(scope="module")
def cells(build_server: Any, dataplane: AgentProcess) -> dict[str, Any]:
    c = build_server.client
    # sales: orders (Organization), ledger (Project only, reached by orders through the sales cell)
    build_app(c, "sales", "ledger", service(visibility=["Project"]))
    build_app(c, "sales", "orders", service(visibility=["Organization"], dependencies=[
        {"name": "ledger", "component": "ledger"}]))
    # shop: cart (Project), front (Public) with connections to cart and to sales/orders
    build_app(c, "shop", "cart", service(visibility=["Project"]))
    build_app(c, "shop", "front", service(visibility=["Public"], dependencies=[
        {"name": "cart", "component": "cart"},
        {"name": "orders", "component": "orders", "project": "sales", "endpoint": "api"},
    ], configuration={"env": [{"name": "GREETING", "value": "hello"},
                              {"name": "DB_PASSWORD", "value": SECRET, "secret": True}],
                      "files": [{"name": "conf", "mountPath": "/tmp/cellplane-test-conf/app.json",
                                 "content": '{"mode": "test"}'}]}))
    # shop: broken depends on sales' Project-only ledger: it must not start
    build_app(c, "shop", "broken", service(visibility=["Public"], dependencies=[
        {"name": "ledger", "component": "ledger", "project": "sales"}]))
    for project, name in (("sales", "ledger"), ("sales", "orders"), ("shop", "cart"), ("shop", "front"),
                          ("shop", "broken")):
        deploy(c, project, name)
    for project, name in (("sales", "ledger"), ("sales", "orders"), ("shop", "cart"), ("shop", "front")):
        wait_state(c, project, name)
    gw = dataplane.gateway()
    return {"client": c, "external": gw["external"], "internal": gw["internal"], "cells": gw["cells"]}


def call(cells: dict[str, Any], **params: str) -> dict[str, Any]:
    """Ask shop/front (through the external listener) to make a call from inside its process."""
    r = httpx.get(cells["external"] + "/shop/front/v1/call", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_public_endpoint_is_reachable_through_the_external_listener(cells: dict[str, Any]) -> None:
    r = httpx.get(cells["external"] + "/shop/front/v1/", timeout=10)
    assert r.status_code == 200
    assert r.json()["component"] == "front"
    assert r.json()["greeting"] == "hello"
    # the path the workload sees is the remainder after /{project}/{component}/{version}
    assert httpx.get(cells["external"] + "/shop/front/v1/some/thing?x=1", timeout=10).json()["path"] == \
        "/some/thing?x=1"


@pytest.mark.parametrize("path", ["/sales/orders/v1/", "/shop/cart/v1/", "/sales/ledger/v1/"])
def test_external_listener_refuses_what_is_not_public(cells: dict[str, Any], path: str) -> None:
    r = httpx.get(cells["external"] + path, timeout=10)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["message"]


def test_unknown_route_is_404(cells: dict[str, Any]) -> None:
    assert httpx.get(cells["external"] + "/shop/nothing/v1/", timeout=10).status_code == 404


def test_same_project_connection_goes_through_the_cell(cells: dict[str, Any]) -> None:
    got = call(cells, env="CHOREO_CART_SERVICEURL")
    assert got["status"] == 200, got
    assert '"component": "cart"' in got["body"]
    # the URL the workload was given is its own cell's listener
    url = call(cells, url=cells["external"] + "/shop/front/v1/env?name=CHOREO_CART_SERVICEURL")
    assert cells["cells"]["shop"] in url["body"]


def test_organization_endpoint_needs_the_connection_credentials(cells: dict[str, Any]) -> None:
    with_key = call(cells, env="CHOREO_ORDERS_SERVICEURL", key="CHOREO_ORDERS_CHOREOAPIKEY")
    assert with_key["status"] == 200, with_key
    assert '"component": "orders"' in with_key["body"]
    without = call(cells, env="CHOREO_ORDERS_SERVICEURL")
    assert without["status"] == 403, without
    # nobody else gets in through the internal listener without credentials either
    assert httpx.get(cells["internal"] + "/sales/orders/v1/", timeout=10).status_code == 403
    assert httpx.get(cells["internal"] + "/sales/orders/v1/",
                     headers={"Choreo-API-Key": "not-a-key"}, timeout=10).status_code == 403


def test_oauth_token_from_the_token_url_works(cells: dict[str, Any]) -> None:
    env = {name: call(cells, url=cells["external"] + f"/shop/front/v1/env?name={name}")["body"]
           for name in ("CHOREO_ORDERS_CONSUMERKEY", "CHOREO_ORDERS_CONSUMERSECRET", "CHOREO_ORDERS_TOKENURL",
                        "CHOREO_ORDERS_SERVICEURL")}
    import json

    values = {k: json.loads(v)["value"] for k, v in env.items()}
    token = httpx.post(values["CHOREO_ORDERS_TOKENURL"], data={"grant_type": "client_credentials"},
                       auth=(values["CHOREO_ORDERS_CONSUMERKEY"], values["CHOREO_ORDERS_CONSUMERSECRET"]), timeout=10)
    assert token.status_code == 200, token.text
    r = httpx.get(values["CHOREO_ORDERS_SERVICEURL"] + "/",
                  headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=10)
    assert r.status_code == 200, r.text
    # a grant is for one target: the same token does not open the other project's Project endpoint
    r = httpx.get(cells["internal"] + "/sales/ledger/v1/",
                  headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=10)
    assert r.status_code == 403


def test_project_endpoint_of_another_project_is_refused_in_the_cell(cells: dict[str, Any]) -> None:
    # shop's cell listener does not route sales' endpoints, even for shop's own workloads (its credential in the URL)
    shop_cell = _value(cells, "CHOREO_CART_SERVICEURL").removesuffix("/shop/cart/v1")
    got = call(cells, url=shop_cell + "/sales/ledger/v1/")
    assert got["status"] == 403 and "belongs to project sales" in got["body"], got
    # while sales/orders reaches its own project's ledger through the sales cell
    r = httpx.get(cells["internal"] + "/sales/orders/v1/call", params={"env": "CHOREO_LEDGER_SERVICEURL"},
                  headers={"Choreo-API-Key": _value(cells, "CHOREO_ORDERS_CHOREOAPIKEY")}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == 200 and '"component": "ledger"' in r.json()["body"]


def _value(cells: dict[str, Any], name: str) -> str:
    import json

    return json.loads(call(cells, url=cells["external"] + f"/shop/front/v1/env?name={name}")["body"])["value"]


def test_unresolved_dependency_blocks_the_deployment(cells: dict[str, Any]) -> None:
    d = wait_state(cells["client"], "shop", "broken", states=("blocked",))
    assert d["state"] == "blocked"
    assert "ledger" in d["message"] and "sales" in d["message"]
    assert httpx.get(cells["external"] + "/shop/broken/v1/", timeout=10).status_code in (404, 503)


def test_secret_reaches_the_process_and_nowhere_else(cells: dict[str, Any], build_server: Any,
                                                     dataplane: AgentProcess) -> None:
    assert _value(cells, "DB_PASSWORD") == SECRET
    c = cells["client"]
    assert SECRET not in c.get(f"{ORG}/projects/shop/components/front").text
    assert SECRET not in c.get(f"{ORG}/projects/shop/components/front/deployments/development").text
    assert SECRET not in (dataplane.data_dir / "desired.json").read_text()
    assert SECRET.encode() not in (build_server.server.data_dir / "cellplane.db").read_bytes()
    assert SECRET not in dataplane.log()
    assert SECRET not in build_server.server.log()


def test_configuration_file_is_mounted(cells: dict[str, Any]) -> None:
    value = _value(cells, "CELLPLANE_FILE_CONF")
    assert value
    got = httpx.get(cells["external"] + "/shop/front/v1/file", params={"path": value}, timeout=10)
    assert got.json()["content"] == '{"mode": "test"}'


def test_endpoints_and_deployments_show_urls(cells: dict[str, Any], build_server: Any) -> None:
    c = cells["client"]
    d = deployment(c, "shop", "front")
    urls = d["endpoints"][0]["urls"]
    assert urls["external"] == cells["external"] + "/shop/front/v1"
    eps = c.get(f"{ORG}/endpoints", params={"environment": "development"}).json()["items"]
    orders = next(e for e in eps if e["component"] == "orders")
    assert orders["urls"]["external"] is None and orders["urls"]["internal"] == cells["internal"] + "/sales/orders/v1"
    out = run_cli(build_server.server, "get", "endpoints", "--env", "development")
    assert out.returncode == 0, out.stderr
    assert cells["external"] + "/shop/front/v1" in out.stdout


def test_workload_logs_reach_the_control_plane(cells: dict[str, Any]) -> None:
    import time

    deadline = time.monotonic() + 20
    while True:
        lines = [x["line"] for x in logs(cells["client"], "shop", "front")]
        if any("echo listening on" in line for line in lines):
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.3)
