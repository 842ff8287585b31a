"""Endpoints: component.yaml's, and the flat form of component-config.yaml's ``inbound`` and endpoints.yaml's."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cellplane.choreo.parts import Parts
from cellplane.choreo.walker import Walker, show
from cellplane.model.component import HTTP_ENDPOINTS

# Choreo endpoint type (any case) -> Cellplane endpoint type, and back to Choreo's spelling for messages.
ENDPOINT_TYPES = {"rest": "REST", "graphql": "GraphQL", "grpc": "gRPC", "ws": "WebSocket",
                  "websocket": "WebSocket", "tcp": "TCP", "udp": "UDP"}
_CHOREO_TYPES = {"REST": "REST", "GraphQL": "GraphQL", "gRPC": "GRPC", "WebSocket": "WS", "TCP": "TCP", "UDP": "UDP"}
VISIBILITIES = {"project": "Project", "organization": "Organization", "public": "Public"}

_ENDPOINT_KEYS = ("name", "displayName", "service", "type", "networkVisibilities", "networkVisibility",
                  "schemaFilePath")
_LEGACY_ENDPOINT_KEYS = ("name", "port", "type", "networkVisibility", "context", "schemaFilePath")


def add_endpoint(w: Walker, parts: Parts, raw: Any, path: str, *, legacy: bool) -> None:
    """One endpoint; the older files keep port and ``context`` flat, component.yaml under ``service``."""
    data = w.mapping(raw, path, required=True)
    if data is None:
        return
    holder: dict[Any, Any] | None
    if legacy:
        w.known_keys(data, path, _LEGACY_ENDPOINT_KEYS)
        holder, holder_path, base_key = data, path, "context"
    else:
        w.known_keys(data, path, _ENDPOINT_KEYS)
        holder_path, base_key = f"{path}.service", "basePath"
        holder = w.mapping(data.get("service"), holder_path, required=True)
        if holder is not None:
            w.known_keys(holder, holder_path, ("basePath", "port"))
    before = len(w.problems)
    name = w.text(data.get("name"), f"{path}.name", required=True)
    port = _port(w, holder.get("port"), f"{holder_path}.port") if holder is not None else None
    kind = endpoint_type(w, data.get("type"), f"{path}.type")
    visibility = visibilities(w, data, path, list_key=None if legacy else "networkVisibilities")
    if len(w.problems) > before or holder is None or name is None or port is None or kind is None:
        return
    base = _base_path(w, holder.get(base_key), f"{holder_path}.{base_key}", kind)
    if base is None:
        return
    if not visibility:
        visibility = ["Project"]
        if kind in HTTP_ENDPOINTS:
            visibility = ["Public"]
            w.warn(path, "no network visibility given; Choreo's default is Public, so the endpoint is Public")
    label = w.label(name, f"{path}.name", "endpoint")
    endpoint: dict[str, Any] = {"name": label, "port": port, "type": kind, "basePath": base,
                                "visibility": visibility}
    # A name that had to be rewritten (``Greeting Service``) is still the best display name.
    display = (None if legacy else w.text(data.get("displayName"), f"{path}.displayName")) or (
        name if label != name else None)
    if display:
        if len(display) > 200:
            w.warn(f"{path}.displayName", "longer than 200 characters; shortened")
        endpoint["displayName"] = display[:200]
    contract = relative_file(w, data.get("schemaFilePath"), f"{path}.schemaFilePath")
    if contract:
        endpoint["contract"] = contract
    parts.endpoints.append((path, endpoint))


def endpoint_type(w: Walker, raw: Any, path: str, allowed: Iterable[str] | None = None) -> str | None:
    """The Cellplane type of a Choreo ``type``, REST when missing; ``allowed`` narrows the accepted ones."""
    if raw is None:
        w.warn(path, "missing (Choreo requires it); using REST")
        return "REST"
    text = w.text(raw, path, required=True)
    if text is None:
        return None
    kind = ENDPOINT_TYPES.get(text.lower())
    accepted = set(allowed) if allowed is not None else set(ENDPOINT_TYPES.values())
    if kind is None or kind not in accepted:
        names = ", ".join(choreo for k, choreo in _CHOREO_TYPES.items() if k in accepted)
        w.fail(path, f"'{show(text)}' is not one of {names}")
        return None
    return kind


def visibilities(w: Walker, data: dict[Any, Any], path: str, *,
                 list_key: str | None = "networkVisibilities") -> list[str]:
    """``networkVisibilities`` (a list) wins over the older single ``networkVisibility``.

    ``list_key`` is None for the older files, which only know the single form.
    """
    many = data.get(list_key) if list_key else None
    one = data.get("networkVisibility")
    if many is not None:
        if one is not None:
            w.warn(f"{path}.networkVisibility", "ignored: networkVisibilities takes priority")
        values = w.items(many, f"{path}.networkVisibilities")
    elif one is not None:
        values = [(f"{path}.networkVisibility", one)]
    else:
        return []
    out: list[str] = []
    for item_path, raw in values:
        text = w.text(raw, item_path, required=True)
        if text is None:
            continue
        visibility = VISIBILITIES.get(text.lower())
        if visibility is None:
            w.fail(item_path, f"'{show(text)}' is not one of Project, Organization, Public")
        elif visibility not in out:
            out.append(visibility)
    return out


def relative_file(w: Walker, raw: Any, path: str) -> str | None:
    """A path inside the source; Choreo resolves a leading '/' against the component root too."""
    text = w.text(raw, path)
    if text is None:
        return None
    segments = text.replace("\\", "/").split("/")
    if ".." in segments:
        w.warn(path, f"'{show(text)}' points outside the source; ignored")
        return None
    return "/".join(s for s in segments if s not in ("", ".")) or None


def _port(w: Walker, raw: Any, path: str) -> int | None:
    """An integer port; a quoted number is accepted, ``abc`` or ``8080.5`` is not."""
    if raw is None:
        w.fail(path, "required")
        return None
    value = raw
    quoted = isinstance(raw, str) and re.fullmatch(r"\s*[0-9]{1,6}\s*", raw)
    if quoted or (isinstance(raw, float) and raw.is_integer()):
        value = int(raw)
    if isinstance(value, bool) or not isinstance(value, int):
        w.fail(path, f"'{show(raw)}' is not a port number (1-65535)")
        return None
    if not 1 <= value <= 65535:
        w.fail(path, f"{show(value)} is not a port number (1-65535)")
        return None
    return value


def _base_path(w: Walker, raw: Any, path: str, kind: str) -> str | None:
    text = w.text(raw, path)
    if text is None:
        return "/"
    if kind not in HTTP_ENDPOINTS:
        if text != "/":
            w.warn(path, f"a {kind} endpoint has no base path in Cellplane; '{show(text)}' dropped")
        return "/"
    if not text.startswith("/"):
        w.warn(path, f"'{show(text)}' does not start with '/'; using '/{show(text)}'")
        text = "/" + text
    if any(c.isspace() for c in text) or "?" in text or "#" in text:
        w.fail(path, f"'{show(text)}' is not a plain URL path")
        return None
    return text
