"""A build with a registry configured pushes its image: a real control plane, real builds, Debian's docker-registry
on loopback (one with Bearer-token auth for the organization, a plain one for a data plane's override), checked with
skopeo. The image's digest is on the build, on `build show`, on the releases and in the data plane's desired state;
a rebuild of the same source has the same digest; promotion moves it; the signature verifies with the key the API
gives; the registry password is nowhere in the database or the API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from buildkit import APPS, BuildServer, component, git, git_repo, log_text, start, upload, wait
from cellplane.images import sign
from cellplane.images.registry import Credentials, Registry
from liveserver import doc, free_port, run_cli
from registrykit import BASE_REPOSITORY, BASE_TAG, PASSWORD, USER, LocalRegistry, skopeo

BASE = f"{BASE_REPOSITORY}:{BASE_TAG}"


@pytest.fixture(scope="module")
def configured(build_server: BuildServer, token_registry: LocalRegistry, registry: LocalRegistry) -> BuildServer:
    c = build_server.client
    r = c.post("/apply", json={"documents": [
        doc("Organization", "default", {"registry": {
            "url": token_registry.url, "repositoryPrefix": "cellplane",
            "credentials": {"username": USER, "password": PASSWORD},
            "baseImages": {"python": BASE}}}),
        doc("DataPlane", "edge", {"registry": {"url": registry.url, "baseImages": {"python": BASE}}},
            organization="default"),
        doc("DataPlane", "home", {}, organization="default"),
        doc("Environment", "development", {"dataPlane": "home"}, organization="default"),
        doc("Environment", "staging", {"dataPlane": "edge"}, organization="default"),
    ]})
    assert r.status_code == 200, r.text
    return build_server


@pytest.fixture(scope="module")
def two_builds(configured: BuildServer) -> tuple[dict[str, Any], dict[str, Any]]:
    c = configured.client
    component(c, "imgs", "echo", {"type": "service", "endpoints": [{"name": "http", "port": 8080}]})
    first = wait(c, upload(c, "imgs", "echo", APPS / "echo"))
    assert first["state"] == "succeeded", f"{first.get('error')}\n{log_text(c, first['id'])[-3000:]}"
    second = wait(c, upload(c, "imgs", "echo", APPS / "echo"))
    assert second["state"] == "succeeded", second.get("error")
    return first, second


def test_a_succeeded_build_pushes_its_image_and_records_it_by_digest(
        two_builds: tuple[dict[str, Any], dict[str, Any]], token_registry: LocalRegistry) -> None:
    first, _ = two_builds
    image = first["image"]
    assert image["reference"] == f"{token_registry.host}/cellplane/default/imgs/echo@{image['digest']}"
    assert image["tag"] == first["id"]
    assert [s["state"] for s in first["steps"] if s["name"] == "image"] == ["succeeded"]
    seen = skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", f"docker://{image['reference']}")
    assert seen["Digest"] == image["digest"]
    assert seen["Labels"]["dev.cellplane.artifact"] == first["artifact"]
    assert seen["Labels"]["dev.cellplane.component"] == "default/imgs/echo"
    assert "dev.cellplane.build" not in seen["Labels"]  # the tag names the build; the digest stays the source's
    config = skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", "--config",
                    f"docker://{image['reference']}")["config"]
    assert config["User"] == "10014" and config["WorkingDir"].startswith("/app/files")


def test_a_rebuild_of_the_same_source_has_the_same_image_digest_and_sends_no_layer(
        two_builds: tuple[dict[str, Any], dict[str, Any]], configured: BuildServer) -> None:
    first, second = two_builds
    assert second["artifact"] == first["artifact"]
    assert second["image"]["digest"] == first["image"]["digest"]
    assert second["image"]["tag"] == second["id"]
    assert "already in the registry" in log_text(configured.client, second["id"])


def test_the_image_is_also_in_the_data_planes_registry_with_the_same_digest(
        two_builds: tuple[dict[str, Any], dict[str, Any]], registry: LocalRegistry) -> None:
    image = two_builds[0]["image"]
    there = f"{registry.host}/default/imgs/echo@{image['digest']}"
    assert there in image["pushedTo"]
    assert skopeo("inspect", "--tls-verify=false", f"docker://{there}")["Digest"] == image["digest"]


def test_the_signature_verifies_with_the_organizations_public_key_from_the_api(
        two_builds: tuple[dict[str, Any], dict[str, Any]], configured: BuildServer,
        token_registry: LocalRegistry) -> None:
    image = two_builds[0]["image"]
    key = configured.client.get("/organizations/default/image-signing-key").json()
    assert key["publicKey"].startswith("-----BEGIN PUBLIC KEY-----")
    with Registry(token_registry.url, Credentials(USER, PASSWORD)) as r:
        claims = sign.verify(r, image["repository"], image["digest"], key["publicKey"].encode())
    assert claims["critical"]["image"] == {"docker-manifest-digest": image["digest"]}  # type: ignore[index]


def test_build_show_prints_the_image_reference_and_its_signature(
        two_builds: tuple[dict[str, Any], dict[str, Any]], configured: BuildServer) -> None:
    first, _ = two_builds
    shown = run_cli(configured.server, "build", "show", first["id"])
    assert shown.returncode == 0, shown.stderr
    assert "Image:" in shown.stdout and first["image"]["digest"] in shown.stdout
    assert first["image"]["signature"] in shown.stdout


def test_deploy_and_promotion_carry_the_same_digest_into_each_data_planes_desired_state(
        two_builds: tuple[dict[str, Any], dict[str, Any]], configured: BuildServer, registry: LocalRegistry) -> None:
    c = configured.client
    first, second = two_builds
    r = c.post("/organizations/default/projects/imgs/components/echo/deployments",
               json={"environment": "development", "build": first["id"]})
    assert r.status_code in (200, 201), r.text
    r = c.post("/organizations/default/projects/imgs/components/echo/promotions",
               json={"from": "development", "to": "staging"})
    assert r.status_code in (200, 201), r.text
    history = c.get("/organizations/default/projects/imgs/components/echo/releases").json()
    shown = {item["environment"]: item.get("image") for item in history["items"]}
    assert shown["development"] == shown["staging"] == first["image"]["reference"]
    desired = c.get("/organizations/default/dataplanes/edge/desired-state", params={"wait": 0}).json()
    [staged] = [d for d in desired["deployments"] if d["environment"] == "staging"]
    assert staged["artifact"]["image"] == f"{registry.host}/default/imgs/echo@{second['image']['digest']}"
    desired = c.get("/organizations/default/dataplanes/home/desired-state", params={"wait": 0}).json()
    [developed] = [d for d in desired["deployments"] if d["environment"] == "development"]
    assert developed["artifact"]["image"] == first["image"]["reference"]  # the organization's registry


def test_the_registry_password_is_not_in_the_spec_the_database_or_the_logs(
        two_builds: tuple[dict[str, Any], dict[str, Any]], configured: BuildServer) -> None:
    c = configured.client
    spec = c.get("/organizations/default").json()["spec"]
    assert spec["registry"]["credentials"] == {"username": USER}
    data = configured.server.data_dir
    for path in [*data.glob("*.db*"), configured.server.log_path]:
        assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in log_text(c, two_builds[0]["id"])


def build_in(c: Any, organization: str, registry_spec: dict[str, Any]) -> dict[str, Any]:
    """Build the echo app in a new organization with ``registry_spec``; the build once it ended."""
    r = c.post("/apply", json={"documents": [
        doc("Organization", organization, {"registry": registry_spec}),
        doc("Project", "p", organization=organization),
        doc("Component", "echo", {"type": "service", "endpoints": [{"name": "http", "port": 8080}]},
            organization=organization, project="p")]})
    assert r.status_code == 200, r.text
    from cellplane.build.archive import default_exclude, pack
    archive = APPS.parent / f".echo-{organization}-upload.tar.gz"
    pack(APPS / "echo", archive, exclude=default_exclude)
    try:
        r = c.post(f"/organizations/{organization}/projects/p/components/echo/builds", content=archive.read_bytes(),
                   headers={"Content-Type": "application/gzip"})
    finally:
        archive.unlink()
    assert r.status_code == 201, r.text
    build: dict[str, Any] = r.json()
    for _ in range(600):
        build = c.get(f"/organizations/{organization}/builds/{build['id']}").json()
        if build["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.3)
    return build


def test_a_push_the_registry_refuses_fails_the_build_with_one_line_naming_the_registry(
        configured: BuildServer, token_registry: LocalRegistry) -> None:
    build = build_in(configured.client, "broken", {"url": token_registry.url, "baseImages": {"python": BASE},
                                                   "credentials": {"username": USER, "password": "not-it"}})
    assert build["state"] == "failed"
    assert build["error"].startswith(f"image: pushing to {token_registry.url} (organization registry) failed: ")
    assert "answered 401" in build["error"] and "\n" not in build["error"] and "not-it" not in build["error"]
    assert [s["state"] for s in build["steps"] if s["name"] == "image"] == ["failed"]
    assert build["image"] is None and build["artifact"] is None


def test_a_registry_nobody_answers_at_fails_the_build_with_one_line(configured: BuildServer) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    build = build_in(configured.client, "unreachable", {"url": url, "baseImages": {"python": BASE}})
    assert build["state"] == "failed"
    assert build["error"].startswith(f"image: pushing to {url} (organization registry) failed: ConnectError: ")
    assert "\n" not in build["error"]


def test_a_build_from_git_labels_its_image_with_the_commit(configured: BuildServer, tmp_path: Path) -> None:
    c = configured.client
    repo = git_repo(tmp_path, APPS / "echo")
    component(c, "imgs", "echo-git", {"type": "service", "endpoints": [{"name": "http", "port": 8080}],
                                      "source": {"repository": f"file://{repo}", "branch": "main"}})
    info = wait(c, start(c, "imgs", "echo-git"))
    assert info["state"] == "succeeded", info.get("error")
    seen = skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
                  f"docker://{info['image']['reference']}")
    assert seen["Labels"]["dev.cellplane.commit"] == git(repo, "rev-parse", "HEAD") == info["commit"]
    assert seen["Labels"]["org.opencontainers.image.revision"] == info["commit"]
