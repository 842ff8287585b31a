"""The image-layers cache is pruned: layers not used for the maximum age go, then the least recently used while the
cache is over its size, never one used in the last minutes; a pruned layer is rebuilt with the same digest. Real
dependency layers (uv installs two small wheels per lock), their last use set with os.utime."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cellplane.build.archive import pack
from cellplane.images import layercache
from cellplane.images.dependencies import Dependencies, for_artifact
from cellplane.images.publish import artifact_manifest

DAY = 86400.0


def layer_of(tmp: Path, lock: str, cache: Path) -> Dependencies:
    stage = tmp / "stage"
    (stage / "files").mkdir(parents=True, exist_ok=True)
    (stage / "files" / "app.py").write_text("")
    (stage / "requirements.lock").write_text(lock)
    (stage / "manifest.json").write_text(json.dumps({"schema": 1, "language": "python", "workdir": "files",
                                                     "lock": {"python": "requirements.lock"}}))
    pack(stage, tmp / "artifact.tar.gz")
    found = for_artifact(tmp / "artifact.tar.gz", artifact_manifest(tmp / "artifact.tar.gz"), "python:3.12-slim",
                         cache)
    assert found is not None
    return found


def last_used(found: Dependencies, when: float) -> None:
    os.utime(found.layer.path.with_suffix("").with_suffix(".json"), (when, when))


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, list[Dependencies]]:
    cache = tmp_path / "cache"
    locks = ["blinker==1.9.0\n", "itsdangerous==2.2.0\n", "markupsafe==3.0.2\n"]
    return cache, [layer_of(tmp_path / f"a{i}", lock, cache) for i, lock in enumerate(locks)]


def test_layers_not_used_for_the_maximum_age_are_removed_and_come_back_with_the_same_digest(
        three: tuple[Path, list[Dependencies]], tmp_path: Path) -> None:
    cache, (old, recent, fresh) = three
    now = time.time()
    last_used(old, now - 20 * DAY)
    last_used(recent, now - 2 * DAY)
    pruned = layercache.prune(cache, max_age=14 * DAY, now=now)
    assert (pruned.removed, pruned.kept) == (1, 2) and pruned.freed == old.layer.size
    assert not old.layer.path.exists() and recent.layer.path.exists() and fresh.layer.path.exists()
    again = layer_of(tmp_path / "again", "blinker==1.9.0\n", cache)
    assert again.layer.digest == old.layer.digest and again.layer.path.exists()


def test_over_the_size_the_least_recently_used_go_first_but_never_one_used_minutes_ago(
        three: tuple[Path, list[Dependencies]]) -> None:
    cache, (a, b, c) = three
    now = time.time()
    last_used(a, now - 3 * DAY)
    last_used(b, now - 1 * DAY)
    last_used(c, now - 60)  # in flight, as far as pruning knows
    pruned = layercache.prune(cache, max_age=14 * DAY, max_bytes=c.layer.size + b.layer.size, now=now)
    assert pruned.removed == 1 and not a.layer.path.exists() and b.layer.path.exists()
    pruned = layercache.prune(cache, max_age=14 * DAY, max_bytes=1, now=now)
    assert pruned.removed == 1 and not b.layer.path.exists()
    assert c.layer.path.exists() and pruned.kept_bytes == c.layer.size  # over the size, but used a minute ago


def test_a_reused_layer_counts_as_used_now(three: tuple[Path, list[Dependencies]], tmp_path: Path) -> None:
    cache, (a, _, _) = three
    last_used(a, time.time() - 30 * DAY)
    layer_of(tmp_path / "reuse", "blinker==1.9.0\n", cache)  # the same lock: the cached layer, touched
    assert layercache.prune(cache, max_age=14 * DAY).removed == 0
    assert a.layer.path.exists()


def test_the_policy_is_read_from_the_control_planes_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELLPLANE_IMAGE_LAYERS_MAX_AGE_DAYS", raising=False)
    monkeypatch.delenv("CELLPLANE_IMAGE_LAYERS_MAX_BYTES", raising=False)
    assert layercache.settings() == (14 * DAY, 5 << 30)
    monkeypatch.setenv("CELLPLANE_IMAGE_LAYERS_MAX_AGE_DAYS", "3")
    monkeypatch.setenv("CELLPLANE_IMAGE_LAYERS_MAX_BYTES", "1000000")
    assert layercache.settings() == (3 * DAY, 1000000)
