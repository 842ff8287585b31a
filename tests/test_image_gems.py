"""Ruby images that start on their own: a Ruby build's image carries its gems, installed by Bundler in deployment
mode from the vendored gems, in a layer between the base and the application, with BUNDLE_* set so `bundle exec`
finds them. A real control plane builds the ruby-gems fixture (its gem built into vendor/cache, as `bundle cache`
does) and pushes to Debian's docker-registry on loopback; umoci unpacks the image and its own Cmd runs from there
with the machine's ruby (the tiny test base names no Ruby, so the gems are installed for the machine's)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildkit import APPS, BuildServer, component, failed_why, log_text, upload, wait
from cellplane.build.archive import pack
from cellplane.build.plan import BuildFailure
from cellplane.images import gems
from cellplane.images.dependencies import for_artifact
from cellplane.images.publish import artifact_manifest
from conftest import _in_ci
from liveserver import doc, free_port
from registrykit import BASE_REPOSITORY, BASE_TAG, LocalRegistry, skopeo

BASE = f"{BASE_REPOSITORY}:{BASE_TAG}"


def needs_ruby() -> None:
    missing = [t for t in ("ruby", "bundle", "gem") if shutil.which(t) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (Debian: apt-get install ruby)"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def vendored(tmp: Path, gemfile: str | None = None) -> Path:
    """The ruby-gems fixture with its gem built into vendor/cache (what `bundle cache` commits)."""
    source = tmp / "ruby-gems"
    shutil.copytree(APPS / "ruby-gems", source)
    if gemfile is not None:
        (source / "Gemfile").write_text(gemfile)
    (source / "vendor" / "cache").mkdir(parents=True)
    built = subprocess.run(["gem", "build", "greeting.gemspec"], cwd=source / "gems" / "greeting",
                           capture_output=True, text=True, check=False, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    shutil.move(source / "gems" / "greeting" / "greeting-0.1.0.gem", source / "vendor" / "cache")
    return source


@pytest.fixture(scope="module")
def ruby_build(build_server: BuildServer, registry: LocalRegistry,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    needs_ruby()
    c = build_server.client
    r = c.post("/apply", json={"documents": [doc("Organization", "default", {"registry": {
        "url": registry.url, "repositoryPrefix": "gems", "baseImages": {"ruby": BASE}}})]})
    assert r.status_code == 200, r.text
    component(c, "gems", "greeter", {"type": "service", "endpoints": [{"name": "http", "port": 8000}]})
    build = wait(c, upload(c, "gems", "greeter", vendored(tmp_path_factory.mktemp("src"))))
    assert build["state"] == "succeeded", failed_why(c, build)
    return build


def test_a_ruby_image_has_a_gems_layer_and_the_bundle_settings_that_find_it(
        ruby_build: dict[str, Any], build_server: BuildServer) -> None:
    reference = ruby_build["image"]["reference"]
    assert len(skopeo("inspect", "--tls-verify=false", f"docker://{reference}")["Layers"]) == 3
    config = skopeo("inspect", "--tls-verify=false", "--config", f"docker://{reference}")
    env = dict(e.partition("=")[::2] for e in config["config"]["Env"])
    assert env["BUNDLE_PATH"] == "/app/.ruby-gems" == env["BUNDLE_APP_CONFIG"]
    assert env["BUNDLE_GEMFILE"] == "/app/files/Gemfile"
    assert env["BUNDLE_DEPLOYMENT"] == "true" and env["BUNDLE_WITHOUT"] == "development:test"
    assert config["config"]["Cmd"] == ["bundle", "exec", "ruby", "app.rb"]
    assert "gems of files/Gemfile.lock" in config["history"][-2]["created_by"]
    assert "dependencies (Ruby" in log_text(build_server.client, ruby_build["id"])


def test_the_images_command_starts_from_the_unpacked_files_with_only_the_gems_layer_and_answers(
        ruby_build: dict[str, Any], tmp_path: Path) -> None:
    reference = ruby_build["image"]["reference"]
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{reference}",
                    f"oci:{tmp_path / 'layout'}:img"], check=True, capture_output=True, timeout=120)
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:img",
                    str(tmp_path / "bundle")], check=True, capture_output=True, timeout=120)
    rootfs = tmp_path / "bundle" / "rootfs"
    machine = gems.machine_ruby()
    assert (rootfs / "app" / ".ruby-gems" / "ruby" / machine / "gems" / "greeting-0.1.0" / "lib" / "greeting.rb"
            ).is_file()
    # What the build installed for itself is not what the image uses: take it away.
    shutil.rmtree(rootfs / "app" / "files" / "vendor" / "bundle", ignore_errors=True)
    shutil.rmtree(rootfs / "app" / "files" / ".bundle", ignore_errors=True)
    config = skopeo("inspect", "--tls-verify=false", "--config", f"docker://{reference}")["config"]
    env = {k: v.replace("/app", f"{rootfs}/app") for k, _, v in (e.partition("=") for e in config["Env"])}
    port = free_port()
    env.update(PORT=str(port), HOME=str(tmp_path), PATH=f"{env['PATH']}:/usr/bin")
    process = subprocess.Popen(config["Cmd"], cwd=rootfs / config["WorkingDir"].lstrip("/"), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the image's command exited {process.returncode}: "
                                     f"{process.stderr.read().decode()[-2000:] if process.stderr else ''}")
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/ada", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the image's command did not listen on $PORT"
                time.sleep(0.1)
        assert answer == {"app": "ruby-gems", "greeting": "hello ada"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def built_artifact(tmp: Path, source: Path) -> Path:
    """An artifact as the runner writes one for ``source`` after `bundle install --local` made its Gemfile.lock."""
    stage = tmp / "stage"
    shutil.copytree(source, stage / "files")
    done = subprocess.run(["bundle", "install", "--local"], cwd=stage / "files", capture_output=True, text=True,
                          env={**os.environ, "HOME": str(tmp), "BUNDLE_PATH": "vendor/bundle",
                               "BUNDLE_APP_CONFIG": str(tmp / "bundle-config")}, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (stage / "manifest.json").write_text(json.dumps({
        "schema": 1, "language": "ruby", "run": "bundle exec ruby app.rb", "workdir": "files",
        "lock": {"ruby": "files/Gemfile.lock"}}))
    pack(stage, tmp / "artifact.tar.gz")
    return tmp / "artifact.tar.gz"


def test_pure_ruby_gems_go_to_the_images_ruby_directory_the_same_bytes_from_two_caches(tmp_path: Path) -> None:
    needs_ruby()
    source = vendored(tmp_path, gemfile='source "https://rubygems.org"\ngem "greeting", "0.1.0"\n')
    artifact = built_artifact(tmp_path / "a", source)
    meta = artifact_manifest(artifact)
    one = for_artifact(artifact, meta, "mirror/ruby:3.3-slim", tmp_path / "cache-one")
    two = for_artifact(artifact, meta, "mirror/ruby:3.3-slim", tmp_path / "cache-two")
    assert one is not None and two is not None
    assert one.layer.digest == two.layer.digest
    with tarfile.open(one.layer.path) as tar:
        names = tar.getnames()
    assert "app/.ruby-gems/ruby/3.3.0/gems/greeting-0.1.0/lib/greeting.rb" in names
    assert "app/.ruby-gems/ruby/3.3.0/specifications/greeting-0.1.0.gemspec" in names
    assert one.path == "/app/.ruby-gems/ruby/3.3.0/bin"


def test_a_base_whose_ruby_is_not_the_one_the_source_asks_for_is_refused_with_one_line(tmp_path: Path) -> None:
    needs_ruby()
    artifact = built_artifact(tmp_path, vendored(tmp_path / "src"))  # its Gemfile says ruby "3.1.2"
    meta = {**artifact_manifest(artifact), "languageVersion": "3.1.2"}
    with pytest.raises(BuildFailure) as e:
        for_artifact(artifact, meta, "ruby:3.3-slim", tmp_path / "cache")
    assert e.value.message == ("image: the source asks for Ruby 3.1.2 and the base image ruby:3.3-slim runs Ruby "
                               "3.3: set registry.baseImages.ruby to a Ruby 3.1 base image")
    assert gems.ruby_version("ruby:3.3-slim") == "3.3" and gems.ruby_version("ruby:3.3.6-bookworm") == "3.3"
    assert gems.ruby_version("base/tiny:1") is None and gems.abi("3.3") == "3.3.0"


def test_a_gem_with_a_native_extension_for_another_ruby_than_the_machines_is_refused_with_one_line(
        tmp_path: Path) -> None:
    needs_ruby()
    gem = tmp_path / "native"
    (gem / "ext").mkdir(parents=True)
    (gem / "lib").mkdir()
    (gem / "lib" / "native.rb").write_text("module Native; end\n")
    # An extension that needs no compiler or Ruby headers: its extconf.rb writes the Makefile itself.
    (gem / "ext" / "extconf.rb").write_text(
        'makefile = "all:\\n\\tprintf built > built.txt\\n"\n'
        'File.write("Makefile", makefile + "install:\\n\\ttrue\\nclean:\\n\\trm -f built.txt\\n")\n')
    (gem / "native.gemspec").write_text(
        'Gem::Specification.new do |s|\n  s.name = "native"\n  s.version = "0.1.0"\n  s.summary = "An extension"\n'
        '  s.authors = ["Cellplane tests"]\n  s.files = ["lib/native.rb", "ext/extconf.rb"]\n'
        '  s.extensions = ["ext/extconf.rb"]\n  s.license = "MIT"\nend\n')
    built = subprocess.run(["gem", "build", "native.gemspec"], cwd=gem, capture_output=True, text=True, timeout=120,
                           check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    source = tmp_path / "app"
    (source / "vendor" / "cache").mkdir(parents=True)
    shutil.move(gem / "native-0.1.0.gem", source / "vendor" / "cache")
    (source / "Gemfile").write_text('source "https://rubygems.org"\ngem "native", "0.1.0"\n')
    (source / "app.rb").write_text('require "native"\n')
    artifact = built_artifact(tmp_path / "a", source)
    machine = gems.machine_ruby()
    with pytest.raises(BuildFailure) as e:
        for_artifact(artifact, artifact_manifest(artifact), "ruby:3.3-slim", tmp_path / "cache")
    assert e.value.message == (
        f"image: the gems of files/Gemfile.lock include native extensions (native-0.1.0) that this machine's Ruby "
        f"{machine} builds and the image's Ruby 3.3.0 cannot load: set registry.baseImages.ruby to a Ruby "
        f"{machine.rsplit('.', 1)[0]} base image")
    # For the machine's own Ruby the same lock installs, extension and all.
    same = for_artifact(artifact, artifact_manifest(artifact), f"ruby:{machine.rsplit('.', 1)[0]}-slim",
                        tmp_path / "cache")
    assert same is not None
    with tarfile.open(same.layer.path) as tar:
        assert f"app/.ruby-gems/ruby/{machine}/gems/native-0.1.0/lib/native.rb" in tar.getnames()
