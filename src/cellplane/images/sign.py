"""Image signatures in cosign's format: ECDSA P-256 over a "simple signing" payload naming the image digest.

A signature of image ``sha256:<hex>`` in repository ``R`` is an OCI manifest tagged ``sha256-<hex>.sig`` in ``R``
(where ``cosign`` looks for it) whose one layer is the payload (media type
``application/vnd.dev.cosign.simplesigning.v1+json``)::

    {"critical": {"identity": {"docker-reference": "<host>/<R>"},
                  "image": {"docker-manifest-digest": "sha256:<hex>"},
                  "type": "cosign container image signature"}, "optional": null}

and whose layer annotation ``dev.cosignproject.cosign/signature`` is the base64 of the DER ECDSA-SHA256 signature
of the payload's bytes. ``cosign verify --key org.pub --insecure-ignore-tlog <host>/<R>@sha256:<hex>`` checks it
(there is no transparency log here), and so does Sigstore's policy-controller given the organization's public
key. Signing costs one ECDSA signature (about 50 us) and three small uploads.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cellplane.images import config as image_config
from cellplane.images import manifest as manifests
from cellplane.images.registry import Registry

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"
_EPOCH = "0001-01-01T00:00:00Z"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("an image signing key is an ECDSA P-256 private key")
    return key


def signature_tag(image_digest: str) -> str:
    return image_digest.replace(":", "-") + ".sig"


def payload(reference: str, image_digest: str) -> bytes:
    """The simple-signing payload, as cosign writes it (its key order, no spaces)."""
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": image_digest},
                                    "type": "cosign container image signature"}, "optional": None},
                      separators=(",", ":")).encode()


@dataclass(frozen=True)
class Signature:
    tag: str  # sha256-<hex>.sig
    digest: str  # the signature manifest's digest
    payload: bytes
    signature: str  # base64 DER


def sign(registry: Registry, repository: str, image_digest: str, key: ec.EllipticCurvePrivateKey) -> Signature:
    """Sign ``image_digest`` and store the signature next to the image in ``repository``."""
    body = payload(f"{registry.host}/{repository}", image_digest)
    signature = base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    body_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    config = image_config.canonical({"architecture": "", "config": {}, "created": _EPOCH,
                                     "history": [{"created": _EPOCH}], "os": "",
                                     "rootfs": {"type": "layers", "diff_ids": [body_digest]}})
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    for digest, data in ((body_digest, body), (config_digest, config)):
        if not registry.blob_exists(repository, digest):
            registry.upload(repository, digest, data)
    manifest = image_config.canonical({
        "schemaVersion": 2, "mediaType": manifests.OCI_MANIFEST,
        "config": {"mediaType": image_config.MEDIA_TYPE, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": PAYLOAD_TYPE, "digest": body_digest, "size": len(body),
                    "annotations": {ANNOTATION: signature}}]})
    tag = signature_tag(image_digest)
    digest = registry.put_manifest(repository, tag, manifest, manifests.OCI_MANIFEST)
    return Signature(tag, digest, body, signature)


def verify(registry: Registry, repository: str, image_digest: str, public: bytes) -> dict[str, object]:
    """Check the stored signature of ``image_digest`` with a PEM public key, as ``cosign verify --key`` does:
    the payload's signature, and that it names this digest. Returns the payload; raises ValueError otherwise."""
    key = serialization.load_pem_public_key(public)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an ECDSA public key")
    body, _, _ = registry.manifest(repository, signature_tag(image_digest))
    for layer in manifests.parse(body).get("layers") or []:
        if layer.get("mediaType") != PAYLOAD_TYPE:
            continue
        data = registry.blob(repository, layer["digest"])
        try:
            key.verify(base64.b64decode(layer["annotations"][ANNOTATION]), data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, KeyError, ValueError):
            continue
        claims: dict[str, object] = json.loads(data)
        critical = claims.get("critical")
        if isinstance(critical, dict) and (critical.get("image") or {}).get("docker-manifest-digest") == image_digest:
            return claims
    raise ValueError(f"no signature of {image_digest} verifies with that key")
