"""Build times: cold (empty caches), warm (same dependencies), and after a source-only change.

    make bench                      # or: .venv/bin/python benchmarks/bench_builds.py [--apps flask-procfile,express]

For each sample app, starts a real control plane with an empty data directory and an empty dependency
cache, builds the app from tests/fixtures/apps three times, and prints the wall-clock time of each build as the
control plane measured it (started -> finished) and as the client saw it (request -> terminal state).
Numbers go in docs/performance.md; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from buildkit import APPS, component, upload, wait  # noqa: E402
from liveserver import start_server  # noqa: E402

DEFAULT_APPS = ("flask-procfile", "fastapi-pyproject", "flask-dockerfile", "express", "static-site", "go-chi",
                "java-spring")
# Warm-rebuild targets (seconds) where an app's differs from WARM_TARGET: Go compiles, from a warm GOCACHE; Spring
# Boot is a Maven build.
WARM_TARGET = 3.0
WARM_TARGETS = {"go-chi": 5.0, "java-spring": 30.0}
WRAPPER_PLUGIN = "org.apache.maven.plugins:maven-wrapper-plugin:3.3.4:wrapper"


def source_of(app: str, tmp: Path) -> Path:
    """The app's directory; for java-spring a copy with the Maven wrapper's script generated (with a Maven repository
    of its own, so the build's cache stays empty: its cold build fetches Maven and every dependency)."""
    if app != "java-spring":
        return APPS / app
    source = tmp / app
    shutil.copytree(APPS / app, source)
    env = {**os.environ, "MAVEN_OPTS": f"-Dmaven.repo.local={tmp / 'wrapper-repository'}"}
    subprocess.run(["mvn", "-B", "-q", "-N", WRAPPER_PLUGIN, "-Dmaven=3.9.9", "-Dtype=only-script"], cwd=source,
                   env=env, check=True, timeout=600, capture_output=True)
    return source


def timed_build(client, project: str, name: str, source: Path) -> tuple[float, float, str]:
    started = time.monotonic()
    info = wait(client, upload(client, project, name, source), timeout=900)
    seen = time.monotonic() - started
    if info["state"] != "succeeded":
        raise SystemExit(f"{name}: build {info['state']}: {info['error']}")
    return info["durationSeconds"], seen, info["artifact"]


def bench_app(client, app: str, tmp: Path) -> dict:
    name = app.replace("_", "-")
    component(client, "bench", name, {"type": "web-app"} if "static" in app else None)
    source = source_of(app, tmp)
    cold = timed_build(client, "bench", name, source)
    warm = timed_build(client, "bench", name, source)
    changed = tmp / f"{app}-changed"
    shutil.copytree(source, changed)
    (changed / "CHANGED.txt").write_text(f"{time.time()}\n")
    edit = timed_build(client, "bench", name, changed)
    return {"app": app, "cold": cold[0], "warm": warm[0], "sourceChange": edit[0], "coldClient": cold[1],
            "warmClient": warm[1], "sourceChangeClient": edit[1], "sameArtifactWhenUnchanged": cold[2] == warm[2]}


def build_times(apps: list[str]) -> list[dict]:
    """Cold, warm and source-change build times of ``apps``, each on a fresh control plane with empty caches."""
    results = []
    for app in apps:
        # each app gets its own control plane and an empty cache: "cold" means nothing downloaded yet
        with tempfile.TemporaryDirectory(prefix="cellplane-bench-") as tmp:
            server = start_server(Path(tmp) / "data", env={"CELLPLANE_CACHE_DIR": str(Path(tmp) / "cache")})
            try:
                results.append(bench_app(server.client(), app, Path(tmp)))
            finally:
                server.stop()
    return results


def run(args: argparse.Namespace):  # -> common.Suite (imported here: this file also runs alone)
    """The "builds" suite of `make bench`: the Flask, Express, Go (chi) and Spring Boot fixtures, cold and warm
    (targets: warm <= 3 s, Go's <= 5 s, Spring Boot's <= 30 s). Go's cold build starts from an empty module cache and
    an empty GOCACHE, so it compiles the standard library too."""
    from common import Figure, Suite

    apps = getattr(args, "build_apps", None) or ["flask-procfile", "express", "go-chi", "java-spring"]
    suite = Suite("builds")
    for r in build_times(apps):
        suite.figures += [
            Figure(f"{r['app']} cold build", round(r["cold"], 2), "s", "empty dependency caches"),
            Figure(f"{r['app']} warm rebuild", round(r["warm"], 2), "s", f"cold: {r['cold']:.2f} s", "<=",
                   WARM_TARGETS.get(r["app"], WARM_TARGET)),
        ]
        suite.details[r["app"]] = r
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", default=",".join(DEFAULT_APPS))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = build_times(args.apps.split(","))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'app':<20} {'cold':>8} {'warm':>8} {'src edit':>9}   (seconds, control plane's measure)")
    for r in results:
        print(f"{r['app']:<20} {r['cold']:>8.2f} {r['warm']:>8.2f} {r['sourceChange']:>9.2f}"
              f"   same artifact: {r['sameArtifactWhenUnchanged']}")


if __name__ == "__main__":
    main()
