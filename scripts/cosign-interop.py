"""Check that the real cosign verifies Cellplane's image signatures (an interoperability check run by hand, not by
`make test`: building cosign from its Go modules takes minutes). Usage: scripts/cosign-interop.sh.

Starts Debian's docker-registry on loopback, pushes the tests' tiny base, publishes and signs a small artifact with
``cellplane.images``, then runs ``cosign verify --key`` with the public key (must succeed) and with another key
(must fail). Exits non-zero when either is not so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import registrykit  # noqa: E402
from cellplane.build.archive import pack  # noqa: E402
from cellplane.digests import sha256_file  # noqa: E402
from cellplane.images import sign  # noqa: E402
from cellplane.images.publish import publish  # noqa: E402
from cellplane.images.registry import Registry  # noqa: E402


def verify(cosign: str, public: Path, reference: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cosign, "verify", "--key", str(public), "--insecure-ignore-tlog=true",
                           "--allow-http-registry", "--allow-insecure-registry", reference],
                          capture_output=True, text=True, timeout=120)


def main(cosign: str) -> int:
    with tempfile.TemporaryDirectory(prefix="cellplane-cosign-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "registry").mkdir()
        registry = registrykit._start(tmp / "registry")
        try:
            registrykit.push_tiny_base(registry.url)
            stage = tmp / "stage"
            (stage / "files").mkdir(parents=True)
            (stage / "files" / "app.py").write_text("print('signed')\n")
            (stage / "manifest.json").write_text(json.dumps({"language": "python", "run": "python app.py",
                                                             "workdir": "files"}))
            pack(stage, tmp / "artifact.tar.gz")
            key, other = sign.new_key(), sign.new_key()
            (tmp / "org.pub").write_bytes(sign.public_pem(key))
            (tmp / "other.pub").write_bytes(sign.public_pem(other))
            with Registry(registry.url) as r:
                image = publish(r, tmp / "artifact.tar.gz", sha256_file(tmp / "artifact.tar.gz"),
                                repository="acme/shop/api", tag="b-1",
                                base_images={"python": f"{registrykit.BASE_REPOSITORY}:{registrykit.BASE_TAG}"},
                                labels={}, key=key)
            good = verify(cosign, tmp / "org.pub", image.reference)
            bad = verify(cosign, tmp / "other.pub", image.reference)
        finally:
            registrykit._stop(registry)
    print(f"cosign verify --key org.pub {image.reference}: exit {good.returncode}")
    print(good.stdout.strip() or good.stderr.strip())
    print(f"cosign verify --key other.pub: exit {bad.returncode} ({bad.stderr.strip().splitlines()[-1]})")
    return 0 if good.returncode == 0 and bad.returncode != 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
