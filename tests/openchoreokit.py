"""OpenChoreo documents for the tests of ``cellplane.openchoreo`` and of apply: ``openchoreo.dev/v1alpha1`` objects
in namespace ``acme`` (``metadata`` keys given replace it), a service Component of project ``shop`` and its
Workload, each naming only what a test is about; the API's error of a refused apply."""

from __future__ import annotations

from typing import Any

import httpx

OC = "openchoreo.dev/v1alpha1"


def oc(kind: str, name: str, spec: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": OC, "kind": kind, "metadata": {"name": name, "namespace": "acme", **metadata},
            "spec": spec or {}}


def component(name: str = "orders", **spec: Any) -> dict[str, Any]:
    return oc("Component", name, {"owner": {"projectName": "shop"},
                                  "componentType": {"kind": "ClusterComponentType", "name": "deployment/service"},
                                  **spec})


def workload(name: str = "orders", **spec: Any) -> dict[str, Any]:
    return oc("Workload", f"{name}-workload", {"owner": {"projectName": "shop", "componentName": name},
                                              "container": {"image": "ghcr.io/acme/orders:1"}, **spec})


def error_of(r: httpx.Response, status: int | None = 422) -> dict[str, Any]:
    """The API's error of a refused apply (``status``; None: any error status), in its one shape."""
    if status is None:
        assert r.status_code >= 400, r.text
    else:
        assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    error: dict[str, Any] = body["error"]
    return error
