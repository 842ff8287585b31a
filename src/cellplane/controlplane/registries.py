"""Registry settings as builds use them: where an organization's images go, with what credentials and key.

An Organization's ``spec.registry`` and each of its DataPlanes' ``spec.registry`` (one a data plane pulls from
instead) are targets: every succeeded build pushes its image to each distinct one (``targets``). Passwords never
stay in a stored spec: ``absorb`` moves ``credentials.password`` into ``config_values`` (organization-level rows:
project and component empty, key ``registry:organization`` or ``registry:dataplane:<name>``), encrypted with the
key ring under the same associated-data rule as configuration secrets, so ``admin rotate-key`` re-encrypts them
with the rest and deleting the organization deletes them. A spec applied again without a password keeps the
stored one; a spec without ``credentials`` drops it.

The organization's image signing key (ECDSA P-256, PKCS#8 PEM) is made on first use and kept the same way
(key ``signing-key``); ``public_key`` gives the PEM a cluster verifies images with. ``rotate_signing_key`` makes a
new one, which signs every image from then on, and keeps the old one's **public** half (key
``signing-key:retired:<key id>``; the private half is gone): ``signing_keys`` lists the current and the kept
ones, so signatures made with an old key still verify while its public key is kept, until
``forget_signing_key`` drops it (then a cluster given only the kept keys refuses those images). A key id is the
first 16 hex digits of the SHA-256 of the public key's DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.controlplane import config
from cellplane.controlplane.keyring import KeyRing
from cellplane.images import sign as signing
from cellplane.store.tables import (
    ApprovalRow,
    BuildRow,
    ConfigValueRow,
    DeploymentRow,
    ReleaseRow,
    ResourceRow,
    now,
)

ORGANIZATION = "registry:organization"
SIGNING_KEY = "signing-key"
RETIRED = "signing-key:retired:"


def dataplane_key(name: str) -> str:
    return f"registry:dataplane:{name}"


@dataclass(frozen=True)
class Target:
    """One registry a build pushes to."""

    where: str  # "organization" or "dataplane/<name>"
    url: str
    repository_prefix: str
    username: str | None
    password: str | None = field(repr=False)
    base_images: dict[str, str]
    sign: bool
    keep_tags: int | None = None  # keep the last N builds' images per repository (images.retention)

    @property
    def same_as(self) -> tuple[str, str, str | None]:
        return self.url, self.repository_prefix, self.username


def _row(s: Session, organization: str, key: str) -> ConfigValueRow | None:
    return s.scalar(select(ConfigValueRow).where(
        ConfigValueRow.organization == organization, ConfigValueRow.project == "",
        ConfigValueRow.component == "", ConfigValueRow.environment == "", ConfigValueRow.key == key))


def _store(s: Session, keyring: KeyRing, organization: str, key: str, value: str, actor: str) -> bool:
    row = _row(s, organization, key)
    if row is None:
        row = ConfigValueRow(organization=organization, project="", component="", environment="", key=key,
                             secret=True, value="", version=0, updated_by=actor)
        s.add(row)
    elif config.plaintext(keyring, row) == value:
        return False
    row.value = keyring.encrypt(value, config.secret_context(row))
    row.version += 1
    row.updated_at = now()
    row.updated_by = actor
    s.flush()
    return True


def _read(s: Session, keyring: KeyRing, organization: str, key: str) -> str | None:
    row = _row(s, organization, key)
    return config.plaintext(keyring, row) if row is not None else None


def absorb(s: Session, keyring: KeyRing, organization: str, key: str, spec: dict[str, Any],
           actor: str) -> tuple[dict[str, Any], bool]:
    """Move ``spec.registry.credentials.password`` to encrypted storage. Returns (spec to store, changed)."""
    registry = spec.get("registry")
    credentials = (registry or {}).get("credentials")
    if not credentials:
        row = _row(s, organization, key)
        if row is not None:
            s.delete(row)
            s.flush()
            return spec, True
        return spec, False
    password = credentials.pop("password", None)
    if password is None:
        return spec, False
    return spec, _store(s, keyring, organization, key, password, actor)


def forget_dataplane(s: Session, organization: str, name: str) -> None:
    row = _row(s, organization, dataplane_key(name))
    if row is not None:
        s.delete(row)


def _target(s: Session, keyring: KeyRing, organization: str, where: str, key: str,
            registry: dict[str, Any]) -> Target:
    credentials = registry.get("credentials") or {}
    return Target(where, registry["url"], registry.get("repositoryPrefix") or "", credentials.get("username"),
                  _read(s, keyring, organization, key) if credentials else None,
                  dict(registry.get("baseImages") or {}), bool(registry.get("sign", True)),
                  int(registry["keepTags"]) if registry.get("keepTags") else None)


def targets(s: Session, keyring: KeyRing, organization: str) -> list[Target]:
    """The registries a build of ``organization`` pushes to: its own, then its data planes' (each once)."""
    out: list[Target] = []
    org = s.scalar(select(ResourceRow).where(ResourceRow.kind == "Organization", ResourceRow.name == organization))
    if org is not None and (org.spec or {}).get("registry"):
        out.append(_target(s, keyring, organization, "organization", ORGANIZATION, org.spec["registry"]))
    for dp in s.scalars(select(ResourceRow).where(ResourceRow.kind == "DataPlane",
                                                  ResourceRow.organization == organization)
                        .order_by(ResourceRow.name)):
        registry = (dp.spec or {}).get("registry")
        if registry:
            target = _target(s, keyring, organization, f"dataplane/{dp.name}", dataplane_key(dp.name), registry)
            if all(t.same_as != target.same_as for t in out):
                out.append(target)
    return out


def registry_of_dataplane(s: Session, organization: str, dataplane: str | None) -> str | None:
    """The URL of the registry a data plane pulls from: its own, else its organization's, else None."""
    if dataplane:
        dp = s.scalar(select(ResourceRow).where(ResourceRow.kind == "DataPlane", ResourceRow.name == dataplane,
                                                ResourceRow.organization == organization))
        if dp is not None and (dp.spec or {}).get("registry"):
            return str(dp.spec["registry"]["url"])
    org = s.scalar(select(ResourceRow).where(ResourceRow.kind == "Organization", ResourceRow.name == organization))
    if org is not None and (org.spec or {}).get("registry"):
        return str(org.spec["registry"]["url"])
    return None


def retention(s: Session, organization: str, project: str, component: str) -> tuple[list[str], set[str]]:
    """What tag cleanup keeps (``images.retention``): the component's builds with an image, newest first, and the
    image digests its deployments run or wait for approval to run."""
    place = (BuildRow.organization == organization, BuildRow.project == project, BuildRow.component == component)
    builds = list(s.scalars(select(BuildRow.id).where(*place, BuildRow.image.is_not(None))
                            .order_by(BuildRow.number.desc())))
    running = select(DeploymentRow.release_id).where(
        DeploymentRow.organization == organization, DeploymentRow.project == project,
        DeploymentRow.component == component, DeploymentRow.release_id.is_not(None))
    waiting = select(ApprovalRow.release_id).where(
        ApprovalRow.organization == organization, ApprovalRow.project == project,
        ApprovalRow.component == component, ApprovalRow.state == "pending")
    deployed: set[str] = set()
    for image in s.scalars(select(ReleaseRow.image).where(ReleaseRow.id.in_(running.union(waiting)))):
        if image and image.get("digest"):
            deployed.add(str(image["digest"]))
    return builds, deployed


def signing_key_pem(s: Session, keyring: KeyRing, organization: str, actor: str = "system") -> bytes:
    """The organization's private signing key (PEM), made and stored encrypted on first use."""
    pem = _read(s, keyring, organization, SIGNING_KEY)
    if pem is None:
        pem = signing.private_pem(signing.new_key()).decode()
        _store(s, keyring, organization, SIGNING_KEY, pem, actor)
    return pem.encode()


def public_key(s: Session, keyring: KeyRing, organization: str) -> bytes | None:
    pem = _read(s, keyring, organization, SIGNING_KEY)
    return signing.public_pem(signing.load_private(pem.encode())) if pem is not None else None


def key_id(public_pem: bytes) -> str:
    """The id of a public key: the first 16 hex digits of the SHA-256 of its DER SubjectPublicKeyInfo."""
    der = serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def rotate_signing_key(s: Session, keyring: KeyRing, organization: str, actor: str) -> tuple[str, str | None]:
    """A new signing key for ``organization``; the old one's public half is kept. Returns (new id, old id)."""
    old = _read(s, keyring, organization, SIGNING_KEY)
    retired = None
    if old is not None:
        public = signing.public_pem(signing.load_private(old.encode()))
        retired = key_id(public)
        _store(s, keyring, organization, RETIRED + retired, public.decode(), actor)
    pem = signing.private_pem(signing.new_key())
    _store(s, keyring, organization, SIGNING_KEY, pem.decode(), actor)
    return key_id(signing.public_pem(signing.load_private(pem))), retired


def signing_keys(s: Session, keyring: KeyRing, organization: str) -> list[dict[str, Any]]:
    """The current public key (first) and the kept ones, newest first: ``{keyId, publicKey, current, since}``."""
    keys: list[dict[str, Any]] = []
    current = _row(s, organization, SIGNING_KEY)
    if current is not None:
        public = signing.public_pem(signing.load_private(config.plaintext(keyring, current).encode()))
        keys.append({"keyId": key_id(public), "publicKey": public.decode(), "current": True,
                     "since": current.updated_at.isoformat()})
    rows = s.scalars(select(ConfigValueRow).where(
        ConfigValueRow.organization == organization, ConfigValueRow.project == "", ConfigValueRow.component == "",
        ConfigValueRow.environment == "", ConfigValueRow.key.startswith(RETIRED, autoescape=True))
        .order_by(ConfigValueRow.updated_at.desc(), ConfigValueRow.key))
    for row in rows:
        keys.append({"keyId": row.key.removeprefix(RETIRED), "publicKey": config.plaintext(keyring, row),
                     "current": False, "since": row.updated_at.isoformat()})
    return keys


def forget_signing_key(s: Session, organization: str, retired_id: str) -> bool:
    """Drop a kept (retired) public key; False when there is none by that id. The current key is not kept here:
    rotate first."""
    row = _row(s, organization, RETIRED + retired_id)
    if row is None:
        return False
    s.delete(row)
    s.flush()
    return True
