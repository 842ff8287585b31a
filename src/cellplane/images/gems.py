"""The Ruby dependency layer of an image: the gems a Gemfile.lock pins, installed by Bundler for the image's Ruby.

The build already installs vendored gems (``vendor/cache``) into the artifact's ``vendor/bundle`` for this machine's
Ruby; an image's Ruby is its base's (``ruby:3.3-slim`` -> 3.3), whose gem directory is ``ruby/3.3.0``, so those do
not load there. ``install`` runs ``bundle install --local`` in deployment mode (``BUNDLE_DEPLOYMENT``: the lock
must match the Gemfile; ``--local``: gems come from ``vendor/cache`` only, nothing from rubygems.org, which the
build machine cannot reach) on a copy of the artifact's application without its ``vendor/bundle`` and
``.bundle``, into a staging ``BUNDLE_PATH``, without the ``development`` and ``test`` groups. When the image's
Ruby is not this machine's, the installed ``ruby/<this ABI>`` tree is renamed to the image's: that is right for
pure-Ruby gems, and a gem with a native extension (compiled here, for this Ruby) is refused with one line instead
of giving an image that fails at ``require``. Gem commands' ``#!`` lines are rewritten to ``/usr/bin/env ruby``.

The image's ``Env`` (``env``) points Bundler at the layer: ``BUNDLE_PATH=/app/.ruby-gems``,
``BUNDLE_APP_CONFIG`` there too (so a committed ``.bundle/config`` naming ``vendor/bundle`` is not read),
``BUNDLE_GEMFILE``, ``BUNDLE_DEPLOYMENT=true``, ``BUNDLE_WITHOUT=development:test``: ``bundle exec`` finds the
gems. Cost of a new lock: one ``bundle install --local`` (about a second for a few pure-Ruby gems, longer with
native extensions) and one gzip pass; a known lock costs what ``dependencies._cached`` says.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from cellplane.build.plan import BuildFailure
from cellplane.images import layer as image_layer
from cellplane.runtime.materialize import DependencyCache, base_env, run

RUBY_GEMS = f"{image_layer.ROOT}/.ruby-gems"
WITHOUT = "development:test"
_VERSION = re.compile(r"(?<![\d.])([234]\.\d{1,2})(?![\d])")


def ruby_version(base: str) -> str | None:
    """The Ruby of a base image reference, from its tag (``ruby:3.3-slim`` -> ``3.3``), or None."""
    name, _, tag = base.partition("@")[0].rpartition(":")
    if not name or "/" in tag:
        return None
    found = _VERSION.search(tag)
    return found.group(1) if found else None


def machine_ruby() -> str:
    """This machine's Ruby ABI directory name (``3.1.0``); fails with one line when Ruby is not installed."""
    ruby = shutil.which("ruby")
    if not ruby or not shutil.which("bundle"):
        raise BuildFailure("image: ruby and bundle are not installed, so the gems cannot be installed for the image")
    out = subprocess.run([ruby, "-e", 'print RbConfig::CONFIG["ruby_version"]'], capture_output=True, text=True,
                         timeout=60, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise BuildFailure(f"image: ruby did not say its version: {out.stderr.strip()[-200:]}")
    return out.stdout.strip()


def abi(version: str) -> str:
    """``3.3`` -> ``3.3.0``: the directory RubyGems and Bundler keep a Ruby's gems in."""
    return ".".join([*version.split("."), "0"][:2]) + ".0"


def check_asked(asked: object, wanted: str | None, base: str) -> None:
    """Refuse, in one line, a base whose Ruby (``wanted``, from its tag) is not the one the source asks for
    (``asked``: the manifest's ``languageVersion``, from ``.ruby-version`` or the Gemfile's ``ruby``): Bundler
    would refuse to start there."""
    if not isinstance(asked, str) or not wanted:
        return
    if asked.split(".")[:2] != wanted.split(".")[:2]:
        raise BuildFailure(f"image: the source asks for Ruby {asked} and the base image {base} runs Ruby {wanted}: "
                           f"set registry.baseImages.ruby to a Ruby {'.'.join(asked.split('.')[:2])} base image")


def env(gemfile: str) -> dict[str, str]:
    """What the image's Env gains (``gemfile``: the Gemfile's path in the image)."""
    return {"BUNDLE_PATH": f"/{RUBY_GEMS}", "BUNDLE_APP_CONFIG": f"/{RUBY_GEMS}", "BUNDLE_GEMFILE": gemfile,
            "BUNDLE_DEPLOYMENT": "true", "BUNDLE_WITHOUT": WITHOUT}


def install(artifact: Path, workdir: str, lock_name: str, target: str, machine: str, cache: DependencyCache,
            tmp: Path, dest: Path) -> image_layer.Layer:
    """Install the gems of ``workdir`` (the artifact's folder holding the Gemfile) for Ruby ABI ``target``
    into the layer ``dest``. ``machine``: this machine's Ruby ABI."""
    source = tmp / "app"
    skipped = (f"{workdir}/vendor/bundle", f"{workdir}/.bundle")
    with tarfile.open(artifact, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(workdir + "/")
                   and not any(m.name == s or m.name.startswith(s + "/") for s in skipped)]
        tar.extractall(tmp / "artifact", members=members, filter="data")
    shutil.move(tmp / "artifact" / workdir, source)
    gems = tmp / "gems"
    environment = {**base_env(cache), "BUNDLE_PATH": str(gems), "BUNDLE_APP_CONFIG": str(tmp / "bundle-config"),
                   "BUNDLE_GEMFILE": str(source / "Gemfile"), "BUNDLE_DEPLOYMENT": "true", "BUNDLE_FROZEN": "true",
                   "BUNDLE_WITHOUT": WITHOUT, "BUNDLE_USER_HOME": str(tmp / "bundle-home")}
    said: list[str] = []
    try:
        run(["bundle", "install", "--local", "--no-cache"], cwd=source, env=environment, log=said.append,
            what="bundle install for the image")
    except BuildFailure as e:
        cause = next((ln.strip() for ln in said if "Could not find" in ln or "Gemfile.lock" in ln), None)
        raise BuildFailure(f"image: the gems of {lock_name} cannot be installed for the image: "
                           f"{cause or e.message}", where=lock_name) from None
    installed = gems / "ruby" / machine
    if not installed.is_dir():
        installed.mkdir(parents=True)
    shutil.rmtree(installed / "cache", ignore_errors=True)  # the .gem files: vendor/cache has them
    if target != machine:
        native = sorted(p.name for p in (installed / "extensions").glob("*/*/*") if p.is_dir()) \
            if (installed / "extensions").is_dir() else []
        if native:
            raise BuildFailure(
                f"image: the gems of {lock_name} include native extensions ({', '.join(native[:3])}) that this "
                f"machine's Ruby {machine} builds and the image's Ruby {target} cannot load: set "
                f"registry.baseImages.ruby to a Ruby {machine.rsplit('.', 1)[0]} base image", where=lock_name)
        installed.rename(gems / "ruby" / target)
    _portable_scripts(gems / "ruby" / target / "bin")
    return image_layer.from_tree(gems, RUBY_GEMS, dest)


def _portable_scripts(folder: Path) -> None:
    """Gem commands start with this machine's ruby's path: make them start with the image's ``ruby``."""
    if not folder.is_dir():
        return
    for script in sorted(folder.iterdir()):
        if script.is_file() and not script.is_symlink():
            first, newline, rest = script.read_bytes().partition(b"\n")
            if first.startswith(b"#!") and b"ruby" in first:
                script.write_bytes(b"#!/usr/bin/env ruby" + newline + rest)
