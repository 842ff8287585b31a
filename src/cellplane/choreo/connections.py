"""Connections: component.yaml's ``connectionReferences`` (1.1+) and ``serviceReferences`` (1.0, and
component-config.yaml's ``outbound``), each a dependency on a component whose values are injected as env."""

from __future__ import annotations

from typing import Any

from cellplane.choreo.parts import Connection, Parts
from cellplane.choreo.refs import ResourceRef, parse_resource_ref, parse_service_reference
from cellplane.choreo.walker import Walker, show

# Choreo connection keys -> Cellplane ConnectionValue. Choreo calls the API key "ChoreoAPIKey".
CONNECTION_KEYS = {"serviceurl": "ServiceURL", "consumerkey": "ConsumerKey",
                   "consumersecret": "ConsumerSecret", "tokenurl": "TokenURL",
                   "choreoapikey": "APIKey", "apikey": "APIKey"}
SENSITIVE_KEYS = {"consumersecret", "choreoapikey", "apikey", "password"}
# Injected by Choreo for a connectionReference unless renamed in configurations.env; the OAuth ones
# only exist when the target is reached through the gateway (Organization or Public visibility).
OAUTH_KEYS = ("ConsumerKey", "ConsumerSecret", "TokenURL")


def connection_reference(w: Walker, parts: Parts, raw: Any, path: str) -> None:
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    w.known_keys(data, path, ("name", "resourceRef"))
    name = w.text(data.get("name"), f"{path}.name", required=True)
    ref = w.text(data.get("resourceRef"), f"{path}.resourceRef", required=True)
    if name is None or ref is None:
        return
    target = parse_resource_ref(ref)
    if target.kind != "service" or not target.component:
        reason = _why_unmapped(target, ref)
        w.warn(f"{path}.resourceRef", f"{reason}; connection '{show(name)}' is not imported")
        parts.unmapped[name] = reason
        return
    oauth = target.visibility in ("PUBLIC", "ORGANIZATION")
    parts.connections.append(Connection(
        name=w.label(name, f"{path}.name", "connection"), choreo_name=name, path=path,
        component=w.label(target.component, f"{path}.resourceRef", "component"),
        project=w.label(target.project, f"{path}.resourceRef", "project") if target.project else None,
        default_keys=("ServiceURL", *OAUTH_KEYS) if oauth else ("ServiceURL",),
    ))


def service_reference(w: Walker, parts: Parts, raw: Any, path: str) -> None:
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    w.known_keys(data, path, ("name", "connectionConfig", "connectionType", "env"))
    ref = w.text(data.get("name"), f"{path}.name", required=True)
    pairs: list[tuple[str, str, str]] = []  # (path, Choreo key, env variable)
    for item_path, item in w.items(data.get("env"), f"{path}.env"):
        entry = w.mapping(item, item_path, required=True)
        if entry is None:
            continue
        w.known_keys(entry, item_path, ("from", "to"))
        key = w.text(entry.get("from"), f"{item_path}.from", required=True)
        variable = w.text(entry.get("to"), f"{item_path}.to", required=True)
        if key is not None and variable is not None:
            pairs.append((item_path, key, variable))
    if ref is None:
        return
    target = parse_service_reference(ref)
    if target.kind != "service" or not target.component:
        declared_names = ", ".join(variable for _, _, variable in pairs)
        also = f"; {declared_names} declared without a value, to be set by hand" if declared_names else ""
        w.warn(f"{path}.name", f"{_why_unmapped(target, ref)}; service reference not imported{also}")
        for item_path, key, variable in pairs:
            if w.env_name(variable, item_path):
                parts.env.append((item_path, declared(variable, key)))
        return
    component = w.label(target.component, f"{path}.name", "component")
    conn = Connection(name=component, choreo_name=ref, path=path, component=component,
                      project=w.label(target.project, f"{path}.name", "project") if target.project else None)
    for item_path, key, variable in pairs:
        bind(w, parts, conn, item_path, key, variable)
    parts.connections.append(conn)


def bind(w: Walker, parts: Parts, conn: Connection, path: str, key: str, variable: str) -> None:
    """Inject connection value ``key`` of ``conn`` as ``variable``, or say why it cannot be."""
    if not w.env_name(variable, path):
        return
    value = CONNECTION_KEYS.get(key.lower())
    if value is None:
        w.warn(path, f"connection key '{show(key)}' has no Cellplane equivalent; "
                     f"{variable} is declared without a value, to be set by hand")
        parts.env.append((path, declared(variable, key)))
        return
    conn.env.append((value, variable))


def declared(variable: str, key: str) -> dict[str, Any]:
    """An env entry whose value is supplied later, secret when the Choreo key is a credential."""
    return {"name": variable, "secret": True} if key.lower() in SENSITIVE_KEYS else {"name": variable}


def _why_unmapped(target: ResourceRef, ref: str) -> str:
    if target.kind == "database":
        return "Choreo-managed database connections have no Cellplane equivalent"
    if target.kind == "thirdparty":
        return "third-party service connections need a URL, which the descriptor does not hold"
    return f"'{show(ref)}' is not a reference Cellplane can resolve to a component"
