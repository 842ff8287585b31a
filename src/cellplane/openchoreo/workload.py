"""A Workload's parts (endpoints, connections, env, files, start command) as parts of a Cellplane Component spec.

OpenChoreo describes what a component needs to run in a Workload, kept apart from the Component; Cellplane keeps
it in the Component's spec. The same pieces come in two spellings: the ``Workload`` resource (``spec.container``
with ``env[].key``, ``spec.endpoints`` as a map) and the descriptor a repository carries (``workload.yaml``:
``configurations.env[].name``, ``endpoints`` as a list). ``Parts`` collects them from either; the callers walk
their own spelling. Pure, linear in the document's size.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from cellplane.openchoreo.reader import Reader

# OpenChoreo endpoint types (any case) -> Cellplane's. OpenChoreo calls REST "HTTP".
ENDPOINT_TYPES = {"http": "REST", "rest": "REST", "graphql": "GraphQL", "websocket": "WebSocket", "grpc": "gRPC",
                  "tcp": "TCP", "udp": "UDP"}
HTTP_TYPES = {"REST", "GraphQL", "WebSocket"}
# OpenChoreo visibility -> Cellplane's. Every endpoint is visible to its project in both.
VISIBILITIES = {"project": "Project", "namespace": "Organization", "internal": "Organization", "external": "Public"}
CONNECTION_VISIBILITIES = ("project", "namespace")


@dataclass
class Parts:
    """Pieces of a Component spec, in the order they were read."""

    endpoints: list[dict[str, Any]] = field(default_factory=list)
    dependencies: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    run: str | None = None

    def spec(self) -> dict[str, Any]:
        """The Component spec fields these parts fill (only those given)."""
        out: dict[str, Any] = {}
        if self.endpoints:
            out["endpoints"] = self.endpoints
        if self.dependencies:
            out["dependencies"] = self.dependencies
        configuration = {k: v for k, v in (("env", self.env), ("files", self.files)) if v}
        if configuration:
            out["configuration"] = configuration
        if self.run:
            out["build"] = {"run": self.run}
        return out


def endpoint(r: Reader, parts: Parts, name: Any, data: dict[Any, Any], path: str, *, schema_file: bool) -> None:
    """One endpoint; ``schema_file``: the descriptor's ``schemaFile`` (a path) rather than the resource's inline
    ``schema``. The process listens on ``targetPort`` (default ``port``), which is what Cellplane's gateway calls."""
    known = ["displayName", "port", "targetPort", "type", "basePath", "visibility"]
    known += ["name", "schemaFile", "context"] if schema_file else ["schema"]
    r.fields(data, path, known)
    at = f"spec.endpoints[{len(parts.endpoints)}]"
    r.origin(at, path)
    r.origin(f"{at}.name", f"{path}.name" if schema_file else path)
    given_type = r.text(data.get("type"), f"{path}.type", required=True)
    kind = ENDPOINT_TYPES.get(given_type.lower()) if given_type else None
    if given_type and kind is None:
        r.fail(f"{path}.type", f"'{given_type}' is not one of HTTP, GraphQL, Websocket, gRPC, TCP, UDP")
    port = r.port(data.get("port"), f"{path}.port", required=True)
    target = r.port(data.get("targetPort"), f"{path}.targetPort")
    if port and target and target != port:
        r.warn(f"{path}.port", f"the service port {port} has no equivalent (Cellplane's gateway calls the process "
               f"directly); the endpoint is the process's port, targetPort {target}")
    r.origin(f"{at}.port", f"{path}.targetPort" if target else f"{path}.port")
    out: dict[str, Any] = {"name": name, "port": target or port, "type": kind or "REST"}
    display = r.text(data.get("displayName"), f"{path}.displayName")
    if display:
        out["displayName"] = display[:200]
    base = r.text(data.get("basePath"), f"{path}.basePath") or (
        r.text(data.get("context"), f"{path}.context") if schema_file else None)
    if base and base != "/":
        if kind in HTTP_TYPES:
            out["basePath"] = base if base.startswith("/") else "/" + base
            r.origin(f"{at}.basePath", f"{path}.basePath")
        else:
            r.warn(f"{path}.basePath", f"a {kind} endpoint has no base path in Cellplane; ignored")
    visibility = ["Project"]
    for vpath, v in r.items(data.get("visibility"), f"{path}.visibility"):
        word = r.text(v, vpath, required=True)
        mapped = VISIBILITIES.get(word) if word else None
        if word and mapped is None:
            r.fail(vpath, f"'{word}' is not one of project, namespace, internal, external")
        elif word == "internal":
            r.warn(vpath, "Cellplane has no visibility across organizations; read as Organization")
        if mapped and mapped not in visibility:
            visibility.append(mapped)
    out["visibility"] = visibility
    if schema_file:
        contract = r.text(data.get("schemaFile"), f"{path}.schemaFile")
        if contract:
            clean = contract.removeprefix("./")
            if clean.startswith("/") or ".." in clean.split("/"):
                r.warn(f"{path}.schemaFile", f"'{contract}' leaves the component's source; not imported")
            else:
                out["contract"] = clean
    elif data.get("schema") is not None:
        r.warn(f"{path}.schema", "an inline API definition has no equivalent (Cellplane reads an endpoint's "
               "contract from a file in the source: spec.endpoints[].contract); ignored")
    parts.endpoints.append(out)


def connection(r: Reader, parts: Parts, raw: Any, path: str) -> None:
    """A connection to another component's endpoint: a dependency whose address is injected as ``ServiceURL``."""
    data = r.mapping(raw, path, required=True)
    if data is None:
        return
    r.fields(data, path, ("project", "component", "name", "visibility", "envBindings"))
    component = r.name(data.get("component"), f"{path}.component", required=True)
    target = r.name(data.get("name"), f"{path}.name", required=True)
    project = r.name(data.get("project"), f"{path}.project")
    visibility = r.text(data.get("visibility"), f"{path}.visibility")
    if visibility and visibility not in CONNECTION_VISIBILITIES:
        r.fail(f"{path}.visibility", f"'{visibility}' is not one of project, namespace")
    bindings = r.mapping(data.get("envBindings"), f"{path}.envBindings") or {}
    r.fields(bindings, f"{path}.envBindings", ("address", "host", "port", "basePath"))
    if component is None or target is None:
        return
    at = f"spec.dependencies[{len(parts.dependencies)}]"
    r.origin(at, path)
    taken = {d["name"] for d in parts.dependencies}
    name = component if component not in taken else f"{component}-{target}"[:63].rstrip("-")
    dep: dict[str, Any] = {"name": name, "component": component, "endpoint": target, "env": []}
    if project:
        dep["project"] = project
    address = r.text(bindings.get("address"), f"{path}.envBindings.address")
    if address:
        dep["env"].append({"from": "ServiceURL", "to": address})
        r.origin(f"{at}.env[0]", f"{path}.envBindings.address")
        r.origin(f"{at}.env[0].to", f"{path}.envBindings.address")
    for key in ("host", "port", "basePath"):
        if bindings.get(key):
            r.warn(f"{path}.envBindings.{key}", "no equivalent in Cellplane (a connection injects the whole URL, "
                   "envBindings.address); ignored")
    parts.dependencies.append(dep)


def env_var(r: Reader, parts: Parts, raw: Any, path: str, key_field: str) -> None:
    """An environment variable: a value, or a secret reference whose value cannot come along."""
    data = r.mapping(raw, path, required=True)
    if data is None:
        return
    r.fields(data, path, (key_field, "value", "valueFrom"))
    name = r.text(data.get(key_field), f"{path}.{key_field}", required=True)
    value = data.get("value")
    if value is not None and not isinstance(value, str):
        value = _scalar_text(r, value, f"{path}.value")
    r.origin(f"spec.configuration.env[{len(parts.env)}]", path)
    r.origin(f"spec.configuration.env[{len(parts.env)}].name", f"{path}.{key_field}")
    out: dict[str, Any] = {"name": name}
    _value(r, data, path, value, out, "value", str(name))
    parts.env.append(out)


def file_var(r: Reader, parts: Parts, raw: Any, path: str, key_field: str) -> None:
    """A file: OpenChoreo mounts it at ``<mountPath>/<key>``; Cellplane names the whole path."""
    data = r.mapping(raw, path, required=True)
    if data is None:
        return
    r.fields(data, path, (key_field, "mountPath", "value", "valueFrom"))
    key = r.text(data.get(key_field), f"{path}.{key_field}", required=True)
    mount = r.text(data.get("mountPath"), f"{path}.mountPath", required=True)
    value = r.text(data.get("value"), f"{path}.value")
    if key is None or mount is None:
        return
    at = f"spec.configuration.files[{len(parts.files)}]"
    r.origin(at, path)
    r.origin(f"{at}.mountPath", f"{path}.mountPath")
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", key.lower())).strip("-")[:63].strip("-") or "file"
    out: dict[str, Any] = {"name": name, "mountPath": mount.rstrip("/") + "/" + key}
    _value(r, data, path, value, out, "content", f"file:{name}")
    parts.files.append(out)


def _value(r: Reader, data: dict[Any, Any], path: str, value: str | None, out: dict[str, Any], field: str,
           setting: str) -> None:
    """An env entry's or a file's ``value`` (as ``out[field]``), or its ``valueFrom``: a secret reference makes it
    a secret without a value (a warning naming the ``cellplane config set`` of ``setting`` that gives it), content
    read from the repository at build time (older releases' ``path``) has no equivalent (a warning)."""
    source = r.mapping(data.get("valueFrom"), f"{path}.valueFrom")
    if source is None:
        if value is not None:
            out[field] = value
        return
    if value is not None:
        r.fail(f"{path}.valueFrom", "value and valueFrom are mutually exclusive")
    secret = _secret_ref(r, source, f"{path}.valueFrom")
    if secret:
        out["secret"] = True
        r.warn(f"{path}.valueFrom.secretKeyRef", f"the {field} is in secret {secret}, which is not imported: set it "
               f"with `cellplane config set COMPONENT {setting}=... --secret`")
    elif source.get("path"):
        r.warn(f"{path}.valueFrom.path", f"the {field} read from the repository at build time has no equivalent; give "
               "it inline, or set it with `cellplane config set`")


def _secret_ref(r: Reader, source: dict[Any, Any], path: str) -> str | None:
    r.fields(source, path, ("secretKeyRef", "path"))
    ref = r.mapping(source.get("secretKeyRef"), f"{path}.secretKeyRef")
    if ref is None:
        return None
    r.fields(ref, f"{path}.secretKeyRef", ("name", "key"))
    name = r.text(ref.get("name"), f"{path}.secretKeyRef.name", required=True)
    key = r.text(ref.get("key"), f"{path}.secretKeyRef.key", required=True)
    return f"'{name}' key '{key}'"


def _scalar_text(r: Reader, value: Any, path: str) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    r.fail(path, f"expected a string, got a {type(value).__name__}")
    return None


def container(r: Reader, parts: Parts, raw: Any, path: str) -> None:
    """``spec.container`` of a Workload: the image is what OpenChoreo runs; Cellplane builds from source and runs
    the build's artifact, so the image is only noted; command and args become the start command."""
    data = r.mapping(raw, path, required=True)
    if data is None:
        return
    r.fields(data, path, ("image", "command", "args", "env", "files"))
    image = r.text(data.get("image"), f"{path}.image")
    if image:
        r.warn(f"{path}.image", f"'{image[:80]}' is not used: Cellplane builds the component from its source "
               "(spec.workflow of the Component) and runs what the build made")
    words: list[str] = []
    for key in ("command", "args"):
        for wpath, word in r.items(data.get(key), f"{path}.{key}"):
            text = word if isinstance(word, str) else _scalar_text(r, word, wpath)
            if text is not None:
                words.append(text)
    if words:
        parts.run = shlex.join(words)
        r.origin("spec.build.run", f"{path}.command")
    for epath, item in r.items(data.get("env"), f"{path}.env"):
        env_var(r, parts, item, epath, "key")
    for fpath, item in r.items(data.get("files"), f"{path}.files"):
        file_var(r, parts, item, fpath, "key")


def resources_dependencies(r: Reader, raw: Any, path: str) -> None:
    """Project-bound Resources (databases, caches) have no Cellplane equivalent: one warning each."""
    for rpath, item in r.items(raw, path):
        data = r.mapping(item, rpath, required=True)
        if data is None:
            continue
        r.fields(data, rpath, ("ref", "envBindings", "fileBindings"))
        ref = r.text(data.get("ref"), f"{rpath}.ref", required=True)
        r.warn(rpath, f"resource '{ref}' is not imported: Cellplane has no project-bound resources; declare its "
               "address as configuration.env, or as a dependency with an external url")


def dependencies(r: Reader, parts: Parts, raw: Any, path: str) -> None:
    data = r.mapping(raw, path)
    if data is None:
        return
    r.fields(data, path, ("endpoints", "resources"))
    for cpath, item in r.items(data.get("endpoints"), f"{path}.endpoints"):
        connection(r, parts, item, cpath)
    resources_dependencies(r, data.get("resources"), f"{path}.resources")


def workload_spec(r: Reader, spec: dict[Any, Any]) -> tuple[Parts, dict[str, str]]:
    """A ``Workload`` resource's spec: its parts, and its owner (``projectName``, ``componentName``)."""
    r.fields(spec, "spec", ("owner", "container", "endpoints", "dependencies"))
    owner = r.mapping(spec.get("owner"), "spec.owner", required=True)
    names = {}
    if owner is not None:
        r.fields(owner, "spec.owner", ("projectName", "componentName"))
        for key in ("projectName", "componentName"):
            value = r.name(owner.get(key), f"spec.owner.{key}", required=True)
            if value:
                names[key] = value
    parts = Parts()
    # Whole lists that only a Workload gives (a rule about the list, e.g. a task takes no endpoints, lands here).
    for cellplane_path, path in (("spec.endpoints", "spec.endpoints"), ("spec.dependencies", "spec.dependencies"),
                                 ("spec.configuration", "spec.container")):
        r.origin(cellplane_path, path)
    container(r, parts, spec.get("container"), "spec.container")
    endpoints = r.mapping(spec.get("endpoints"), "spec.endpoints") or {}
    for name, raw in endpoints.items():
        epath = f"spec.endpoints.{name}"
        data = r.mapping(raw, epath, required=True)
        if data is not None:
            endpoint(r, parts, name, data, epath, schema_file=False)
    dependencies(r, parts, spec.get("dependencies"), "spec.dependencies")
    return parts, names
