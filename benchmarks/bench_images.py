"""Image push times: an artifact published as an image to a real registry whose base image is already there.

    make bench BENCH_ARGS="--only images"     # or: .venv/bin/python benchmarks/bench_images.py

Starts Debian's docker-registry on loopback twice (without auth, and with Bearer-token auth whose tokens the
registry verifies), pushes the tests' tiny base, makes a real artifact (archive.pack of a stage tree holding
tests/fixtures/apps/flask-procfile plus about 4 MiB of incompressible data, so the layer is not trivially small),
and times ``images.publish`` with signing: the first push of a changed source (the layer and config uploaded, the
base's layers mounted) and a push of the same artifact again (nothing but the manifest and signature). Each is the
median of 5. Target: a push with the base already in the registry <= 1 s (issue 20).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import registrykit  # noqa: E402
from cellplane.build.archive import pack  # noqa: E402
from cellplane.digests import sha256_file  # noqa: E402
from cellplane.images import sign  # noqa: E402
from cellplane.images.publish import publish  # noqa: E402
from cellplane.images.registry import Credentials, Registry  # noqa: E402

APP = ROOT / "tests" / "fixtures" / "apps" / "flask-procfile"
BASES = {"python": f"{registrykit.BASE_REPOSITORY}:{registrykit.BASE_TAG}"}
SAMPLES = 5


def _artifact(tmp: Path, n: int, noise: bytes) -> tuple[Path, str]:
    stage = tmp / f"stage-{n}"
    shutil.copytree(APP, stage / "files")
    (stage / "files" / "data.bin").write_bytes(noise)
    (stage / "files" / "version.txt").write_text(f"{n}\n")  # a source change: a new layer
    (stage / "manifest.json").write_text(json.dumps({"language": "python", "run": "gunicorn app:app",
                                                     "port": 8000, "env": {}, "workdir": "files"}))
    out = tmp / f"artifact-{n}.tar.gz"
    pack(stage, out)
    return out, sha256_file(out)


def _times(url: str, credentials: Credentials | None, tmp: Path) -> dict[str, Any]:
    key = sign.new_key()
    noise = os.urandom(4 << 20)
    changed, again, uploaded = [], [], []
    for n in range(SAMPLES):
        path, digest = _artifact(tmp, n, noise)
        with Registry(url, credentials) as r:  # a new client each time: token requests are counted in
            started = time.perf_counter()
            image = publish(r, path, digest, repository="bench/app", tag=f"b-{n}", base_images=BASES,
                            labels={}, key=key)
            changed.append(time.perf_counter() - started)
            uploaded.append(image.uploaded_bytes)
        with Registry(url, credentials) as r:
            started = time.perf_counter()
            publish(r, path, digest, repository="bench/app", tag=f"b-{n}-again", base_images=BASES, labels={},
                    key=key)
            again.append(time.perf_counter() - started)
    return {"changedSource": statistics.median(changed), "sameArtifact": statistics.median(again),
            "uploadedBytes": statistics.median(uploaded), "samplesChanged": changed, "samplesSame": again}


def push_times() -> dict[str, Any]:
    registrykit.need("docker-registry")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cellplane-bench-images-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "plain").mkdir()
        plain = registrykit._start(tmp / "plain")
        try:
            registrykit.push_tiny_base(plain.url)
            out["plain"] = _times(plain.url, None, tmp / "plain")
        finally:
            registrykit._stop(plain)
        (tmp / "token").mkdir()
        issuer = registrykit.TokenIssuer("bench-registry")
        (tmp / "token" / "issuer.pem").write_bytes(issuer.pem())
        server, realm = registrykit._token_server(issuer, [])
        token = registrykit._start(tmp / "token", {"token": {
            "realm": realm, "service": issuer.service, "issuer": issuer.issuer,
            "rootcertbundle": str(tmp / "token" / "issuer.pem")}})
        try:
            credentials = Credentials(registrykit.USER, registrykit.PASSWORD)
            registrykit.push_tiny_base(token.url, (registrykit.USER, registrykit.PASSWORD))
            out["token"] = _times(token.url, credentials, tmp / "token")
        finally:
            registrykit._stop(token)
            server.shutdown()
    return out


def run(args: argparse.Namespace):  # -> common.Suite (imported here: this file also runs alone)
    """The "images" suite of `make bench`: push times with the base already in the registry (target <= 1 s)."""
    from common import Figure, Suite

    suite = Suite("images")
    t = push_times()
    size = f"{t['plain']['uploadedBytes'] / (1 << 20):.1f} MiB layer"
    suite.figures += [
        Figure("image push, new source, base in registry", round(t["plain"]["changedSource"], 3), "s",
               f"same artifact again: {t['plain']['sameArtifact']:.3f} s", "<=", 1.0, f"{size}, signed, no auth"),
        Figure("image push, new source, token auth", round(t["token"]["changedSource"], 3), "s",
               f"same artifact again: {t['token']['sameArtifact']:.3f} s", "<=", 1.0, f"{size}, signed, Bearer"),
    ]
    suite.details.update(t)
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    t = push_times()
    for name, r in t.items():
        print(f"{name:<6} new source {r['changedSource']:.3f} s, same artifact {r['sameArtifact']:.3f} s, "
              f"uploaded {r['uploadedBytes']} bytes")


if __name__ == "__main__":
    main()
