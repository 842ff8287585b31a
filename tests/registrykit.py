"""A real OCI registry on 127.0.0.1 for image tests (Debian's docker-registry), with a tiny base image of our
own pushed first (base images cannot be pulled here), and optionally a token server for Bearer auth.

``registry`` (module scope) starts ``docker-registry serve`` on a free port over a temporary storage directory,
without auth; ``basic_registry`` one with an htpasswd file (basic auth). ``token_registry`` starts one whose
``auth: token`` section trusts a self-signed certificate; the test's token endpoint (a thread on loopback) checks
basic credentials and answers ES256 JWTs signed with that certificate's key (``x5c`` header), as a real token
service does: the registry verifies them itself.
Missing tools fail under CI (``make test`` installs them: scripts/ensure-registry-tools.sh) and skip elsewhere.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from liveserver import free_port

USER, PASSWORD = "builder", "s3cret-registry-password"
BASE_REPOSITORY, BASE_TAG = "base/tiny", "1"


def _in_ci() -> bool:  # as conftest's: CI=true fails what would skip
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        message = f"{', '.join(missing)} not installed; run scripts/ensure-registry-tools.sh (make test does)"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@dataclass
class LocalRegistry:
    url: str  # http://127.0.0.1:PORT
    storage: Path
    process: subprocess.Popen[bytes]
    token_requests: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")


def skopeo(*args: str) -> Any:
    """``skopeo`` with ``args`` (inspect ...), its JSON answer; an assertion error with its stderr when it fails."""
    out = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _start(tmp: Path, auth: dict[str, Any] | None = None, *, delete: bool = True) -> LocalRegistry:
    need("docker-registry", "skopeo", "umoci", "htpasswd")
    port = free_port()
    storage = tmp / "storage"
    storage.mkdir()
    config: dict[str, Any] = {
        "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": delete}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    if auth:
        config["auth"] = auth
    (tmp / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = (tmp / "registry.log").open("wb")
    process = subprocess.Popen(["docker-registry", "serve", str(tmp / "config.yml")], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/v2/", timeout=1).status_code in (200, 401):
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"docker-registry did not start: {(tmp / 'registry.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return LocalRegistry(url, storage, process)


def _stop(registry: LocalRegistry) -> None:
    registry.process.terminate()
    try:
        registry.process.wait(10)
    except subprocess.TimeoutExpired:
        registry.process.kill()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    started = _start(tmp_path_factory.mktemp("registry"))
    try:
        push_tiny_base(started.url)
        yield started
    finally:
        _stop(started)


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry with HTTP basic auth (an htpasswd file with ``USER``'s bcrypt hash)."""
    tmp = tmp_path_factory.mktemp("basic-registry")
    need("htpasswd")
    line = subprocess.run(["htpasswd", "-nbB", USER, PASSWORD], capture_output=True, text=True, check=True).stdout
    (tmp / "htpasswd").write_text(line.strip() + "\n")
    started = _start(tmp, {"htpasswd": {"realm": "cellplane-test", "path": str(tmp / "htpasswd")}})
    try:
        push_tiny_base(started.url, (USER, PASSWORD))
        yield started
    finally:
        _stop(started)


# -- a tiny base image ---------------------------------------------------------------------------------------

def tiny_base() -> tuple[bytes, bytes]:
    """(layer blob, config) of a base with a few files: /etc/os-release, /bin/true-ish script, /tmp."""
    import gzip as gz
    import io
    import tarfile
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body, mode in (("etc/os-release", b"ID=tiny\nNAME=\"Tiny test base\"\n", 0o644),
                                 ("usr/local/bin/hello", b"#!/bin/sh\necho hello\n", 0o755)):
            for parent in ("etc", "usr", "usr/local", "usr/local/bin"):
                if name.startswith(parent + "/") and parent not in tar.getnames():
                    d = tarfile.TarInfo(parent)
                    d.type, d.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(d)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), mode
            tar.addfile(info, io.BytesIO(body))
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
    tar_bytes = raw.getvalue()
    blob = gz.compress(tar_bytes, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
                                    "Cmd": ["/bin/sh"], "Labels": {"base": "tiny"}},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]},
                         "history": [{"created_by": "tiny test base"}]}, sort_keys=True).encode()
    return blob, config


def push_tiny_base(url: str, credentials: tuple[str, str] | None = None, repository: str = BASE_REPOSITORY) -> str:
    """Push the tiny base with the project's own client; returns its manifest digest."""
    from cellplane.images import manifest as manifests
    from cellplane.images.registry import Credentials, Registry
    blob, config = tiny_base()
    digest_of = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()  # noqa: E731
    with Registry(url, Credentials(*credentials) if credentials else None) as r:
        for data in (blob, config):
            if not r.blob_exists(repository, digest_of(data)):
                r.upload(repository, digest_of(data), data)
        body = json.dumps({"schemaVersion": 2, "mediaType": manifests.DOCKER_MANIFEST,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "digest": digest_of(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                       "digest": digest_of(blob), "size": len(blob)}]}).encode()
        return r.put_manifest(repository, BASE_TAG, body, manifests.DOCKER_MANIFEST)


# -- token auth ----------------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Signs registry tokens (ES256 JWTs with the certificate in ``x5c``), as docker/distribution expects."""

    def __init__(self, service: str, issuer: str = "cellplane-test-issuer") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.service, self.issuer = service, issuer

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def token(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _token_server(issuer: TokenIssuer, requests: list[str]) -> tuple[http.server.ThreadingHTTPServer, str]:
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            from urllib.parse import parse_qs, urlparse
            query = parse_qs(urlparse(self.path).query)
            requests.append(" ".join(query.get("scope", [])))
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"token": issuer.token(USER, query.get("scope", []))}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/token"


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry that takes only Bearer tokens from the test's token endpoint (user ``USER``)."""
    tmp = tmp_path_factory.mktemp("token-registry")
    issuer = TokenIssuer("cellplane-test-registry")
    (tmp / "issuer.pem").write_bytes(issuer.pem())
    requests: list[str] = []
    server, realm = _token_server(issuer, requests)
    started = _start(tmp, {"token": {"realm": realm, "service": issuer.service, "issuer": issuer.issuer,
                                     "rootcertbundle": str(tmp / "issuer.pem")}})
    started.token_requests = requests
    try:
        push_tiny_base(started.url, (USER, PASSWORD))
        yield started
    finally:
        _stop(started)
        server.shutdown()
