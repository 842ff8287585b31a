"""OpenChoreo documents for the tests of ``cellplane.openchoreo`` and of apply: ``openchoreo.dev/v1alpha1`` objects
in namespace ``acme`` (``metadata`` keys given replace it), a service Component of project ``shop`` and its
Workload, each naming only what a test is about."""

from __future__ import annotations

from typing import Any

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
