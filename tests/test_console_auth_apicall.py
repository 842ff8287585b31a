"""The console's in-process API call (cellplane.console.apicall) runs the API's own routes: a viewer's refused
action carries the same status, code and message as over HTTP. (No browser in this module: it uses asyncio.run.)"""

from __future__ import annotations

import asyncio

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
