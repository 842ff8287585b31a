"""OCI image manifests: reading a base image's (OCI or Docker schema 2, single or an index) and writing ours.

A base given as an index (a multi-platform image) resolves to its ``linux/amd64`` entry (``platform_of``). Our
manifest lists the base's layers as they are (their bytes and digests do not change; Docker layer media types
are renamed to their OCI equivalents, which name the same gzip tar) and then our layer, and is canonical JSON,
so the image digest is a function of the base, the layer and the config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cellplane.images import config as image_config
from cellplane.images import layer as image_layer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))
INDEXES = (OCI_INDEX, DOCKER_LIST)
_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": image_layer.MEDIA_TYPE,
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def parse(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("a manifest is a JSON object")
    return value


def platform_of(index: dict[str, Any], os: str = "linux", architecture: str = "amd64") -> str | None:
    """The digest of the index entry for ``os``/``architecture``, or None."""
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") or {}
        if platform.get("os") == os and platform.get("architecture") == architecture:
            return str(entry["digest"])
    return None


def layers_of(manifest: dict[str, Any]) -> list[Descriptor]:
    return [Descriptor(_LAYER_TYPES.get(d["mediaType"], d["mediaType"]), d["digest"], int(d["size"]))
            for d in manifest.get("layers") or []]


def config_of(manifest: dict[str, Any]) -> Descriptor:
    d = manifest["config"]
    return Descriptor(d["mediaType"], d["digest"], int(d["size"]))


def image_manifest(config: Descriptor, layers: list[Descriptor],
                   annotations: dict[str, str] | None = None) -> bytes:
    body: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.to_json(),
                            "layers": [d.to_json() for d in layers]}
    if annotations:
        body["annotations"] = annotations
    return image_config.canonical(body)
