"""Tag cleanup: keep the images of a component's last N builds in its repository, and every image deployed.

A build's image is tagged with the build's id in the component's repository; without cleanup a registry keeps
every build's image forever. ``clean`` (after each push, when the registry's ``keepTags`` is set) lists the
repository's tags and takes those that are build ids of this component (``builds``: newest first, from the
store), keeps the first ``keep`` of them, and deletes the manifests of the others **by digest** (the distribution
API deletes manifests, not tags: deleting a digest removes every tag naming it), except a digest that a kept tag
names too (a rebuild of the same source has the same digest) or that a deployment uses (``deployed``: digests of
the releases the component's deployments run or await approval for, read from the store just before). Each deleted
image's cosign signature (``sha256-<hex>.sig``) goes with it. Tags that are not build ids of this component (pushed
by hand, another tool's) are left alone. A registry that does not allow deletes answers 405: nothing is deleted
and ``Cleaned.unsupported`` says so. Deleting manifests frees the registry's storage only when its garbage
collection runs (``registry garbage-collect``, offline). Cost: one tag list, one manifest GET per build tag of the
component, one DELETE per image (and signature) removed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cellplane.images import sign as signing
from cellplane.images.registry import Registry, RegistryError


@dataclass
class Cleaned:
    kept: list[str] = field(default_factory=list)  # build tags kept (the last N, and deployed ones)
    deleted: list[str] = field(default_factory=list)  # build tags whose image was deleted
    unsupported: bool = False  # the registry does not allow deletes


def _digest(registry: Registry, repository: str, tag: str) -> str | None:
    try:
        body, _, _ = registry.manifest(repository, tag)
    except RegistryError as e:
        if e.status == 404:
            return None
        raise
    return "sha256:" + hashlib.sha256(body).hexdigest()


def clean(registry: Registry, repository: str, builds: list[str], deployed: set[str], keep: int) -> Cleaned:
    """Apply the policy above to ``repository``; ``builds``: the component's build ids, newest first."""
    tags = set(registry.tags(repository))
    ours = [b for b in builds if b in tags]
    digests = {tag: _digest(registry, repository, tag) for tag in ours}
    protected = {digests[t] for t in ours[:keep]} | deployed
    result = Cleaned(kept=[t for t in ours if t in ours[:keep] or digests[t] in protected])
    doomed: dict[str, list[str]] = {}
    for tag in ours[keep:]:
        digest = digests[tag]
        if digest is not None and digest not in protected:
            doomed.setdefault(digest, []).append(tag)
    for digest, named in doomed.items():
        if not registry.delete_manifest(repository, digest):
            result.unsupported = True
            return result
        result.deleted += named
        signature = signing.signature_tag(digest)
        if signature in tags:
            found = _digest(registry, repository, signature)
            if found is not None:
                registry.delete_manifest(repository, found)
    return result


