"""Images of build artifacts pushed to a real registry (Debian's docker-registry on loopback) and checked with real
tools: skopeo reads the config, labels and digest; umoci unpacks the files; the signature verifies with the
organization's public key; the same artifact gives the same digest; Bearer-token auth against the registry's own
token verification."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cellplane.build.archive import pack
from cellplane.digests import sha256_file
from cellplane.images import registry as registry_module
from cellplane.images import sign
from cellplane.images.publish import publish
from cellplane.images.registry import Credentials, Registry, RegistryError
from registrykit import BASE_REPOSITORY, BASE_TAG, PASSWORD, USER, LocalRegistry, skopeo

BASES = {"python": f"{BASE_REPOSITORY}:{BASE_TAG}"}
LABELS = {"dev.cellplane.component": "default/shop/api", "dev.cellplane.commit": "0123abcd"}


def artifact(tmp: Path, body: str = "print('hello')\n", extra: bytes = b"") -> tuple[Path, str]:
    """A real artifact (archive.pack of a stage tree, as the runner writes one)."""
    stage = tmp / "stage"
    (stage / "files" / "bin").mkdir(parents=True, exist_ok=True)
    (stage / "files" / "app.py").write_text(body)
    (stage / "files" / "bin" / "start").write_text("#!/bin/sh\nexec python app.py\n")
    (stage / "files" / "bin" / "start").chmod(0o755)
    if extra:
        (stage / "files" / "data.bin").write_bytes(extra)
    (stage / "manifest.json").write_text(json.dumps({
        "schema": 1, "language": "python", "run": "gunicorn -b 0.0.0.0:$PORT app:app", "port": 8080,
        "env": {"APP_MODE": "production"}, "workdir": "files", "static": None}, sort_keys=True))
    out = tmp / "artifact.tar.gz"
    pack(stage, out)
    return out, sha256_file(out)


@pytest.fixture(scope="module")
def key() -> Any:
    return sign.new_key()


@pytest.fixture(scope="module")
def pushed(registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory, key: Any) -> Any:
    path, digest = artifact(tmp_path_factory.mktemp("artifact"))
    with Registry(registry.url) as r:
        return publish(r, path, digest, repository="acme/shop/api", tag="b-1", base_images=BASES,
                       labels=LABELS, key=key), digest


def test_a_published_artifact_is_an_image_skopeo_reads_with_its_config_labels_and_digest(
        registry: LocalRegistry, pushed: Any) -> None:
    image, artifact_digest = pushed
    assert image.reference == f"{registry.host}/acme/shop/api@{image.digest}"
    seen = skopeo("inspect", "--tls-verify=false", f"docker://{image.reference}")
    assert seen["Digest"] == image.digest
    assert seen["Labels"]["dev.cellplane.component"] == "default/shop/api"
    assert seen["Labels"]["dev.cellplane.commit"] == "0123abcd"
    assert seen["Labels"]["dev.cellplane.artifact"] == artifact_digest
    assert seen["Labels"]["base"] == "tiny"  # the base's labels are kept
    assert len(seen["Layers"]) == 2 and seen["Layers"][1] == image.layer_digest
    config = skopeo("inspect", "--tls-verify=false", "--config", f"docker://{image.reference}")["config"]
    assert config["User"] == "10014"
    assert config["WorkingDir"] == "/app/files"
    assert config["Cmd"] == ["/bin/sh", "-c", "gunicorn -b 0.0.0.0:$PORT app:app"]
    assert "PATH=/usr/local/bin:/usr/bin:/bin" in config["Env"]  # from the base
    assert {"APP_MODE=production", "PORT=8080"} <= set(config["Env"])
    assert "8080/tcp" in config["ExposedPorts"]


def test_umoci_unpacks_the_base_files_and_the_artifact_under_app_owned_by_root_and_read_only(
        registry: LocalRegistry, pushed: Any, tmp_path: Path) -> None:
    image, _ = pushed
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{image.reference}",
                    f"oci:{tmp_path / 'layout'}:img"], check=True, capture_output=True, timeout=60)
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:img",
                    str(tmp_path / "bundle")], check=True, capture_output=True, timeout=60)
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "etc" / "os-release").read_text().startswith("ID=tiny")
    assert (rootfs / "app" / "files" / "app.py").read_text() == "print('hello')\n"
    assert json.loads((rootfs / "app" / "manifest.json").read_text())["language"] == "python"
    assert (rootfs / "app" / "files" / "bin" / "start").stat().st_mode & 0o777 == 0o755
    assert (rootfs / "app" / "files" / "app.py").stat().st_mode & 0o777 == 0o644
    runtime = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert runtime["process"]["cwd"] == "/app/files"
    assert runtime["process"]["args"][-1] == "gunicorn -b 0.0.0.0:$PORT app:app"


def test_the_same_artifact_published_again_has_the_same_digest_and_uploads_nothing(
        registry: LocalRegistry, pushed: Any, tmp_path: Path, key: Any) -> None:
    image, _ = pushed
    path, digest = artifact(tmp_path)  # rebuilt from the same tree: same bytes
    with Registry(registry.url) as r:
        again = publish(r, path, digest, repository="acme/shop/api", tag="b-2", base_images=BASES,
                        labels=LABELS, key=key)
        other = publish(r, *artifact(tmp_path / "changed", body="print('changed')\n"), repository="acme/shop/api",
                        tag="b-3", base_images=BASES, labels=LABELS)
    assert again.digest == image.digest
    assert again.uploaded_bytes == 0
    assert other.digest != image.digest and other.uploaded_bytes > 0


def test_the_signature_is_stored_next_to_the_image_in_cosign_form_and_verifies_with_the_public_key(
        registry: LocalRegistry, pushed: Any, key: Any) -> None:
    image, _ = pushed
    assert image.signature == image.digest.replace(":", "-") + ".sig"
    seen = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/acme/shop/api:{image.signature}")
    layer = seen["layers"][0]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert sign.ANNOTATION in layer["annotations"]
    with Registry(registry.url) as r:
        claims = sign.verify(r, "acme/shop/api", image.digest, sign.public_pem(key))
        assert claims["critical"] == {"identity": {"docker-reference": f"{registry.host}/acme/shop/api"},
                                      "image": {"docker-manifest-digest": image.digest},
                                      "type": "cosign container image signature"}
        with pytest.raises(ValueError, match="no signature"):
            sign.verify(r, "acme/shop/api", image.digest, sign.public_pem(sign.new_key()))


def test_a_base_image_missing_from_the_registry_fails_with_one_line_naming_it(
        registry: LocalRegistry, tmp_path: Path) -> None:
    path, digest = artifact(tmp_path)
    with Registry(registry.url) as r, pytest.raises(RegistryError) as e:
        publish(r, path, digest, repository="acme/shop/api", tag="b-9", base_images={"python": "python:3.12-slim"},
                labels=LABELS)
    assert e.value.message == (f"the base image python:3.12-slim (python) is not in the registry {registry.host}: "
                               "push it there or set registry.baseImages.python")


def test_a_layer_larger_than_a_chunk_is_uploaded_in_patch_chunks(
        registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "CHUNK", 64 << 10)
    path, digest = artifact(tmp_path, extra=os.urandom(300 << 10))
    with Registry(registry.url) as r:
        image = publish(r, path, digest, repository="acme/shop/big", tag="b-1", base_images=BASES, labels=LABELS)
    assert image.uploaded_bytes > 3 * (64 << 10)
    assert skopeo("inspect", "--tls-verify=false", f"docker://{image.reference}")["Digest"] == image.digest


def test_bearer_token_auth_gets_one_token_per_repository_and_the_registry_accepts_it(
        token_registry: LocalRegistry, tmp_path: Path, key: Any) -> None:
    path, digest = artifact(tmp_path)
    with Registry(token_registry.url, Credentials(USER, PASSWORD)) as r:
        image = publish(r, path, digest, repository="acme/shop/api", tag="b-1", base_images=BASES, labels=LABELS,
                        key=key)
        # the base repository's, then the target's (its first challenge names both: the mount pulls the base)
        assert r.auth.token_requests == 2, token_registry.token_requests
        assert sign.verify(r, "acme/shop/api", image.digest, sign.public_pem(key))
    with Registry(token_registry.url, Credentials(USER, "wrong")) as r, pytest.raises(RegistryError) as e:
        publish(r, path, digest, repository="acme/shop/api", tag="b-2", base_images=BASES, labels=LABELS)
    assert "401" in e.value.message and "refused the credentials" in e.value.message
    assert "wrong" not in e.value.message
    with Registry(token_registry.url) as r, pytest.raises(RegistryError) as e:
        publish(r, path, digest, repository="acme/shop/api", tag="b-3", base_images=BASES, labels=LABELS)
    assert e.value.message.endswith("(the registry wants credentials: set registry.credentials)")


def test_basic_auth_is_sent_after_the_registrys_challenge_and_a_wrong_password_is_refused(
        basic_registry: LocalRegistry, tmp_path: Path) -> None:
    path, digest = artifact(tmp_path)
    with Registry(basic_registry.url, Credentials(USER, PASSWORD)) as r:
        image = publish(r, path, digest, repository="acme/shop/api", tag="b-1", base_images=BASES, labels=LABELS)
        assert r.auth.basic and r.auth.token_requests == 0
    seen = skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", f"docker://{image.reference}")
    assert seen["Digest"] == image.digest
    with Registry(basic_registry.url, Credentials(USER, "wrong")) as r, pytest.raises(RegistryError) as e:
        publish(r, path, digest, repository="acme/shop/api", tag="b-2", base_images=BASES, labels=LABELS)
    assert "answered 401" in e.value.message and "refused the credentials" in e.value.message
