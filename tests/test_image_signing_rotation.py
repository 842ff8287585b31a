"""Rotating the organization's image signing key: a new key signs the images built from then on, the old public key
is kept so the images it signed still verify (as cosign does: the payload's signature and the digest it names),
and forgetting it stops that. A real control plane builds and pushes to Debian's docker-registry on loopback; the
rotation goes through the CLI and the API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from buildkit import APPS, BuildServer, component, failed_why, upload, wait
from cellplane.images import sign
from cellplane.images.registry import Registry
from liveserver import doc, run_cli
from registrykit import BASE_REPOSITORY, BASE_TAG, LocalRegistry

KEY = "/organizations/default/image-signing-key"


@pytest.fixture(scope="module")
def configured(build_server: BuildServer, registry: LocalRegistry) -> BuildServer:
    r = build_server.client.post("/apply", json={"documents": [doc("Organization", "default", {"registry": {
        "url": registry.url, "repositoryPrefix": "rot", "baseImages": {"python": f"{BASE_REPOSITORY}:{BASE_TAG}"}}})]})
    assert r.status_code == 200, r.text
    component(build_server.client, "rot", "echo", {"type": "service", "endpoints": [{"name": "http", "port": 8080}]})
    return build_server


def built(server: BuildServer, source: Path) -> dict[str, Any]:
    info = wait(server.client, upload(server.client, "rot", "echo", source))
    assert info["state"] == "succeeded", failed_why(server.client, info)
    return info


def verifies(registry: LocalRegistry, image: dict[str, Any], public: str) -> bool:
    with Registry(registry.url) as r:
        try:
            sign.verify(r, image["repository"], image["digest"], public.encode())
            return True
        except ValueError:
            return False


def test_after_a_rotation_new_images_are_signed_with_the_new_key_and_old_ones_verify_with_the_kept_key(
        configured: BuildServer, registry: LocalRegistry, tmp_path: Path) -> None:
    c = configured.client
    before = built(configured, APPS / "echo")["image"]
    first = c.get(KEY).json()
    assert [k["current"] for k in first["keys"]] == [True] and first["keyId"] == first["keys"][0]["keyId"]
    assert verifies(registry, before, first["publicKey"])

    rotated = run_cli(configured.server, "signing-key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    keys = c.get(KEY).json()
    assert keys["keyId"] != first["keyId"]
    assert rotated.stdout.strip() == (f"signing key rotated: new key {keys['keyId']}; "
                                      f"kept for verifying: {first['keyId']}")
    assert [(k["keyId"], k["current"]) for k in keys["keys"]] == [(keys["keyId"], True), (first["keyId"], False)]
    assert keys["keys"][1]["publicKey"] == first["publicKey"]  # the old public key, kept as it was

    source = tmp_path / "echo"
    shutil.copytree(APPS / "echo", source)
    (source / "CHANGED").write_text("a new build after the rotation\n")
    after = built(configured, source)["image"]
    assert after["digest"] != before["digest"]
    assert verifies(registry, after, keys["publicKey"]) and not verifies(registry, after, first["publicKey"])
    assert verifies(registry, before, keys["keys"][1]["publicKey"])  # the kept key still verifies the old image
    assert not verifies(registry, before, keys["publicKey"])

    shown = run_cli(configured.server, "signing-key", "show", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert [k["keyId"] for k in json.loads(shown.stdout)["keys"]] == [keys["keyId"], first["keyId"]]
    refused = run_cli(configured.server, "signing-key", "forget", keys["keyId"])
    assert refused.returncode != 0
    assert f"key {keys['keyId']} is the current signing key: rotate first" in refused.stderr
    forgot = run_cli(configured.server, "signing-key", "forget", first["keyId"])
    assert forgot.returncode == 0, forgot.stderr
    left = c.get(KEY).json()["keys"]
    assert [k["keyId"] for k in left] == [keys["keyId"]]
    assert not any(verifies(registry, before, k["publicKey"]) for k in left)  # nothing kept verifies it now
    assert c.delete(f"{KEY}/keys/{first['keyId']}").status_code == 404
