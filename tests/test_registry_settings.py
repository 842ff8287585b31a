"""Registry settings (docs/images.md): validated with field paths; the password leaves the stored spec for encrypted
storage, on SQLite and PostgreSQL; builds read their targets back; key rotation re-encrypts them; deleting a data
plane drops its password; the organization's signing key is made once and kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cellplane import API_VERSION
from cellplane.controlplane import lifecycle, registries, resources, rotation
from cellplane.controlplane.keyring import KeyRing
from cellplane.images import sign
from cellplane.model.document import parse_document, validate_spec
from cellplane.store import Store
from cellplane.store.tables import ConfigValueRow

PASSWORD = "registry-password-1"


@pytest.fixture
def keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KeyRing:
    monkeypatch.delenv("CELLPLANE_MASTER_KEY", raising=False)
    return KeyRing.load_or_create(tmp_path)


def apply(store: Store, keyring: KeyRing, kind: str, name: str, spec: dict[str, Any], **metadata: str) -> None:
    doc = parse_document({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, **metadata},
                          "spec": spec})
    with store.transaction() as s:
        lifecycle.apply(s, doc, resources.scope_of(doc, None, None), keyring, "tester")


def registry(url: str = "https://registry.acme.example", password: str | None = PASSWORD, **more: Any) -> dict:
    credentials: dict[str, Any] = {"username": "builder"}
    if password is not None:
        credentials["password"] = password
    return {"registry": {"url": url, "credentials": credentials, **more}}


def test_registry_settings_are_checked_with_a_field_path_for_each_problem() -> None:
    _, problems = validate_spec("Organization", {"registry": {
        "url": "http://registry.acme.example", "repositoryPrefix": "Team A", "baseImages": {"python": "UPPER:1"}}})
    assert {p.field for p in problems} == {"spec.registry.url", "spec.registry.repositoryPrefix",
                                           "spec.registry.baseImages.python"}
    assert any("plain http is only for a registry on this machine's loopback" in p.problem for p in problems)
    _, problems = validate_spec("Organization", {"registry": {"url": "https://r.example",
                                                              "baseImages": {"cobol": "cobol:85"}}})
    assert [(p.field, p.problem) for p in problems] == [("spec.registry.baseImages.cobol", "unknown field")]
    _, problems = validate_spec("DataPlane", {"registry": {"url": "https://r.example/v2/x"}})
    assert [p.field for p in problems] == ["spec.registry.url"] and "repositoryPrefix" in problems[0].problem
    model, problems = validate_spec("Organization", {"registry": {"url": "http://127.0.0.1:5000"}})
    assert problems == [] and model is not None


def test_the_password_is_stored_encrypted_and_a_build_reads_it_back(store: Store, keyring: KeyRing) -> None:
    apply(store, keyring, "Organization", "acme", registry(repositoryPrefix="cp", baseImages={"python": "py:3"}))
    apply(store, keyring, "DataPlane", "eu", registry("https://registry.eu.example", "eu-password"),
          organization="acme")
    with store.transaction() as s:
        spec = resources.find(s, resources.Scope(resources.KINDS["Organization"]), "acme").spec  # type: ignore[union-attr]
        assert spec["registry"]["credentials"] == {"username": "builder"}
        stored = s.scalars(select(ConfigValueRow.value).where(ConfigValueRow.organization == "acme")).all()
        assert len(stored) == 2 and all(v.startswith("v1:") and PASSWORD not in v for v in stored)
        targets = registries.targets(s, keyring, "acme")
    assert [(t.where, t.url, t.repository_prefix, t.password, t.base_images) for t in targets] == [
        ("organization", "https://registry.acme.example", "cp", PASSWORD, {"python": "py:3"}),
        ("dataplane/eu", "https://registry.eu.example", "", "eu-password", {})]
    assert PASSWORD not in repr(targets)


def test_applying_again_without_the_password_keeps_it_and_without_credentials_drops_it(
        store: Store, keyring: KeyRing) -> None:
    apply(store, keyring, "Organization", "acme", registry())
    apply(store, keyring, "Organization", "acme", registry(password=None, sign=False))
    with store.transaction() as s:
        [target] = registries.targets(s, keyring, "acme")
        assert target.password == PASSWORD and target.sign is False
    apply(store, keyring, "Organization", "acme", {"registry": {"url": "https://registry.acme.example"}})
    with store.transaction() as s:
        [target] = registries.targets(s, keyring, "acme")
        assert target.username is None and target.password is None
        assert s.scalars(select(ConfigValueRow).where(ConfigValueRow.organization == "acme")).all() == []


def test_key_rotation_reencrypts_registry_passwords_and_deleting_a_data_plane_drops_its_own(
        store: Store, keyring: KeyRing) -> None:
    apply(store, keyring, "Organization", "acme", registry())
    apply(store, keyring, "DataPlane", "eu", registry("https://registry.eu.example", "eu-password"),
          organization="acme")
    old = keyring.primary_id
    keyring.begin_rotation()
    with store.transaction() as s:
        assert rotation.rotate_all(s, keyring, batch=10) == 2
    keyring.finish_rotation()
    with store.transaction() as s:
        assert [t.password for t in registries.targets(s, keyring, "acme")] == [PASSWORD, "eu-password"]
        assert all(keyring.key_id_of(v) != old for v in s.scalars(select(ConfigValueRow.value)))
        lifecycle.delete(s, resources.Scope(resources.KINDS["DataPlane"], "acme"), "eu")
    with store.transaction() as s:
        assert [t.where for t in registries.targets(s, keyring, "acme")] == ["organization"]
        assert len(s.scalars(select(ConfigValueRow)).all()) == 1


def test_the_signing_key_is_made_once_per_organization_and_its_public_half_verifies_its_signatures(
        store: Store, keyring: KeyRing) -> None:
    apply(store, keyring, "Organization", "acme", {})
    with store.transaction() as s:
        assert registries.public_key(s, keyring, "acme") is None
        pem = registries.signing_key_pem(s, keyring, "acme")
    with store.transaction() as s:
        assert registries.signing_key_pem(s, keyring, "acme") == pem
        public = registries.public_key(s, keyring, "acme")
        stored = s.scalar(select(ConfigValueRow.value).where(ConfigValueRow.key == registries.SIGNING_KEY))
    assert public == sign.public_pem(sign.load_private(pem))
    assert stored is not None and b"PRIVATE KEY" not in stored.encode()
