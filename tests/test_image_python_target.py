"""The Python an image's packages are installed for: read from the base (its PYTHON_VERSION, else its tag), recorded
on the image, and refused with one line when this machine cannot produce packages that base runs (another
platform, Alpine's musl, a tag that disagrees with the base, an unsupported version), before anything is pushed."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from cellplane.build.archive import pack
from cellplane.build.plan import BuildFailure
from cellplane.digests import sha256_file
from cellplane.images import manifest as manifests
from cellplane.images.dependencies import python_target
from cellplane.images.publish import publish
from cellplane.images.registry import Registry
from registrykit import LocalRegistry, tiny_base


def config(env: list[str] | None = None, architecture: str = "amd64") -> dict[str, Any]:
    return {"architecture": architecture, "os": "linux", "config": {"Env": env or ["PATH=/usr/bin:/bin"]}}


def test_the_version_comes_from_the_bases_python_version_else_its_tag_else_the_control_planes() -> None:
    official = config(["PATH=/usr/local/bin:/usr/bin", "PYTHON_VERSION=3.12.7"])
    assert python_target("python:3.12-slim", official) == {
        "version": "3.12", "platform": "x86_64-manylinux_2_28", "from": "the base's PYTHON_VERSION"}
    assert python_target("mirror/py:1", official)["version"] == "3.12"  # the tag names none: the base says
    assert python_target("python:3.11-slim-bookworm", config())["from"] == "the base's tag"
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python_target("my/base:1", None) == {"version": own, "platform": "x86_64-manylinux_2_28",
                                                "from": "the control plane's Python"}


@pytest.mark.parametrize(("base", "base_config", "message"), [
    ("python:3.12-slim", config(architecture="arm64"),
     "image: the base image python:3.12-slim is linux/arm64, and an image's Python packages are installed for "
     "x86_64 only (x86_64-manylinux_2_28): use a linux/amd64 base"),
    ("python:3.12-alpine", config(["PYTHON_VERSION=3.12.7"]),
     "image: the base image python:3.12-alpine is Alpine (musl libc), and an image's Python packages are "
     "manylinux wheels (glibc): use a Debian-based base such as python:3.12-slim"),
    ("python:3.12-slim", config(["PYTHON_VERSION=3.11.9"]),
     "image: the base image python:3.12-slim names Python 3.12 in its tag and holds Python 3.11 (its "
     "PYTHON_VERSION): fix the tag, or set registry.baseImages.python"),
    ("python:3.6-slim", config(),
     "image: the base image python:3.6-slim runs Python 3.6, and packages are installed here for Python 3.8 to "
     "3.14 only: use a base with one of those"),
])
def test_a_base_this_machine_cannot_make_packages_for_is_refused_with_one_line(
        base: str, base_config: dict[str, Any], message: str) -> None:
    with pytest.raises(BuildFailure) as e:
        python_target(base, base_config)
    assert e.value.message == message


def test_publishing_on_an_arm64_base_fails_before_anything_is_tagged(
        registry: LocalRegistry, tmp_path: Path) -> None:
    blob, raw = tiny_base()
    base_config = json.loads(raw)
    base_config["architecture"] = "arm64"
    base_config["config"]["Env"].append("PYTHON_VERSION=3.12.7")
    body = json.dumps(base_config, sort_keys=True).encode()
    digest_of = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()  # noqa: E731
    with Registry(registry.url) as r:
        for data in (blob, body):
            if not r.blob_exists("base/arm", digest_of(data)):
                r.upload("base/arm", digest_of(data), data)
        r.put_manifest("base/arm", "3.12", manifests.image_manifest(
            manifests.Descriptor("application/vnd.oci.image.config.v1+json", digest_of(body), len(body)),
            [manifests.Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", digest_of(blob), len(blob))]),
            manifests.OCI_MANIFEST)
        stage = tmp_path / "stage"
        (stage / "files").mkdir(parents=True)
        (stage / "files" / "app.py").write_text("")
        (stage / "requirements.lock").write_text("blinker==1.9.0\n")
        (stage / "manifest.json").write_text(json.dumps({"schema": 1, "language": "python", "run": "python app.py",
                                                         "workdir": "files", "lock": {"python": "requirements.lock"}}))
        pack(stage, tmp_path / "artifact.tar.gz")
        with pytest.raises(BuildFailure) as e:
            publish(r, tmp_path / "artifact.tar.gz", sha256_file(tmp_path / "artifact.tar.gz"),
                    repository="acme/shop/arm", tag="b-1", base_images={"python": "base/arm:3.12"}, labels={},
                    cache=tmp_path / "cache")
        assert e.value.message.startswith("image: the base image base/arm:3.12 is linux/arm64")
        assert not r.manifest_exists("acme/shop/arm", "b-1")
