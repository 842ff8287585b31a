"""Publish one build artifact as an image: its runtime's base image plus one layer, pushed and signed.

``publish`` reads the base (by reference in the same registry: ``python:3.12-slim`` is repository ``python``,
tag ``3.12-slim``; ``repo@sha256:..`` pins a digest), links the base's layers into the target repository by
cross-repository mount (no bytes move), uploads the artifact's layer and the config only when the registry does
not hold them yet (a rebuild of the same source sends nothing but the manifest), writes the manifest under the
build's tag and signs its digest. The result names the image by digest: that is what is deployed, never the tag.
Cost with the base already in the registry: one manifest and one config read, a mount per base layer, a HEAD per
new blob, the layer's upload, one manifest PUT, and for the signature three small uploads.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from cellplane.images import config as image_config
from cellplane.images import dependencies as image_dependencies
from cellplane.images import layer as image_layer
from cellplane.images import manifest as manifests
from cellplane.images import sign as signing
from cellplane.images import static as image_static
from cellplane.images.registry import Registry, RegistryError

# The base image per runtime, as references in the organization's registry (mirror these there, or set
# registry.baseImages). A static site's base is nginx-class: its nginx serves the site (images.static).
DEFAULT_BASE_IMAGES: dict[str, str] = {
    "python": "python:3.12-slim", "node": "node:20-slim", "static": "nginx:1.27-alpine",
    "go": "distroless/static-debian12:nonroot", "java": "eclipse-temurin:17-jre",
    "php": "php:8.3-cli", "ruby": "ruby:3.3-slim",
    "binary": "distroless/base-debian12:nonroot",  # a Dockerfile's compiled binary: glibc, in case it links it
}


@dataclass(frozen=True)
class Published:
    reference: str  # host/repository@sha256:...
    digest: str
    repository: str
    tag: str
    base: str
    layer_digest: str
    uploaded_bytes: int
    signature: str | None = None  # the signature's tag, when signed
    steps: list[str] = field(default_factory=list)  # what was done, for the build's log
    dependency_layers: list[str] = field(default_factory=list)  # digests of the dependency layers, base side first
    python: dict[str, str] | None = None  # a Python dependency layer's version, platform and where it was read


def split_reference(reference: str) -> tuple[str, str]:
    """``name:tag`` / ``name@sha256:..`` / ``name`` -> (repository, tag or digest)."""
    if "@" in reference:
        name, _, digest = reference.partition("@")
        return name, digest
    name, colon, tag = reference.rpartition(":")
    if colon and "/" not in tag:
        return name, tag
    return reference, "latest"


def repository_for(prefix: str, organization: str, project: str, component: str) -> str:
    return "/".join(p.strip("/") for p in (prefix, organization, project, component) if p.strip("/")).lower()


def artifact_manifest(artifact: Path) -> dict[str, Any]:
    with tarfile.open(artifact, "r:gz") as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise ValueError("the artifact has no manifest.json")
        value: dict[str, Any] = json.loads(member.read())
        return value


def application_layer(artifact: Path, dest: Path, meta: dict[str, Any] | None = None) -> image_layer.Layer:
    """The image's top layer: the artifact under ``/app``, or for a static site its files at nginx's docroot with
    the server's config (``images.static``)."""
    meta = artifact_manifest(artifact) if meta is None else meta
    if image_static.is_static(meta):
        return image_static.site_layer(artifact, meta, dest)
    return image_layer.from_artifact(artifact, dest)


def read_base(registry: Registry, repository: str, reference: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A base image's manifest and config, read from ``registry``: through its index to the linux/amd64 image when
    it has one (manifest None, config empty: the index holds no such image). ``RegistryError`` as the registry
    answers (404: not there)."""
    body, media_type, _ = registry.manifest(repository, reference)
    manifest = manifests.parse(body)
    if media_type in manifests.INDEXES or manifest.get("manifests"):
        entry = manifests.platform_of(manifest)
        if entry is None:
            return None, {}
        manifest = manifests.parse(registry.manifest(repository, entry)[0])
    return manifest, json.loads(registry.blob(repository, manifests.config_of(manifest).digest))


def publish(registry: Registry, artifact: Path, artifact_digest: str, *, repository: str, tag: str,
            base_images: Mapping[str, str], labels: Mapping[str, str],
            key: ec.EllipticCurvePrivateKey | None = None, layer: image_layer.Layer | None = None,
            cache: Path | None = None) -> Published:
    """Publish ``artifact`` as ``repository:tag`` (``layer``: the artifact's layer when the caller built it already,
    for several registries). ``cache``: where dependency layers are installed and kept (``images.dependencies``);
    without it a Python or Node.js image holds its lock but not its packages."""
    meta = artifact_manifest(artifact)
    language = str(meta.get("language") or "")
    base = base_images.get(language) or DEFAULT_BASE_IMAGES.get(language)
    if not base:
        raise RegistryError(f"no base image for runtime {language!r}: set registry.baseImages.{language}")
    base_repository, base_reference = split_reference(base)
    steps: list[str] = []
    try:
        base_manifest, base_config = read_base(registry, base_repository, base_reference)
    except RegistryError as e:
        if e.status == 404:
            raise RegistryError(f"the base image {base} ({language}) is not in the registry {registry.host}: "
                                f"push it there or set registry.baseImages.{language}", 404) from e
        raise
    if base_manifest is None:
        raise RegistryError(f"the base image {base} has no linux/amd64 image")
    base_layers = manifests.layers_of(base_manifest)
    for d in base_layers:
        if base_repository != repository and not registry.mount(repository, d.digest, base_repository) \
                and not registry.blob_exists(repository, d.digest):
            raise RegistryError(f"the registry would not link layer {d.digest} of {base} into {repository}")
    steps.append(f"base {base}: {len(base_layers)} layer(s) linked into {repository}")

    static = image_static.is_static(meta)
    workdir = f"/{image_static.DOCROOT}" if static else f"/{image_layer.ROOT}/{meta.get('workdir') or 'files'}"
    run = meta.get("run")  # None for a static site: the base's nginx serves it (images.static)
    port = image_static.listen_port(meta.get("port")) if static else meta.get("port")
    uploaded = 0
    env = {str(k): str(v) for k, v in (meta.get("env") or {}).items()}
    extra: list[image_dependencies.Dependencies] = []
    if cache is not None:
        found = image_dependencies.for_artifact(artifact, meta, base, cache, base_config)
        if found is not None:
            extra.append(found)
            base_path = next((str(e).partition("=")[2] for e in (base_config.get("config") or {}).get("Env") or []
                              if str(e).startswith("PATH=")), "/usr/local/bin:/usr/bin:/bin")
            env = {**found.env, "PATH": f"{found.path}:{base_path}", **env}
            if registry.blob_exists(repository, found.layer.digest):
                steps.append(f"dependencies ({found.what}): layer {found.layer.digest} already in the registry")
            else:
                registry.upload(repository, found.layer.digest, found.layer.path)
                uploaded += found.layer.size
                steps.append(f"dependencies ({found.what}): layer {found.layer.digest} uploaded "
                             f"({found.layer.size} bytes)")
    with tempfile.TemporaryDirectory(prefix="cellplane-layer-") as tmp:
        if layer is None:
            layer = application_layer(artifact, Path(tmp) / "layer.tar.gz", meta)
        config = image_config.image_config(
            base_config, layer.diff_id, run=run, env=env, workdir=workdir, port=port,
            labels={**labels, image_config.LABEL_ARTIFACT: artifact_digest},
            dependencies=tuple((d.layer.diff_id, d.what) for d in extra),
            cmd=image_static.COMMAND if static else None, stop_signal=image_static.STOP_SIGNAL if static else None)
        if registry.blob_exists(repository, layer.digest):
            steps.append(f"layer {layer.digest} already in the registry")
        else:
            registry.upload(repository, layer.digest, layer.path)
            uploaded += layer.size
            steps.append(f"layer {layer.digest} uploaded ({layer.size} bytes)")
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    if not registry.blob_exists(repository, config_digest):
        registry.upload(repository, config_digest, config)
        uploaded += len(config)
    body = manifests.image_manifest(
        manifests.Descriptor(image_config.MEDIA_TYPE, config_digest, len(config)),
        [*base_layers, *(manifests.Descriptor(image_layer.MEDIA_TYPE, d.layer.digest, d.layer.size) for d in extra),
         manifests.Descriptor(image_layer.MEDIA_TYPE, layer.digest, layer.size)])
    digest = registry.put_manifest(repository, tag, body, manifests.OCI_MANIFEST)
    steps.append(f"image {registry.host}/{repository}@{digest} (tag {tag})")
    signature = None
    if key is not None:
        signature = signing.sign(registry, repository, digest, key).tag
        steps.append(f"signed: {signature}")
    return Published(f"{registry.host}/{repository}@{digest}", digest, repository, tag, base, layer.digest,
                     uploaded, signature, steps, [d.layer.digest for d in extra],
                     next((d.python for d in extra if d.python), None))
