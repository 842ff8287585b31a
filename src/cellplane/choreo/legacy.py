"""The older descriptors: ``.choreo/component-config.yaml`` (core.choreo.dev/v1beta1) and ``.choreo/endpoints.yaml``."""

from __future__ import annotations

from typing import Any

from cellplane.choreo.connections import service_reference
from cellplane.choreo.endpoints import add_endpoint
from cellplane.choreo.parts import Parts
from cellplane.choreo.walker import Walker, as_text, show

MAX_SOURCE_TEXT = 250  # Cellplane's limit on source.branch and source.ref


def read_component_config_yaml(w: Walker, data: dict[Any, Any]) -> Parts:
    w.known_keys(data, "", ("apiVersion", "kind", "metadata", "spec"))
    api_version = w.text(data.get("apiVersion"), "apiVersion")
    if api_version != "core.choreo.dev/v1beta1":
        w.warn("apiVersion", f"expected core.choreo.dev/v1beta1, got '{show(api_version)}'; read anyway")
    kind = w.text(data.get("kind"), "kind")
    if kind != "ComponentConfig":
        w.warn("kind", f"expected ComponentConfig, got '{show(kind)}'; read anyway")
    parts = Parts()
    spec = w.mapping(data.get("spec"), "spec")
    if not spec:
        return parts
    w.known_keys(spec, "spec", ("inbound", "outbound", "build", "image", "configurations"))
    for path, raw in w.items(spec.get("inbound"), "spec.inbound"):
        add_endpoint(w, parts, raw, path, legacy=True)
    outbound = w.mapping(spec.get("outbound"), "spec.outbound")
    if outbound:
        w.known_keys(outbound, "spec.outbound", ("serviceReferences",))
        for path, raw in w.items(outbound.get("serviceReferences"), "spec.outbound.serviceReferences"):
            service_reference(w, parts, raw, path)
    build = w.mapping(spec.get("build"), "spec.build")
    if build:
        parts.source = _build_source(w, build, "spec.build")
    for key in ("image", "configurations"):
        if spec.get(key) is not None:
            w.warn(f"spec.{key}", "not imported: Cellplane builds from source and configures in its own spec")
    return parts


def _build_source(w: Walker, build: dict[Any, Any], path: str) -> dict[str, Any] | None:
    """``spec.build`` pins a branch and optionally a commit; Cellplane takes one or the other."""
    w.known_keys(build, path, ("branch", "revision"))
    branch, revision = (_source_text(w, build, path, key) for key in ("branch", "revision"))
    if revision:
        if branch:
            w.warn(f"{path}.branch", f"Cellplane takes a branch or a ref: using revision {revision}")
        return {"ref": revision}
    return {"branch": branch} if branch else None


def _source_text(w: Walker, build: dict[Any, Any], path: str, key: str) -> str | None:
    value = w.text(build.get(key), f"{path}.{key}")
    if value and len(value) > MAX_SOURCE_TEXT:
        w.warn(f"{path}.{key}", f"longer than {MAX_SOURCE_TEXT} characters; ignored")
        return None
    return value


def read_endpoints_yaml(w: Walker, data: dict[Any, Any]) -> Parts:
    w.known_keys(data, "", ("version", "endpoints"))
    version = data.get("version")
    if version is None:
        w.warn("version", "missing (Choreo requires it); read as 0.1")
    elif (as_text(version) or "").strip() != "0.1":
        w.warn("version", f"'{show(version)}' is not a known version (0.1); read as 0.1")
    parts = Parts()
    for path, raw in w.items(data.get("endpoints"), "endpoints"):
        add_endpoint(w, parts, raw, path, legacy=True)
    return parts
