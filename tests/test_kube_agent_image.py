"""The Kubernetes agent's image (kubernetes/agentimage.py), built by the project's own image code and pushed to
Debian's docker-registry on loopback (tests/registrykit.py) by the command `make agent-image` runs. skopeo reads
its config, umoci unpacks it, and this machine's base Python, with nothing but the image's packages on its path,
imports cellplane and its dependencies from the unpacked files and runs its CLI. (The tiny test base names no
Python in its tag, so the packages are installed for this machine's Python. Running the image needs a real node:
the test cluster's kwok nodes run no containers.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellplane import __version__
from cellplane.kubernetes.agentimage import COMMAND, PACKAGES
from registrykit import BASE_REPOSITORY, BASE_TAG, LocalRegistry, skopeo

BASE = f"{BASE_REPOSITORY}:{BASE_TAG}"


def build(registry: LocalRegistry, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cellplane.kubernetes.agentimage", "--registry", registry.url,
                           "--base", BASE, *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def image(registry: LocalRegistry) -> str:
    done = build(registry)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_agent_image_is_pushed_by_digest_with_its_command_a_non_root_user_and_labels(
        registry: LocalRegistry, image: str) -> None:
    assert image.startswith(f"{registry.host}/cellplane/agent@sha256:")
    seen = skopeo("inspect", "--tls-verify=false", f"docker://{image}")
    assert len(seen["Layers"]) == 2  # the base's, the packages
    config = skopeo("inspect", "--tls-verify=false", "--config", f"docker://{image}")["config"]
    assert config["Cmd"] == COMMAND == ["cellplane", "dataplane", "run", "--kubernetes"]
    assert config["User"] == "10014"
    assert config["Labels"]["org.opencontainers.image.title"] == "cellplane-agent"
    assert config["Labels"]["org.opencontainers.image.version"] == __version__
    assert config["Labels"]["base"] == "tiny"  # the base's own label kept
    env = dict(e.partition("=")[::2] for e in config["Env"])
    assert env["PYTHONPATH"] == f"/{PACKAGES}" and env["PATH"].startswith(f"/{PACKAGES}/bin:")
    tagged = skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/cellplane/agent:{__version__}")
    assert tagged["Digest"] == image.rpartition("@")[2]


def test_the_unpacked_image_holds_cellplane_and_its_dependencies_importable_and_its_cli_runs(
        image: str, tmp_path: Path) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{image}",
                    f"oci:{tmp_path / 'layout'}:img"], check=True, capture_output=True, timeout=120)
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:img",
                    str(tmp_path / "bundle")], check=True, capture_output=True, timeout=120)
    packages = tmp_path / "bundle" / "rootfs" / PACKAGES
    assert (packages / "cellplane" / "kubernetes" / "install.py").is_file()
    script = (packages / "bin" / "cellplane").read_text()
    assert script.startswith("#!/usr/bin/env python3\n")
    python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(packages), "HOME": str(tmp_path)}
    probe = ("import cellplane, cellplane.kubernetes.runtime, cellplane.dataplane.agent, lightkube, httpx, yaml; "
             "print(cellplane.__file__)")
    done = subprocess.run([str(python), "-s", "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(packages))
    done = subprocess.run([str(python), "-s", str(packages / "bin" / "cellplane"), "dataplane", "run", "--help"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--token-file" in done.stdout and "--kubernetes" in done.stdout


def test_a_second_build_of_the_same_tree_gives_the_same_image(registry: LocalRegistry, image: str) -> None:
    done = build(registry, "--tag", "again")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == image
