"""Tag cleanup: a component's repository keeps the images of its last N builds and every deployed image; older
ones are deleted by digest (with their signatures) when the registry allows deletes, and a registry that does not
is left as it is. Debian's docker-registry on loopback (storage.delete.enabled set by the test's config), then a
real control plane with keepTags 1: build, deploy, build twice more."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildkit import APPS, BuildServer, component, failed_why, log_text, upload, wait
from cellplane.build.archive import pack
from cellplane.digests import sha256_file
from cellplane.images import retention, sign
from cellplane.images.publish import Published, publish
from cellplane.images.registry import Registry
from liveserver import doc
from registrykit import BASE_REPOSITORY, BASE_TAG, LocalRegistry, _start, _stop, push_tiny_base

BASES = {"python": f"{BASE_REPOSITORY}:{BASE_TAG}"}


def pushed(registry: Registry, tmp: Path, body: str, tag: str, repository: str = "acme/shop/api",
           key: Any = None) -> Published:
    stage = tmp / tag / "stage"
    (stage / "files").mkdir(parents=True)
    (stage / "files" / "app.py").write_text(body)
    (stage / "manifest.json").write_text(json.dumps({"schema": 1, "language": "python", "run": "python app.py",
                                                     "workdir": "files", "lock": {}}))
    pack(stage, tmp / tag / "artifact.tar.gz")
    return publish(registry, tmp / tag / "artifact.tar.gz", sha256_file(tmp / tag / "artifact.tar.gz"),
                   repository=repository, tag=tag, base_images=BASES, labels={}, key=key)


def test_the_last_n_builds_and_deployed_images_are_kept_and_older_ones_deleted_with_their_signatures(
        registry: LocalRegistry, tmp_path: Path) -> None:
    key = sign.new_key()
    with Registry(registry.url) as r:
        x = pushed(r, tmp_path, "print('x')\n", "b-1", key=key)
        y = pushed(r, tmp_path, "print('y')\n", "b-2", key=key)
        z = pushed(r, tmp_path, "print('z')\n", "b-3", key=key)
        again = pushed(r, tmp_path, "print('x')\n", "b-4", key=key)  # a rebuild of x: the same digest
        assert again.digest == x.digest
        r.put_manifest("acme/shop/api", "latest", r.manifest("acme/shop/api", "b-3")[0], "application/"
                       "vnd.oci.image.manifest.v1+json")  # a tag of someone else's: left alone

        cleaned = retention.clean(r, "acme/shop/api", ["b-4", "b-3", "b-2", "b-1"], set(), keep=2)
        assert cleaned.deleted == ["b-2"] and not cleaned.unsupported
        assert cleaned.kept == ["b-4", "b-3", "b-1"]  # b-1 names the digest b-4 keeps
        tags = set(r.tags("acme/shop/api"))
        assert {"b-1", "b-3", "b-4", "latest"} <= tags and "b-2" not in tags
        assert sign.signature_tag(y.digest) not in tags and sign.signature_tag(z.digest) in tags
        assert not r.manifest_exists("acme/shop/api", y.digest)

        w = pushed(r, tmp_path, "print('w')\n", "b-5", key=key)
        cleaned = retention.clean(r, "acme/shop/api", ["b-5", "b-4", "b-3", "b-1"], {z.digest}, keep=1)
        assert sorted(cleaned.deleted) == ["b-1", "b-4"] and cleaned.kept == ["b-5", "b-3"]  # z is deployed
        assert {"b-5", "b-3", "latest"} <= set(r.tags("acme/shop/api"))
        assert r.manifest_exists("acme/shop/api", w.digest) and not r.manifest_exists("acme/shop/api", x.digest)


@pytest.fixture(scope="module")
def no_delete_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    started = _start(tmp_path_factory.mktemp("no-delete-registry"), delete=False)
    try:
        push_tiny_base(started.url)
        yield started
    finally:
        _stop(started)


def test_a_registry_that_does_not_allow_deletes_keeps_everything_and_says_so(
        no_delete_registry: LocalRegistry, tmp_path: Path) -> None:
    with Registry(no_delete_registry.url) as r:
        pushed(r, tmp_path, "print('1')\n", "b-1")
        pushed(r, tmp_path, "print('2')\n", "b-2")
        cleaned = retention.clean(r, "acme/shop/api", ["b-2", "b-1"], set(), keep=1)
        assert cleaned.unsupported and cleaned.deleted == []
        assert {"b-1", "b-2"} <= set(r.tags("acme/shop/api"))


def test_through_the_control_plane_keep_tags_keeps_the_newest_build_and_the_deployed_one(
        build_server: BuildServer, registry: LocalRegistry, tmp_path: Path) -> None:
    c = build_server.client
    r = c.post("/apply", json={"documents": [
        doc("Organization", "default", {"registry": {"url": registry.url, "repositoryPrefix": "keep",
                                                     "baseImages": BASES, "keepTags": 1}}),
        doc("DataPlane", "home", {}, organization="default"),
        doc("Environment", "development", {"dataPlane": "home"}, organization="default"),
    ]})
    assert r.status_code == 200, r.text
    component(c, "keep", "echo", {"type": "service", "endpoints": [{"name": "http", "port": 8080}]})

    def build(n: int) -> dict[str, Any]:
        source = tmp_path / f"echo-{n}"
        shutil.copytree(APPS / "echo", source)
        (source / "BUILD").write_text(f"{n}\n")
        info = wait(c, upload(c, "keep", "echo", source))
        assert info["state"] == "succeeded", failed_why(c, info)
        return info

    first = build(1)
    deployed = c.post("/organizations/default/projects/keep/components/echo/deployments",
                      json={"environment": "development"})
    assert deployed.status_code in (200, 201), deployed.text
    second, third = build(2), build(3)
    with Registry(registry.url) as reg:
        tags = set(reg.tags("keep/default/keep/echo"))
    assert third["id"] in tags and first["id"] in tags  # the newest, and the deployed one
    assert second["id"] not in tags
    assert f"tag cleanup: deleted the images of {second['id']}" in log_text(c, third["id"])
