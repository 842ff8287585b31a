"""A succeeded build's image: the artifact published to every registry the organization's settings name.

Called by the build worker after the runner has finished and before the build is recorded as succeeded, in the
control plane's process, never in the build runner: the registry credentials and the organization's signing key
are opened here with the key ring, and the runner runs the source's own code, which must not see them. A push
that fails fails the build with one line naming the registry and the reason, because a registry-configured
platform deploys the image by digest: a build without its image could not be deployed where images run.

The first target (the organization's registry, else the first data plane's) gives the build's reference; the
image is the same bytes everywhere the same base is, so its digest is the same in each registry (``pushedTo``).
Cost, base already in the registry: about what ``images.publish`` says, per registry (a few tens of ms on
loopback for a small artifact; benchmarks/bench_images.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from cellplane.build.plan import BuildFailure
from cellplane.controlplane.registries import Target
from cellplane.images import config as image_config
from cellplane.images import layer as image_layer
from cellplane.images import layercache
from cellplane.images import retention as image_retention
from cellplane.images import sign as signing
from cellplane.images.publish import Published, application_layer, publish, repository_for
from cellplane.images.registry import Credentials, Registry, RegistryError


class ImageFailure(Exception):
    """The image could not be pushed; ``str(e)`` is the build's one-line error."""


def push(artifact: Path, artifact_digest: str, *, build_id: str, organization: str, project: str, component: str,
         commit: str | None, targets: list[Target], key_pem: bytes | None,
         log: Callable[[str], None], cache: Path | None = None,
         retention: Callable[[], tuple[list[str], set[str]]] | None = None) -> dict[str, Any]:
    """Publish to each target; returns the build's ``image`` record. ``cache``: the dependency cache, where the
    Python packages / node_modules layer is installed and kept (``images.dependencies``). ``retention``: reads
    (the component's builds newest first, the deployed digests) from the store, for a target with ``keepTags``
    (``images.retention``); read after the push, just before deleting."""
    # No build id among the labels: the same source must give the same image (the build's tag names the build).
    labels = {image_config.LABEL_COMPONENT: f"{organization}/{project}/{component}"}
    if commit:
        labels[image_config.LABEL_COMMIT] = commit
        labels["org.opencontainers.image.revision"] = commit
    key = signing.load_private(key_pem) if key_pem else None
    record: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cellplane-image-") as tmp:
        layer = application_layer(artifact, Path(tmp) / "layer.tar.gz")  # once, whatever the registries
        for target in targets:
            image = _push_one(artifact, artifact_digest, target, layer, build_id=build_id, repository=repository_for(
                target.repository_prefix, organization, project, component), labels=labels, key=key, cache=cache)
            for step in image.steps:
                log(f"{target.where}: {step}")
            if not record:
                record = {"reference": image.reference, "digest": image.digest, "repository": image.repository,
                          "tag": image.tag, "signature": image.signature, "pushedTo": []}
                if image.python:
                    record["python"] = image.python
            elif image.digest != record["digest"]:
                log(f"{target.where}: its base images differ from the first registry's: digest {image.digest}")
            record["pushedTo"].append(image.reference)
            if target.keep_tags and retention is not None:
                _clean(target, image.repository, build_id, retention, log)
    if cache is not None:
        max_age, max_bytes = layercache.settings()
        pruned = layercache.prune(cache, max_age, max_bytes)
        if pruned.removed:
            log(f"image-layers cache: {pruned.removed} layer(s) not used lately removed ({pruned.freed} bytes), "
                f"{pruned.kept} kept ({pruned.kept_bytes} bytes)")
    return record


def _clean(target: Target, repository: str, build_id: str, retention: Callable[[], tuple[list[str], set[str]]],
           log: Callable[[str], None]) -> None:
    """Tag cleanup after a push; a failure is logged, not the build's: the image is pushed and recorded. This
    build is the newest (its image is not in the store yet)."""
    assert target.keep_tags
    credentials = Credentials(target.username, target.password or "") if target.username else None
    try:
        builds, deployed = retention()
        builds = [build_id, *(b for b in builds if b != build_id)]
        with Registry(target.url, credentials) as registry:
            cleaned = image_retention.clean(registry, repository, builds, deployed, target.keep_tags)
    except (RegistryError, httpx.HTTPError) as e:
        log(f"{target.where}: tag cleanup failed (the images are kept): {getattr(e, 'message', None) or e}")
        return
    if cleaned.unsupported:
        log(f"{target.where}: tag cleanup: the registry does not allow deletes (docker-registry: "
            "storage.delete.enabled), so every image is kept")
    elif cleaned.deleted:
        log(f"{target.where}: tag cleanup: deleted the images of {', '.join(cleaned.deleted)} "
            f"(keepTags {target.keep_tags}; deployed images are kept)")


def _push_one(artifact: Path, artifact_digest: str, target: Target, layer: image_layer.Layer, *, build_id: str,
              repository: str, labels: dict[str, str], key: ec.EllipticCurvePrivateKey | None,
              cache: Path | None = None) -> Published:
    credentials = Credentials(target.username, target.password or "") if target.username else None
    try:
        with Registry(target.url, credentials) as registry:
            return publish(registry, artifact, artifact_digest, repository=repository, tag=build_id,
                           base_images=target.base_images, labels=labels, key=key if target.sign else None,
                           layer=layer, cache=cache)
    except BuildFailure as e:  # the dependency layer could not be installed
        raise ImageFailure(f"image: {e.message.removeprefix('image: ')}") from e
    except RegistryError as e:
        raise ImageFailure(f"image: pushing to {target.url} ({target.where} registry) failed: {e.message}") from e
    except httpx.HTTPError as e:  # refused connection, timeout, name resolution, TLS
        raise ImageFailure(f"image: pushing to {target.url} ({target.where} registry) failed: "
                           f"{type(e).__name__}: {e}") from e
    except OSError as e:  # an artifact that cannot be read
        raise ImageFailure(f"image: pushing to {target.url} ({target.where} registry) failed: {e}") from e
