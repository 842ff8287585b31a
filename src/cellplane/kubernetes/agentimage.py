"""The Kubernetes agent's image, built by the project's own image code (``cellplane.images``), without Docker.

``build_agent_image`` makes an OCI image of this package: the given Python base (read from the same registry, as
``images.publish`` reads a runtime's base), then one layer at ``/app/.python-packages`` holding the package's wheel
(``uv build --wheel`` of the source tree) and its dependencies, installed by ``uv pip install --target`` for the
base's Python and ``x86_64-manylinux_2_28``, wheels only (nothing is compiled or run), constrained to the versions
of the environment that builds it (``uv pip freeze``: the image runs what was tested here), console scripts made
to start with the image's ``python3``. Its config: ``PYTHONPATH`` naming the packages, their ``bin`` in front of
the base's ``PATH``, ``Cmd`` ``cellplane dataplane run --kubernetes``, the numeric non-root ``User`` of
Cellplane's images, OCI labels (title, version, revision). The layer is deterministic (``images.layer``), so the
same wheel and dependencies give the same digest and a rebuild uploads nothing but the manifest.

``python -m cellplane.kubernetes.agentimage --registry URL`` (``make agent-image REGISTRY=URL``) builds and pushes
it and prints the reference by digest, what ``cellplane dataplane manifest --kubernetes --image`` takes. Cost: the
wheel build (a second), the install (seconds from uv's cache; downloads the first time), one gzip pass over about
60 MB of packages, the uploads. Running the image needs a real node: the test cluster's kwok nodes run no
containers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cellplane import __version__
from cellplane.build.plan import BuildFailure
from cellplane.images import config as image_config
from cellplane.images import dependencies as image_dependencies
from cellplane.images import layer as image_layer
from cellplane.images import manifest as manifests
from cellplane.images.publish import read_base, split_reference
from cellplane.images.registry import Credentials, Registry, RegistryError

COMMAND = ["cellplane", "dataplane", "run", "--kubernetes"]
PACKAGES = image_dependencies.PYTHON_PACKAGES  # app/.python-packages
DEFAULT_BASE = "python:3.12-slim"
DEFAULT_REPOSITORY = "cellplane/agent"
SOURCE = Path(__file__).resolve().parents[3]  # the source tree this module runs from (its pyproject.toml)


class AgentImageError(Exception):
    """One line saying what failed and what would make it work."""


@dataclass(frozen=True)
class AgentImage:
    reference: str  # host/repository@sha256:...
    digest: str
    python: str  # the Python the packages were installed for
    layer_digest: str
    steps: list[str] = field(default_factory=list)


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(found).is_file():
        raise AgentImageError("uv is not installed (it is a dependency of cellplane: `make venv`)")
    return found


def _run(args: list[str], what: str, cwd: Path | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=1800,
                          env={**os.environ, "UV_NO_PROGRESS": "1"})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise AgentImageError(f"agent image: {what} failed: {last}")
    return done.stdout


def constraints() -> str:
    """The versions installed next to the running interpreter (this package's own line left out)."""
    frozen = _run([_uv(), "pip", "freeze", "--python", sys.executable], "reading the installed versions")
    return "".join(line + "\n" for line in frozen.splitlines()
                   if line and not line.startswith(("-e ", "#")) and not line.lower().startswith("cellplane"))


def wheel(source: Path, out: Path) -> Path:
    """This package's wheel, built from ``source`` (a tree with its pyproject.toml)."""
    if not (source / "pyproject.toml").is_file():
        raise AgentImageError(f"agent image: {source} has no pyproject.toml: give --source the cellplane source tree")
    _run([_uv(), "build", "--wheel", "--out-dir", str(out), str(source)], "building the wheel")
    built = sorted(out.glob("cellplane-*.whl"))
    if not built:
        raise AgentImageError("agent image: uv build made no cellplane wheel")
    return built[-1]


def packages_layer(wheel_path: Path, version: str, work: Path) -> image_layer.Layer:
    """The layer of the wheel and its dependencies for Python ``version``."""
    (work / "constraints.txt").write_text(constraints())
    target = work / "packages"
    _run([_uv(), "pip", "install", "--target", str(target), "--python-version", version, "--python-platform",
          image_dependencies.PYTHON_PLATFORM, "--only-binary", ":all:", "--constraint", str(work / "constraints.txt"),
          str(wheel_path)], f"installing the wheel and its dependencies for Python {version}")
    image_dependencies._portable_scripts(target / "bin")
    _forget_wheel_path(target)
    return image_layer.from_tree(target, PACKAGES, work / "layer.tar.gz")


def _forget_wheel_path(target: Path) -> None:
    """uv records where and when the wheel was installed from (``direct_url.json``: a temporary path;
    ``uv_cache.json``: a time): drop them and their RECORD lines, so that the same wheel gives the same layer."""
    dropped = ("direct_url.json", "uv_cache.json")
    for info in target.glob("cellplane-*.dist-info"):
        for name in dropped:
            (info / name).unlink(missing_ok=True)
        record = info / "RECORD"
        if record.is_file():
            lines = record.read_text().splitlines(keepends=True)
            record.write_text("".join(ln for ln in lines if not any(f"/{name}," in ln for name in dropped)))


def _revision(source: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def build_agent_image(registry: Registry, *, repository: str = DEFAULT_REPOSITORY, tag: str = __version__,
                      base: str = DEFAULT_BASE, source: Path = SOURCE) -> AgentImage:
    """Build the agent's image on ``base`` (a reference in ``registry``) and push it as ``repository:tag``."""
    base_repository, base_reference = split_reference(base)
    try:
        base_manifest, base_config = read_base(registry, base_repository, base_reference)
    except RegistryError as e:
        if e.status == 404:
            raise AgentImageError(f"agent image: the base image {base} is not in the registry {registry.host}: "
                                  "push it there (skopeo copy) or give --base") from None
        raise
    if base_manifest is None:
        raise AgentImageError(f"agent image: the base image {base} has no linux/amd64 image")
    target = image_dependencies.python_target(base, base_config)
    steps = []
    base_layers = manifests.layers_of(base_manifest)
    for d in base_layers:
        if base_repository != repository and not registry.mount(repository, d.digest, base_repository) \
                and not registry.blob_exists(repository, d.digest):
            raise AgentImageError(f"agent image: the registry would not link layer {d.digest} of {base}")
    steps.append(f"base {base}: {len(base_layers)} layer(s) linked into {repository}")
    with tempfile.TemporaryDirectory(prefix="cellplane-agent-image-") as tmp:
        work = Path(tmp)
        layer = packages_layer(wheel(source, work / "dist"), target["version"], work)
        steps.append(f"packages for Python {target['version']}: layer {layer.digest} ({layer.size} bytes)")
        if not registry.blob_exists(repository, layer.digest):
            registry.upload(repository, layer.digest, layer.path)
    base_path = next((str(e).partition("=")[2] for e in (base_config.get("config") or {}).get("Env") or []
                      if str(e).startswith("PATH=")), "/usr/local/bin:/usr/bin:/bin")
    labels = {"org.opencontainers.image.title": "cellplane-agent",
              "org.opencontainers.image.version": __version__,
              "org.opencontainers.image.description": "Cellplane's data-plane agent for Kubernetes",
              image_config.LABEL_COMPONENT: "agent"}
    revision = _revision(source)
    if revision:
        labels["org.opencontainers.image.revision"] = revision
    config = image_config.image_config(
        base_config, layer.diff_id, run=None, workdir=f"/{image_layer.ROOT}", port=None, labels=labels,
        env={"PYTHONPATH": f"/{PACKAGES}", "PATH": f"/{PACKAGES}/bin:{base_path}", "PYTHONUNBUFFERED": "1"},
        cmd=COMMAND)
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    if not registry.blob_exists(repository, config_digest):
        registry.upload(repository, config_digest, config)
    manifest = manifests.image_manifest(
        manifests.Descriptor(image_config.MEDIA_TYPE, config_digest, len(config)),
        [*base_layers, manifests.Descriptor(image_layer.MEDIA_TYPE, layer.digest, layer.size)])
    digest = registry.put_manifest(repository, tag, manifest, manifests.OCI_MANIFEST)
    steps.append(f"image {registry.host}/{repository}@{digest} (tag {tag})")
    return AgentImage(f"{registry.host}/{repository}@{digest}", digest, target["version"], layer.digest, steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cellplane.kubernetes.agentimage",
                                     description="Build the Kubernetes agent's image and push it to a registry.")
    parser.add_argument("--registry", required=True, help="the registry's URL (http:// only on loopback)")
    parser.add_argument("--repository", default=DEFAULT_REPOSITORY)
    parser.add_argument("--tag", default=__version__)
    parser.add_argument("--base", default=DEFAULT_BASE,
                        help="a Debian-based Python image in that registry (default python:3.12-slim)")
    parser.add_argument("--source", type=Path, default=SOURCE, help="the cellplane source tree")
    parser.add_argument("--username", default=os.environ.get("CELLPLANE_REGISTRY_USERNAME"),
                        help="with the password in CELLPLANE_REGISTRY_PASSWORD")
    args = parser.parse_args(argv)
    password = os.environ.get("CELLPLANE_REGISTRY_PASSWORD")
    credentials = Credentials(args.username, password) if args.username and password else None
    try:
        with Registry(args.registry, credentials) as registry:
            image = build_agent_image(registry, repository=args.repository, tag=args.tag, base=args.base,
                                      source=args.source.resolve())
    except (AgentImageError, RegistryError, BuildFailure) as e:
        print(str(getattr(e, "message", e)), file=sys.stderr)
        return 1
    for step in image.steps:
        print(step, file=sys.stderr)
    print(image.reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
