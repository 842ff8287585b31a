"""Parsing the targets of Choreo connections: ``resourceRef`` (schema 1.1+) and service reference names (1.0)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION_SEGMENT = re.compile(r"^v\d+(\.\d+)*$", re.IGNORECASE)
_VISIBILITIES = {"PUBLIC", "ORGANIZATION", "PROJECT"}


@dataclass(frozen=True)
class ResourceRef:
    """A parsed Choreo connection target; ``kind`` is service, database, thirdparty or unknown."""

    kind: str
    project: str | None = None
    component: str | None = None
    visibility: str | None = None


def parse_resource_ref(ref: str) -> ResourceRef:
    """``[service:][/<project>/]<component>/<major-version>[/<endpoint>][/<visibility>]``.

    The major version (``v1``, ``v1.1``) anchors the parse: the segment before it is the component
    and the one before that, if any, the project. Database and third-party targets are recognised
    but carry nothing Cellplane can point a dependency at.
    """
    prefix, sep, rest = ref.partition(":")
    if sep:
        kind = prefix.strip().lower()
        if kind != "service":
            return ResourceRef(kind if kind in ("database", "thirdparty") else "unknown")
    else:
        rest = ref
    segments = [s for s in rest.strip().split("/") if s]
    index = next((i for i, s in enumerate(segments) if _VERSION_SEGMENT.fullmatch(s)), None)
    if index is None or index == 0 or index > 2 or len(segments) - index > 3:
        return ResourceRef("unknown")
    visibility = segments[-1].upper() if len(segments) > index + 1 else None
    if visibility not in _VISIBILITIES:
        visibility = None
    return ResourceRef("service", project=segments[0] if index == 2 else None,
                       component=segments[index - 1], visibility=visibility)


def parse_service_reference(name: str) -> ResourceRef:
    """``choreo:///<org>/<project>/<component>/<endpoint>/<major-version>/<visibility>`` (schema 1.0)."""
    lowered = name.strip().lower()
    for kind in ("database", "thirdparty"):
        if lowered.startswith(kind + ":"):
            return ResourceRef(kind)
    if not lowered.startswith("choreo:///"):
        return ResourceRef("unknown")
    segments = name.strip()[len("choreo:///"):].split("/")
    if len(segments) != 6 or not all(segments) or not _VERSION_SEGMENT.fullmatch(segments[4]):
        return ResourceRef("unknown")
    visibility = segments[5].upper()
    return ResourceRef("service", project=segments[1], component=segments[2],
                       visibility=visibility if visibility in _VISIBILITIES else None)
