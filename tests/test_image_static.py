"""A static site's image: an nginx-class base with the site at /usr/share/nginx/html, a whole nginx.conf for a
non-root user and nginx's own Cmd. Pushed to Debian's docker-registry on loopback, read with skopeo, unpacked with
umoci, and the unpacked config run by the machine's nginx as uid 10014 (the image's user): the site, its
single-page-app fallback and a missing asset's 404, answered over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, BuildServer, component, failed_why, upload, wait
from cellplane.build.archive import pack
from cellplane.digests import sha256_file
from cellplane.images import static as image_static
from cellplane.images.publish import publish
from cellplane.images.registry import Registry
from liveserver import doc, free_port
from registrykit import BASE_REPOSITORY, BASE_TAG, LocalRegistry, need, skopeo

BASES = {"static": f"{BASE_REPOSITORY}:{BASE_TAG}"}
UID = 10014


def site(tmp: Path, port: int | None, spa: bool = True) -> tuple[Path, str]:
    """A static artifact as the runner writes one: the built site under files/, run None, static.root files."""
    stage = tmp / "stage"
    (stage / "files" / "assets").mkdir(parents=True)
    (stage / "files" / "index.html").write_text("<!doctype html><title>shop</title><div id=app></div>\n")
    (stage / "files" / "assets" / "app-3f2a.js").write_text("console.log('shop')\n")
    (stage / "manifest.json").write_text(json.dumps({
        "schema": 1, "language": "static", "strategy": "static", "run": None, "port": port, "env": {},
        "workdir": "files", "static": {"root": "files", "spa": spa}, "lock": {}}, sort_keys=True))
    out = tmp / "artifact.tar.gz"
    pack(stage, out)
    return out, sha256_file(out)


@pytest.fixture(scope="module")
def image(registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, int]:
    port = free_port()
    path, digest = site(tmp_path_factory.mktemp("site"), port)
    with Registry(registry.url) as r:
        return publish(r, path, digest, repository="acme/shop/web", tag="b-1", base_images=BASES,
                       labels={"dev.cellplane.component": "acme/shop/web"}), port


@pytest.fixture(scope="module")
def rootfs(image: tuple[Any, int]) -> Iterator[Path]:
    """The image unpacked in a directory uid 10014 can read (pytest's own tmp is root's, mode 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix="cellplane-static-image-"))
    tmp.chmod(0o755)
    try:
        subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{image[0].reference}",
                        f"oci:{tmp / 'layout'}:img"], check=True, capture_output=True, timeout=60)
        subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp / 'layout'}:img", str(tmp / "bundle")],
                       check=True, capture_output=True, timeout=60)
        (tmp / "bundle").chmod(0o755)
        yield tmp / "bundle" / "rootfs"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_static_sites_image_runs_nginx_as_its_command_on_an_unprivileged_port(image: tuple[Any, int]) -> None:
    published, port = image
    config = skopeo("inspect", "--tls-verify=false", "--config", f"docker://{published.reference}")["config"]
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert "Entrypoint" not in config
    assert config["StopSignal"] == "SIGQUIT"
    assert config["User"] == "10014"
    assert config["WorkingDir"] == "/usr/share/nginx/html"
    assert f"{port}/tcp" in config["ExposedPorts"] and f"PORT={port}" in config["Env"]


def test_the_unpacked_image_holds_the_site_at_nginxs_docroot_and_the_server_config(
        image: tuple[Any, int], rootfs: Path) -> None:
    _, port = image
    docroot = rootfs / "usr" / "share" / "nginx" / "html"
    assert (docroot / "index.html").read_text().startswith("<!doctype html>")
    assert (docroot / "assets" / "app-3f2a.js").stat().st_mode & 0o777 == 0o644
    assert not (docroot / ".wh..wh..opq").exists()  # the whiteout is applied, not unpacked as a file
    assert not (rootfs / "app" / "files").exists()  # the site is not there twice
    assert json.loads((rootfs / "app" / "manifest.json").read_text())["language"] == "static"
    conf = (rootfs / "etc" / "nginx" / "nginx.conf").read_text()
    assert f"listen {port};" in conf and "pid /tmp/nginx.pid;" in conf
    assert "try_files $uri $uri/ /index.html;" in conf and "\nuser " not in conf


def test_the_machines_nginx_serves_the_unpacked_site_as_the_images_non_root_user(
        image: tuple[Any, int], rootfs: Path) -> None:
    need("nginx")
    _, port = image
    # The image's config, with its docroot moved to where the image was unpacked (the only change).
    conf = (rootfs / "etc" / "nginx" / "nginx.conf").read_text().replace(
        "root /usr/share/nginx/html;", f"root {rootfs}/usr/share/nginx/html;")
    run = rootfs.parent / "run"
    run.mkdir()
    (run / "nginx.conf").write_text(conf)
    log = run / "nginx.log"
    log.touch()
    os.chown(log, UID, UID)
    with log.open("ab") as out:
        process = subprocess.Popen(
            ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", shutil.which("nginx") or "nginx",
             "-e", "/dev/stderr", "-c", str(run / "nginx.conf"), "-g", "daemon off;"],
            stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(url + "/", timeout=2)
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        assert page.status_code == 200 and "<title>shop</title>" in page.text
        assert page.headers["cache-control"] == "no-cache"
        asset = httpx.get(url + "/assets/app-3f2a.js", timeout=2)
        assert asset.text == "console.log('shop')\n" and "immutable" in asset.headers["cache-control"]
        routed = httpx.get(url + "/orders/42", timeout=2)  # a page the app routes: the SPA fallback
        assert routed.status_code == 200 and "<title>shop</title>" in routed.text
        assert httpx.get(url + "/missing.js", timeout=2).status_code == 404
        assert httpx.get(url + "/assets/gone", timeout=2).status_code == 404
        assert httpx.get(url + "/.env", timeout=2).status_code == 404
    finally:
        process.terminate()
        process.wait(10)


def test_without_the_spa_fallback_or_with_a_privileged_port_the_config_says_so() -> None:
    assert "try_files $uri $uri/ =404;" in image_static.nginx_conf(8080, spa=False)
    assert image_static.listen_port(80) == 8080 and image_static.listen_port(None) == 8080
    assert image_static.listen_port(3000) == 3000


def test_a_static_site_built_by_the_control_plane_gets_the_nginx_image(
        build_server: BuildServer, registry: LocalRegistry, tmp_path: Path) -> None:
    c = build_server.client
    r = c.post("/apply", json={"documents": [doc("Organization", "default", {"registry": {
        "url": registry.url, "repositoryPrefix": "sites", "baseImages": BASES}})]})
    assert r.status_code == 200, r.text
    component(c, "sites", "web", {"type": "web-app", "endpoints": [{"name": "http", "port": 8080}]})
    info = wait(c, upload(c, "sites", "web", APPS / "static-site"))
    assert info["state"] == "succeeded", failed_why(c, info)
    reference = info["image"]["reference"]
    config = skopeo("inspect", "--tls-verify=false", "--config", f"docker://{reference}")["config"]
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"] and config["WorkingDir"] == "/usr/share/nginx/html"
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{reference}",
                    f"oci:{tmp_path / 'layout'}:img"], check=True, capture_output=True, timeout=60)
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:img",
                    str(tmp_path / "bundle")], check=True, capture_output=True, timeout=60)
    docroot = tmp_path / "bundle" / "rootfs" / "usr" / "share" / "nginx" / "html"
    assert (docroot / "index.html").read_bytes() == (APPS / "static-site" / "index.html").read_bytes()
