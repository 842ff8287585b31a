"""Images that start on their own: a Python or Node.js build's image carries its installed dependencies in a layer
between the base and the application. A real control plane builds the flask and express fixtures and pushes to
Debian's docker-registry on loopback; skopeo reads the layers and config, umoci unpacks the files, and the
machine's Python imports flask from the unpacked packages (the tiny test base names no Python version in its tag,
so the packages are installed for the machine's Python)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, BuildServer, component, log_text, upload, wait
from cellplane.build.archive import pack
from cellplane.build.plan import BuildFailure
from cellplane.images.dependencies import for_artifact, python_version
from cellplane.images.publish import artifact_manifest
from cellplane.runtime.materialize import base_python
from liveserver import doc, free_port
from registrykit import BASE_REPOSITORY, BASE_TAG, LocalRegistry, skopeo

BASE = f"{BASE_REPOSITORY}:{BASE_TAG}"


@pytest.fixture(scope="module")
def configured(build_server: BuildServer, registry: LocalRegistry) -> BuildServer:
    r = build_server.client.post("/apply", json={"documents": [
        doc("Organization", "default", {"registry": {
            "url": registry.url, "repositoryPrefix": "deps", "baseImages": {"python": BASE, "node": BASE}}}),
    ]})
    assert r.status_code == 200, r.text
    return build_server


def built(server: BuildServer, name: str, app: str) -> dict[str, Any]:
    c = server.client
    component(c, "deps", name, {"type": "service", "endpoints": [{"name": "http", "port": 8080}]})
    build = wait(c, upload(c, "deps", name, APPS / app))
    assert build["state"] == "succeeded", f"{build.get('error')}\n{log_text(c, build['id'])[-3000:]}"
    return build


@pytest.fixture(scope="module")
def flask_builds(configured: BuildServer) -> tuple[dict[str, Any], dict[str, Any]]:
    return built(configured, "api", "flask-procfile"), built(configured, "api", "flask-procfile")


@pytest.fixture(scope="module")
def express_build(configured: BuildServer) -> dict[str, Any]:
    return built(configured, "web", "express")


def unpack(reference: str, tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{reference}",
                    f"oci:{tmp / 'layout'}:img"], check=True, capture_output=True, timeout=120)
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp / 'layout'}:img", str(tmp / "bundle")],
                   check=True, capture_output=True, timeout=120)
    return tmp / "bundle" / "rootfs"


def test_the_python_version_of_a_base_is_read_from_its_tag() -> None:
    assert python_version("python:3.12-slim") == "3.12"
    assert python_version("mirror/python:3.11.9-bookworm") == "3.11"
    assert python_version("registry.example:5000/python:3.13") == "3.13"
    assert python_version("base/tiny:1") is None
    assert python_version("python@sha256:" + "0" * 64) is None


def test_a_flask_image_has_a_dependency_layer_between_the_base_and_the_app_and_pythonpath_names_it(
        flask_builds: tuple[dict[str, Any], dict[str, Any]], configured: BuildServer) -> None:
    first, _ = flask_builds
    reference = first["image"]["reference"]
    seen = skopeo("inspect", "--tls-verify=false", f"docker://{reference}")
    assert len(seen["Layers"]) == 3  # the tiny base's one, the packages, the application
    config = skopeo("inspect", "--tls-verify=false", "--config", f"docker://{reference}")
    assert "PYTHONPATH=/app/.python-packages" in config["config"]["Env"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"  # the tiny base's tag names no Python
    assert f"Python {version} packages" in config["history"][-2]["created_by"]
    assert "PATH=/app/.python-packages/bin:/usr/local/bin:/usr/bin:/bin" in config["config"]["Env"]
    assert "dependencies (Python" in log_text(configured.client, first["id"])
    assert first["image"]["python"] == {"version": version, "platform": "x86_64-manylinux_2_28",
                                        "from": "the control plane's Python"}  # recorded on the build


def test_the_same_lock_gives_the_same_dependency_layer_and_the_same_image(
        flask_builds: tuple[dict[str, Any], dict[str, Any]]) -> None:
    first, second = flask_builds
    layers = [skopeo("inspect", "--tls-verify=false", f"docker://{b['image']['reference']}")["Layers"]
              for b in (first, second)]
    assert layers[0][1] == layers[1][1]
    assert first["image"]["digest"] == second["image"]["digest"]


def test_the_unpacked_image_holds_flask_and_the_machines_python_imports_it_from_there(
        flask_builds: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path) -> None:
    rootfs = unpack(flask_builds[0]["image"]["reference"], tmp_path)
    packages = rootfs / "app" / ".python-packages"
    assert (packages / "flask" / "__init__.py").is_file()
    assert any(p.name.startswith("gunicorn-") and p.name.endswith(".dist-info") for p in packages.iterdir())
    assert (packages / "bin" / "gunicorn").read_text().startswith("#!/usr/bin/env python3\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(packages), "PYTHONNOUSERSITE": "1"}
    out = subprocess.run([sys.executable, "-S", "-c",
                          "import flask, werkzeug; print(flask.__file__)"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(packages))


def test_an_express_image_holds_node_modules_beside_the_server(express_build: dict[str, Any], tmp_path: Path) -> None:
    reference = express_build["image"]["reference"]
    assert len(skopeo("inspect", "--tls-verify=false", f"docker://{reference}")["Layers"]) == 3
    rootfs = unpack(reference, tmp_path)
    workdir = json.loads((rootfs / "app" / "manifest.json").read_text()).get("workdir") or "files"
    express = rootfs / "app" / workdir / "node_modules" / "express" / "package.json"
    assert json.loads(express.read_text())["name"] == "express"
    config = skopeo("inspect", "--tls-verify=false", "--config", f"docker://{reference}")["config"]
    assert "NODE_ENV=production" in config["Env"]


def artifact_with(tmp: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> Path:
    stage = tmp / "stage"
    for name, body in files.items():
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_bytes(body)
    (stage / "manifest.json").write_text(json.dumps({"schema": 1, "workdir": "files", **manifest}, sort_keys=True))
    pack(stage, tmp / "artifact.tar.gz")
    return tmp / "artifact.tar.gz"


def test_the_same_lock_installed_on_two_empty_caches_gives_the_same_layer_bytes(tmp_path: Path) -> None:
    python = artifact_with(tmp_path / "py", {"language": "python", "lock": {"python": "requirements.lock"}},
                           {"requirements.lock": b"itsdangerous==2.2.0\nblinker==1.9.0\n", "files/app.py": b""})
    express = {f"files/{n}": (APPS / "express" / n).read_bytes() for n in ("package.json", "package-lock.json")}
    node = artifact_with(tmp_path / "node", {"language": "node", "lock": {"node": "files/package-lock.json"}}, express)
    for path in (python, node):
        meta = artifact_manifest(path)
        one = for_artifact(path, meta, "python:3.12-slim", tmp_path / "cache-one")
        two = for_artifact(path, meta, "python:3.12-slim", tmp_path / "cache-two")
        assert one is not None and two is not None
        assert one.layer.digest == two.layer.digest and one.layer.diff_id == two.layer.diff_id
        assert one.layer.path.read_bytes() == two.layer.path.read_bytes()
    python_layer = for_artifact(python, artifact_manifest(python), "python:3.12-slim", tmp_path / "cache-one")
    assert python_layer is not None
    with tarfile.open(python_layer.layer.path) as tar:
        names = tar.getnames()
    assert "app/.python-packages/blinker/__init__.py" in names


def test_an_artifact_without_a_lock_gets_no_dependency_layer(tmp_path: Path) -> None:
    path = artifact_with(tmp_path, {"language": "python", "lock": {}}, {"files/app.py": b""})
    assert for_artifact(path, {"language": "python", "lock": {}}, "python:3.12-slim", tmp_path / "cache") is None


def test_a_lock_with_no_wheel_for_the_images_python_fails_with_one_line_naming_the_package(tmp_path: Path) -> None:
    path = artifact_with(tmp_path, {"language": "python", "lock": {"python": "requirements.lock"}},
                         {"requirements.lock": b"pyyaml==5.4.1\n", "files/app.py": b""})  # sdist only on 3.12
    with pytest.raises(BuildFailure) as e:
        for_artifact(path, artifact_manifest(path), "python:3.12-slim", tmp_path / "cache")
    assert "\n" not in e.value.message and str(tmp_path) not in e.value.message
    assert e.value.message.startswith("image: the packages of requirements.lock cannot be installed for Python 3.12 "
                                      "(x86_64-manylinux_2_28, wheels only): ")
    assert "pyyaml==5.4.1 has no usable wheels" in e.value.message


def started(reference: str, rootfs: Path) -> str:
    """Run the image's Cmd with its Env and WorkingDir from the unpacked rootfs (``/app`` -> the rootfs's, this
    machine's interpreters after the image's PATH, as the base image would give them) and GET / once it listens."""
    config = skopeo("inspect", "--tls-verify=false", "--config", f"docker://{reference}")["config"]
    env = {k: v.replace("/app", f"{rootfs}/app") for k, _, v in (e.partition("=") for e in config["Env"])}
    port = free_port()
    interpreters = ":".join(str(Path(p).parent) for p in (base_python(), shutil.which("node") or "/usr/bin/node"))
    env.update(PORT=str(port), PATH=f"{env['PATH']}:{interpreters}", PYTHONNOUSERSITE="1")  # no gunicorn there
    process = subprocess.Popen(config["Cmd"], cwd=rootfs / config["WorkingDir"].lstrip("/"), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise AssertionError(f"the image's command exited {process.returncode}: "
                                     f"{process.stderr.read().decode()[-2000:] if process.stderr else ''}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the image's command did not listen on $PORT within 30 s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_the_flask_and_express_images_commands_start_from_the_unpacked_files_and_answer(
        flask_builds: tuple[dict[str, Any], dict[str, Any]], express_build: dict[str, Any], tmp_path: Path) -> None:
    for name, build in (("flask", flask_builds[0]), ("express", express_build)):
        reference = build["image"]["reference"]
        answer = started(reference, unpack(reference, tmp_path / name))
        assert answer, f"{name}: an empty answer"
