"""The console's in-process API call (cellplane.console.apicall) runs the API's own routes: a viewer's refused
action carries the same status, code and message as over HTTP. (No browser in this module: it uses asyncio.run.)"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request

from cellplane.console.apicall import Api, ApiProblem
from cellplane.controlplane.api.app import create_app
from cellplane.controlplane.rbac import Binding, Principal
from consolekit import make_user
from liveserver import LiveServer


def test_a_viewer_gets_the_apis_own_refusal_through_the_console_call(live_server: LiveServer) -> None:
    """The in-process call runs the same route as the API: same status, same message."""
    viewer = make_user(live_server, "vera", role="viewer")
    body = {"apiVersion": "cellplane.dev/v1alpha1", "kind": "Project", "metadata": {"name": "forbidden-fruit"},
            "spec": {}}
    over_http = live_server.client(viewer.token).post("/organizations/default/projects", json=body)
    assert over_http.status_code == 403
    app = create_app(live_server.data_dir.parent / "inprocess")
    api = Api(app, Principal("vera", bindings=[Binding("b1", "viewer", "default")]))

    async def attempt() -> ApiProblem:
        try:
            await api.send("POST", "/organizations/default/projects", body)
        except ApiProblem as e:
            return e
        raise AssertionError("the viewer's create was accepted")

    problem = asyncio.run(attempt())
    assert problem.status == 403
    assert problem.message == over_http.json()["error"]["message"]
    assert problem.code == over_http.json()["error"]["code"]


TINY = FastAPI()


@TINY.get("/api/v1/echo")
async def echo(request: Request, q: str = "", n: int = 0) -> dict[str, object]:
    return {"user": request.scope["cellplane.principal"].user, "q": q, "n": n, "query": request.url.query}


@TINY.get("/api/v1/boom")
async def boom() -> None:
    raise RuntimeError("boom")


def test_the_call_passes_the_principal_and_the_query_and_a_crash_becomes_a_500_problem() -> None:
    api = Api(TINY, Principal("ada"))

    async def calls() -> tuple[object, ApiProblem]:
        echoed = await api.get("/echo", q="a b&c", n=3, skipped=None)
        try:
            await api.get("/boom")
        except ApiProblem as e:
            return echoed, e
        raise AssertionError("no problem raised")

    echoed, crash = asyncio.run(calls())
    assert echoed == {"user": "ada", "q": "a b&c", "n": 3, "query": "q=a+b%26c&n=3"}
    assert crash.status == 500 and crash.code == "internal" and "log" in crash.message
