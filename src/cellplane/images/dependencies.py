"""The dependency layer of an image: the packages a Python or Node.js artifact's lock names, installed for the image.

An artifact carries its lock, not its packages (the local data plane installs them at deploy time:
``runtime.materialize``). So that an image starts on its own, ``publish`` puts one more layer between the base and
the application:

- **Python**: ``uv pip install --target <dir> --python-version X.Y --python-platform x86_64-manylinux_2_28
  --no-deps --only-binary :all: -r requirements.lock`` (wheels only: nothing is compiled or run), at
  ``/app/.python-packages``; the image's ``Env`` gets ``PYTHONPATH`` naming it and its ``bin`` (console scripts,
their ``#!`` rewritten to ``/usr/bin/env python3``) in front of ``PATH``. ``X.Y`` is the base image's
  Python, read from its tag (``python:3.12-slim`` -> 3.12), else this machine's.
- **Node.js**: ``npm ci --omit=dev --ignore-scripts`` of the artifact's package.json and package-lock.json in a
  staging directory, its ``node_modules`` at ``/app/<workdir>/node_modules`` (where Node.js looks first), its
  ``.bin`` in front of ``PATH``.

Each layer is keyed by the lock's digest (and for Python the version and platform) and kept on disk under
``<cache>/image-layers/``: a rebuild or another registry with the same lock reuses the same bytes, so the layer
has the same digest and the registry already holds it. Installs use the shared package caches
(``DependencyCache``), so a new lock fetches only the packages that changed. Cost of a new lock: the install
(seconds, mostly downloads) and one gzip pass; of a known one: one stat and reading a small JSON file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellplane.build.plan import BuildFailure
from cellplane.images import gems
from cellplane.images import layer as image_layer
from cellplane.runtime.materialize import DependencyCache, base_env, digest_of, locked, run

PYTHON_PACKAGES = f"{image_layer.ROOT}/.python-packages"
PYTHON_PLATFORM = "x86_64-manylinux_2_28"
_VERSION = re.compile(r"(?<![\d.])(3\.\d{1,2})(?![\d])")


SUPPORTED_PYTHONS = ((3, 8), (3, 14))  # the versions uv installs wheels for here (--python-version)


@dataclass(frozen=True)
class Dependencies:
    layer: image_layer.Layer
    env: dict[str, str]  # what the image's Env gains
    path: str  # what goes in front of the base's PATH: the packages' commands (gunicorn, ...)
    what: str  # for the build's log
    python: dict[str, str] | None = None  # Python layers: version, platform, and where the version was read


def python_target(base: str, base_config: dict[str, Any] | None) -> dict[str, str]:
    """The Python (and platform) the packages of an image on ``base`` are installed for: the base's
    ``PYTHON_VERSION`` (official python images set it), else its tag's ``3.N``, else this machine's. Raises a
    one-line BuildFailure when this machine cannot produce packages the base runs: a platform other than
    linux/amd64, an Alpine (musl) base, a tag and a ``PYTHON_VERSION`` that disagree, a version outside
    ``SUPPORTED_PYTHONS``: an image whose packages do not import is worse than no image."""
    config = base_config or {}
    platform = f"{config.get('os') or 'linux'}/{config.get('architecture') or 'amd64'}"
    if platform != "linux/amd64":
        raise BuildFailure(f"image: the base image {base} is {platform}, and an image's Python packages are "
                           f"installed for x86_64 only ({PYTHON_PLATFORM}): use a linux/amd64 base")
    env = dict(str(e).partition("=")[::2] for e in (config.get("config") or {}).get("Env") or [])
    tag = base.partition("@")[0].rpartition(":")[2]
    if "alpine" in tag.lower():
        raise BuildFailure(f"image: the base image {base} is Alpine (musl libc), and an image's Python packages are "
                           f"manylinux wheels (glibc): use a Debian-based base such as python:3.12-slim")
    tagged = python_version(base)
    found = _VERSION.match(env.get("PYTHON_VERSION", ""))
    declared = found.group(1) if found else None
    if tagged and declared and tagged != declared:
        raise BuildFailure(f"image: the base image {base} names Python {tagged} in its tag and holds Python "
                           f"{declared} (its PYTHON_VERSION): fix the tag, or set registry.baseImages.python")
    version = declared or tagged or f"{sys.version_info.major}.{sys.version_info.minor}"
    source = "the base's PYTHON_VERSION" if declared else "the base's tag" if tagged else "the control plane's Python"
    low, high = SUPPORTED_PYTHONS
    if not low <= tuple(int(n) for n in version.split(".")) <= high:
        raise BuildFailure(f"image: the base image {base} runs Python {version}, and packages are installed here for "
                           f"Python {low[0]}.{low[1]} to {high[0]}.{high[1]} only: use a base with one of those")
    return {"version": version, "platform": PYTHON_PLATFORM, "from": source}


def python_version(base: str) -> str | None:
    """The Python of a base image reference, from its tag (``python:3.12-slim`` -> ``3.12``), or None."""
    name, _, tag = base.partition("@")[0].rpartition(":")
    if not name or "/" in tag:
        return None
    found = _VERSION.search(tag)
    return found.group(1) if found else None


def for_artifact(artifact: Path, meta: dict[str, Any], base: str, cache_root: Path,
                 base_config: dict[str, Any] | None = None) -> Dependencies | None:
    """The dependency layer of ``artifact`` (``meta``: its manifest) on ``base`` (``base_config``: its image
    config, when read), or None when it needs none."""
    lock = meta.get("lock") or {}
    language = meta.get("language")
    cache_root = cache_root.resolve()  # the installers run in a staging directory: relative paths would move
    if language == "python" and lock.get("python"):
        target = python_target(base, base_config)
        version = target["version"]
        text = _member(artifact, lock["python"])
        layer = _python(text, version, DependencyCache(cache_root), lock["python"])
        return Dependencies(layer, {"PYTHONPATH": f"/{PYTHON_PACKAGES}"}, f"/{PYTHON_PACKAGES}/bin",
                            f"Python {version} packages of {lock['python']} at /{PYTHON_PACKAGES}", target)
    if language == "node" and lock.get("node"):
        workdir = str(meta.get("workdir") or "files")
        package_json = _member(artifact, f"{workdir}/package.json")
        layer = _node(package_json, _member(artifact, lock["node"]), workdir, DependencyCache(cache_root))
        return Dependencies(layer, {"NODE_ENV": "production"}, f"/{image_layer.ROOT}/{workdir}/node_modules/.bin",
                            f"node_modules of {lock['node']} at /{image_layer.ROOT}/{workdir}/node_modules")
    if language == "ruby" and lock.get("ruby"):
        machine = gems.machine_ruby()
        wanted = gems.ruby_version(base)
        gems.check_asked(meta.get("languageVersion"), wanted, base)
        ruby_abi = gems.abi(wanted) if wanted else machine
        folder = str(lock["ruby"]).rpartition("/")[0] or "."
        inputs = (_member(artifact, lock["ruby"]), _member(artifact, f"{folder}/Gemfile"), ruby_abi.encode(),
                  machine.encode())
        key = "ruby-" + digest_of(*inputs)[:40]
        layer = _cached(DependencyCache(cache_root), key, lambda tmp, dest: gems.install(
            artifact, folder, lock["ruby"], ruby_abi, machine, DependencyCache(cache_root), tmp, dest))
        return Dependencies(layer, gems.env(f"/{image_layer.ROOT}/{folder}/Gemfile"),
                            f"/{gems.RUBY_GEMS}/ruby/{ruby_abi}/bin",
                            f"Ruby {ruby_abi} gems of {lock['ruby']} at /{gems.RUBY_GEMS}")
    return None


def _member(artifact: Path, name: str) -> bytes:
    with tarfile.open(artifact, "r:gz") as tar:
        try:
            member = tar.extractfile(name)
        except KeyError:
            member = None
        if member is None:
            raise BuildFailure(f"image: the artifact has no {name}")
        return member.read()


def _cached(cache: DependencyCache, key: str, build: Any) -> image_layer.Layer:
    """The layer stored under ``key``, built once by ``build(staging_dir, dest)`` under a file lock."""
    folder = cache.root / "image-layers"
    folder.mkdir(parents=True, exist_ok=True)
    blob, record = folder / f"{key}.tar.gz", folder / f"{key}.json"
    with locked(blob):
        if not record.exists():
            with tempfile.TemporaryDirectory(prefix="cellplane-deps-", dir=folder) as tmp:
                made: image_layer.Layer = build(Path(tmp), blob)
            record.write_text(json.dumps({"digest": made.digest, "diff_id": made.diff_id, "size": made.size}))
        else:
            os.utime(record)  # its last use, which layercache.prune goes by
    seen = json.loads(record.read_text())
    return image_layer.Layer(blob, seen["digest"], seen["diff_id"], int(seen["size"]))


def _python(lock: bytes, version: str, cache: DependencyCache, name: str = "requirements.lock") -> image_layer.Layer:
    key = "python-" + digest_of(lock, version.encode(), PYTHON_PLATFORM.encode())[:40]

    def build(tmp: Path, dest: Path) -> image_layer.Layer:
        uv = cache.uv()
        if not uv:
            raise BuildFailure("image: uv is not installed, so the Python packages cannot be installed for the image")
        (tmp / "requirements.lock").write_bytes(lock)
        target = tmp / "packages"
        said: list[str] = []
        try:
            run([uv, "pip", "install", "--target", str(target), "--python-version", version, "--python-platform",
                 PYTHON_PLATFORM, "--no-deps", "--only-binary", ":all:", "-r", str(tmp / "requirements.lock")],
                cwd=tmp, env=base_env(cache), log=said.append, what=f"installing the packages for Python {version}")
        except BuildFailure as e:
            cause = next((ln.strip().removeprefix("cause: ") for ln in said if ln.strip().startswith("cause:")), None)
            raise BuildFailure(f"image: the packages of {name} cannot be installed for Python {version} "
                               f"({PYTHON_PLATFORM}, wheels only): {cause or e.message}", where=name) from None
        _portable_scripts(target / "bin")
        return image_layer.from_tree(target, PYTHON_PACKAGES, dest)

    return _cached(cache, key, build)


def _portable_scripts(folder: Path) -> None:
    """Console scripts (``gunicorn``, ``flask``) start with this machine's interpreter's path: make them start with
    the image's ``python3`` from ``PATH`` instead."""
    if not folder.is_dir():
        return
    for script in sorted(folder.iterdir()):
        if not script.is_file() or script.is_symlink():
            continue
        body = script.read_bytes()
        first, newline, rest = body.partition(b"\n")
        if first.startswith(b"#!") and b"python" in first:
            script.write_bytes(b"#!/usr/bin/env python3" + newline + rest)


def _node(package_json: bytes, lock: bytes, workdir: str, cache: DependencyCache) -> image_layer.Layer:
    key = "node-" + digest_of(package_json, lock, workdir.encode())[:40]

    def build(tmp: Path, dest: Path) -> image_layer.Layer:
        npm = shutil.which("npm")
        if not npm:
            raise BuildFailure("image: npm is not installed, so node_modules cannot be installed for the image")
        (tmp / "package.json").write_bytes(package_json)
        (tmp / "package-lock.json").write_bytes(lock)
        run([npm, "ci", "--omit=dev", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"], cwd=tmp,
            env=base_env(cache), log=lambda _: None, what="npm ci for the image")
        (tmp / "node_modules").mkdir(exist_ok=True)
        return image_layer.from_tree(tmp / "node_modules", f"{image_layer.ROOT}/{workdir}/node_modules", dest)

    return _cached(cache, key, build)
