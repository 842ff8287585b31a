"""``.choreo/component.yaml`` (schemaVersion 1.0, 1.1, 1.2): endpoints, dependencies, configurations, proxy."""

from __future__ import annotations

import posixpath
from typing import Any

from cellplane.choreo.connections import bind, connection_reference, declared, service_reference
from cellplane.choreo.endpoints import add_endpoint, endpoint_type, relative_file, visibilities
from cellplane.choreo.parts import Parts
from cellplane.choreo.walker import Walker, as_text, dns_label, kind_of, show

SCHEMA_VERSIONS = ("1.0", "1.1", "1.2")
LATEST_SCHEMA_VERSION = SCHEMA_VERSIONS[-1]
CONFIG_FORM_ENV_TYPES = {"string", "number", "boolean", "secret"}
CONFIG_FILE_TYPES = {"yaml", "json", "toml"}
MAX_ENV_VALUE = 65536
PROXY_TYPES = {"REST", "GraphQL", "WebSocket"}


def read_component_yaml(w: Walker, data: dict[Any, Any]) -> Parts:
    w.known_keys(data, "", ("schemaVersion", "endpoints", "dependencies", "configurations", "proxy"))
    version = _schema_version(w, data.get("schemaVersion"))
    parts = Parts()
    for path, raw in w.items(data.get("endpoints"), "endpoints"):
        add_endpoint(w, parts, raw, path, legacy=False)

    deps = w.mapping(data.get("dependencies"), "dependencies")
    if deps:
        w.known_keys(deps, "dependencies", ("connectionReferences", "serviceReferences"))
        refs = w.items(deps.get("connectionReferences"), "dependencies.connectionReferences")
        if refs:
            _needs(w, version, "1.1", "dependencies.connectionReferences")
        for path, raw in refs:
            connection_reference(w, parts, raw, path)
        for path, raw in w.items(deps.get("serviceReferences"), "dependencies.serviceReferences"):
            service_reference(w, parts, raw, path)

    conf = w.mapping(data.get("configurations"), "configurations")
    if conf:
        _needs(w, version, "1.1", "configurations")
        w.known_keys(conf, "configurations", ("env", "file"))
        for path, raw in w.items(conf.get("env"), "configurations.env"):
            _config_env(w, parts, raw, path, version)
        for path, raw in w.items(conf.get("file"), "configurations.file"):
            _needs(w, version, "1.2", path)
            _config_file(w, parts, raw, path)

    proxy = w.mapping(data.get("proxy"), "proxy")
    if proxy is not None:
        parts.proxy = _proxy(w, proxy, "proxy")
    return parts


def _schema_version(w: Walker, raw: Any) -> str | None:
    """The schema version as text; YAML reads ``1.2`` as a number and ``"1.2"`` as a string."""
    if raw is None:
        w.warn("schemaVersion", f"missing (Choreo requires it); read as {LATEST_SCHEMA_VERSION}")
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        w.fail("schemaVersion", f"expected a version such as {LATEST_SCHEMA_VERSION}, got {kind_of(raw)}")
        return None
    version = (as_text(raw) or "").strip()
    if isinstance(raw, int) and version:
        version += ".0"
    if version not in SCHEMA_VERSIONS:
        w.warn("schemaVersion", f"'{show(version or raw)}' is not a known schema version "
                                f"({', '.join(SCHEMA_VERSIONS)}); read as {LATEST_SCHEMA_VERSION}")
        return None
    return version


def _needs(w: Walker, version: str | None, minimum: str, path: str) -> None:
    if version is not None and version < minimum:
        w.warn(path, f"needs schemaVersion {minimum} or later (file says {version}); imported anyway")


# configurations.env (1.1+: a literal value or one taken from a connection; 1.2: a configuration form)


def _config_env(w: Walker, parts: Parts, raw: Any, path: str, version: str | None) -> None:
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    w.known_keys(data, path, ("name", "value", "valueFrom"))
    name = w.text(data.get("name"), f"{path}.name", required=True)
    value = _env_value(w, data.get("value"), f"{path}.value")
    source = w.mapping(data.get("valueFrom"), f"{path}.valueFrom")
    if name is None or not w.env_name(name, f"{path}.name"):
        return
    if value is not None:
        if source is not None:
            w.warn(f"{path}.valueFrom", "ignored: a literal value is given")
        parts.env.append((path, {"name": name, "value": value}))
        return
    where = f"{path}.valueFrom"
    source = source or {}
    w.known_keys(source, where, ("connectionRef", "configForm", "configGroupRef"))
    if source.get("connectionRef") is not None:
        _config_connection_ref(w, parts, source["connectionRef"], f"{where}.connectionRef", name)
        return
    secret = False
    if source.get("configForm") is not None:
        _needs(w, version, "1.2", f"{where}.configForm")
        form = w.mapping(source["configForm"], f"{where}.configForm")
        if form is not None:
            w.known_keys(form, f"{where}.configForm", ("displayName", "required", "type"))
            kind = w.text(form.get("type"), f"{where}.configForm.type")
            if kind is not None and kind not in CONFIG_FORM_ENV_TYPES:
                w.warn(f"{where}.configForm.type", f"'{show(kind)}' is not an environment variable type "
                                                    "(string, number, boolean, secret)")
            secret = kind == "secret"
    elif source.get("configGroupRef") is not None:
        w.warn(f"{where}.configGroupRef", f"configuration groups are not imported; {name} is declared "
                                          "without a value, to be set by hand")
    parts.env.append((path, {"name": name, "secret": True} if secret else {"name": name}))


def _env_value(w: Walker, raw: Any, path: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if not isinstance(raw, str | int | float):
        w.fail(path, f"expected a string, got {kind_of(raw)}")
        return None
    text = as_text(raw)
    if text is None or len(text) > MAX_ENV_VALUE:
        w.fail(path, f"longer than {MAX_ENV_VALUE} characters")
        return None
    return text


def _config_connection_ref(w: Walker, parts: Parts, raw: Any, path: str, variable: str) -> None:
    ref = w.mapping(raw, path)
    if ref is None:
        return
    w.known_keys(ref, path, ("name", "key"))
    conn_name = w.text(ref.get("name"), f"{path}.name", required=True)
    key = w.text(ref.get("key"), f"{path}.key", required=True)
    if conn_name is None or key is None:
        return
    conn = next((c for c in parts.connections if c.choreo_name == conn_name), None) or next(
        (c for c in parts.connections if c.name == dns_label(conn_name)), None)
    if conn is not None:
        bind(w, parts, conn, path, key, variable)
        return
    why = parts.unmapped.get(conn_name, "no such connection in dependencies.connectionReferences")
    w.warn(f"{path}.name", f"connection '{show(conn_name)}' is not imported ({why}); "
                           f"{variable} is declared without a value, to be set by hand")
    parts.env.append((path, declared(variable, key)))


# configurations.file (1.2: a file filled from the configuration form, mounted into the container)


def _config_file(w: Walker, parts: Parts, raw: Any, path: str) -> None:
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    w.known_keys(data, path, ("name", "mountPath", "type", "values"))
    name = w.text(data.get("name"), f"{path}.name", required=True)
    mount = w.text(data.get("mountPath"), f"{path}.mountPath", required=True)
    kind = w.text(data.get("type"), f"{path}.type")
    if kind is not None and kind.lower() not in CONFIG_FILE_TYPES:
        w.warn(f"{path}.type", f"'{show(kind)}' is not a configuration file type (yaml, json, toml)")
    keys, secret = _form_keys(w, data.get("values"), f"{path}.values")
    if name is None or mount is None:
        return
    mount_path = _mount_path(w, mount, name, f"{path}.mountPath")
    if mount_path is None:
        return
    item: dict[str, Any] = {"name": dns_label(name) or "config-file", "mountPath": mount_path}
    if secret:
        item["secret"] = True
    listed = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
    w.warn(path, f"Choreo fills '{show(name)}' from its configuration form (keys: {listed or 'none'}); "
                 f"imported as file '{item['name']}' at {mount_path} without content, to be supplied")
    parts.files.append((path, item))


def _form_keys(w: Walker, raw: Any, path: str) -> tuple[list[str], bool]:
    """The top-level key names of a configuration-form file, and whether any of them is secret.

    Nested ``properties``/``items`` describe a form, not a value, so they are not walked.
    """
    keys: list[str] = []
    secret = False
    for item_path, item in w.items(raw, path):
        entry = w.mapping(item, item_path, required=True)
        if entry is None:
            continue
        w.known_keys(entry, item_path, ("name", "valueFrom", "displayName", "type", "required", "properties",
                                        "items", "values"))
        key = w.text(entry.get("name"), f"{item_path}.name", required=True)
        if key is not None:
            keys.append(show(key, 40))
        form = entry.get("valueFrom")
        form = form.get("configForm") if isinstance(form, dict) else None
        types = [entry.get("type"), form.get("type") if isinstance(form, dict) else None]
        secret = secret or "secret" in types
    return keys, secret


def _mount_path(w: Walker, mount: str, name: str, path: str) -> str | None:
    """Choreo mounts file ``name`` inside directory ``mountPath``; Cellplane wants the file's path."""
    if ".." in mount.split("/") or ".." in name.split("/"):
        w.warn(path, f"'{show(mount)}' leaves the container's file tree; file left out")
        return None
    if not mount.startswith("/"):
        w.warn(path, f"'{show(mount)}' is not absolute; using '/{show(mount)}'")
        mount = "/" + mount
    mount = posixpath.normpath(mount)
    if posixpath.basename(mount) == posixpath.basename(name):
        return mount
    return posixpath.normpath(posixpath.join(mount, name.lstrip("/")))


# proxy (an API proxy component built from a repository)


def _proxy(w: Walker, data: dict[Any, Any], path: str) -> dict[str, Any]:
    w.known_keys(data, path, ("type", "schemaFilePath", "docPath", "thumbnailPath", "networkVisibilities",
                              "networkVisibility"))
    kind = endpoint_type(w, data.get("type"), f"{path}.type", PROXY_TYPES)
    proxy: dict[str, Any] = {"type": kind or "REST"}
    for key in ("schemaFilePath", "docPath", "thumbnailPath"):
        value = relative_file(w, data.get(key), f"{path}.{key}")
        if value:
            proxy[key] = value
    proxy["visibility"] = visibilities(w, data, path) or ["Public"]
    w.warn(path, "Choreo keeps the proxy's target URL outside the descriptor; set proxy.upstream")
    return proxy
