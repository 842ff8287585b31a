"""What a verified account signs in as (``identityproviders.sign_in``), on SQLite and PostgreSQL: the linked user, or a
new one with a unique DNS-label name (never an existing user's), and the provider's role bindings replaced by those
of the account's groups at each sign-in, leaving bindings granted by hand alone."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane import API_VERSION
from cellplane.controlplane import identity, lifecycle, resources
from cellplane.controlplane import identityproviders as idp
from cellplane.controlplane.keyring import KeyRing
from cellplane.model import parse_document
from cellplane.store import Store
from cellplane.store.tables import AuditRow, IdentityProviderRow, RoleBindingRow, UserIdentityRow, UserRow

ORG = "acme"


@pytest.fixture
def keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KeyRing:
    monkeypatch.delenv("CELLPLANE_MASTER_KEY", raising=False)
    return KeyRing.load_or_create(tmp_path)


def _provider(s: Session, keyring: KeyRing, create_users: bool = True, name: str = "corp") -> IdentityProviderRow:
    spec = idp.ProviderSpec(issuer="https://login.example.com", client_id="cellplane", client_secret="x",
                            create_users=create_users, group_roles=[
                                idp.GroupRole("platform", "admin"), idp.GroupRole("everyone", "viewer"),
                                idp.GroupRole("shop-devs", "developer", project="shop"),
                                idp.GroupRole("prod-approvers", "approver", environment="production")])
    idp.check(s, ORG, name, spec)
    return idp.put(s, keyring, ORG, name, spec)[0]


def _apply(s: Session, keyring: KeyRing, kind: str, name: str, **metadata: str) -> None:
    doc = parse_document({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, **metadata}, "spec": {}})
    lifecycle.apply(s, doc, resources.scope_of(doc, None, None), keyring, "admin")


@pytest.fixture
def world(store: Store, keyring: KeyRing) -> Store:
    with store.transaction() as s:
        _apply(s, keyring, "Organization", ORG)
        _apply(s, keyring, "Project", "shop", organization=ORG)
        _apply(s, keyring, "Environment", "production", organization=ORG)
    return store


def _bindings(s: Session, user: UserRow) -> set[tuple[str, str, str, bool]]:
    return {(b.role, b.project, b.environment, b.provider_id is not None)
            for b in s.scalars(select(RoleBindingRow).where(RoleBindingRow.user_id == user.id))}


@pytest.mark.parametrize(("claims", "name"), [
    ({"preferred_username": "Ada.Lovelace"}, "ada-lovelace"),
    ({"email": "Grace_Hopper@Example.com"}, "grace-hopper"),
    ({"preferred_username": "alan.turing@contoso.example", "email": "x@y.z"}, "alan-turing"),
    ({"name": "Émile Zola"}, "mile-zola"),
    ({"preferred_username": "---"}, "user"),
    ({"preferred_username": "x" * 80}, "x" * 55),
])
def test_a_user_name_is_a_dns_label_made_from_the_claims(claims: dict[str, str], name: str) -> None:
    assert idp.user_name_for(claims) == name


def test_a_first_sign_in_creates_a_user_who_never_takes_an_existing_name(world: Store, keyring: KeyRing) -> None:
    with world.transaction() as s:
        identity.create_user(s, "ada")  # a local account: the provider's "ada" must not sign in as it
        row = _provider(s, keyring)
        first = idp.sign_in(s, row, "sub-1", {"preferred_username": "ada", "email": "ada@corp.example",
                                              "groups": ["everyone"]})
        assert first.created and first.user.name == "ada-2" and first.user.email == "ada@corp.example"
        again = idp.sign_in(s, row, "sub-1", {"preferred_username": "someone-else", "groups": ["everyone"]})
        assert not again.created and again.user.id == first.user.id  # the link, not the name, decides
        other = idp.sign_in(s, row, "sub-2", {"preferred_username": "ada", "groups": []})
        assert other.user.name == "ada-3"
        assert s.scalar(select(UserIdentityRow.last_sign_in_at).where(UserIdentityRow.subject == "sub-1"))
        events = [e.message for e in s.scalars(select(AuditRow).where(AuditRow.action == "user.sign-in"))]
        assert events[0] == ("through identity provider acme/corp (user created); roles: viewer on organization "
                             "'acme'")
        assert events[2].endswith("; no role from its groups")


def test_without_user_creation_only_linked_accounts_sign_in(world: Store, keyring: KeyRing) -> None:
    with world.transaction() as s:
        row = _provider(s, keyring, create_users=True)
        linked = idp.sign_in(s, row, "sub-1", {"preferred_username": "linus", "groups": []}).user
        row.create_users = False
        assert idp.sign_in(s, row, "sub-1", {"groups": []}).user.id == linked.id
        with pytest.raises(idp.SignInRefused) as refused:
            idp.sign_in(s, row, "sub-unknown", {"preferred_username": "mallory"})
        assert refused.value.message == ("no Cellplane user is linked to this account of corp, and corp does not "
                                         "create users: ask an administrator of the organization")
        assert s.scalar(select(UserRow).where(UserRow.name == "mallory")) is None
        linked.disabled = True
        with pytest.raises(idp.SignInRefused, match="user 'linus' is disabled"):
            idp.sign_in(s, row, "sub-1", {"groups": []})


def test_the_providers_bindings_follow_the_groups_and_hand_granted_ones_stay(world: Store, keyring: KeyRing) -> None:
    with world.transaction() as s:
        row = _provider(s, keyring)
        user = idp.sign_in(s, row, "sub-1", {"preferred_username": "bo", "groups": ["platform", "shop-devs"]}).user
        assert _bindings(s, user) == {("admin", "", "", True), ("developer", "shop", "", True)}
        identity.grant(s, user, "viewer", ORG)  # by hand
        signed = idp.sign_in(s, row, "sub-1", {"groups": ["prod-approvers", "everyone"]})
        assert _bindings(s, user) == {("viewer", "", "", False), ("approver", "", "production", True)}
        assert signed.roles == ["viewer on organization 'acme'",  # held already: granted by hand, kept as it is
                                "approver on organization 'acme', environment 'production'"]
        idp.sign_in(s, row, "sub-1", {"groups": "unrelated"})  # one group as a string; no mapping
        assert _bindings(s, user) == {("viewer", "", "", False)}


def test_a_mapping_whose_project_is_gone_is_skipped_and_said(world: Store, keyring: KeyRing) -> None:
    with world.transaction() as s:
        row = _provider(s, keyring)
        row.group_roles = [*row.group_roles, {"group": "old", "role": "developer", "project": "gone"}]
        signed = idp.sign_in(s, row, "sub-9", {"preferred_username": "cy", "groups": ["old", "everyone"]})
        assert signed.roles == ["viewer on organization 'acme'"]
        assert signed.skipped == ["developer for group 'old' (project 'gone' gone)"]


def test_two_providers_bindings_are_each_their_own(world: Store, keyring: KeyRing) -> None:
    with world.transaction() as s:
        one, two = _provider(s, keyring, name="one"), _provider(s, keyring, name="two")
        user = idp.sign_in(s, one, "sub-1", {"preferred_username": "di", "groups": ["shop-devs"]}).user
        s.add(UserIdentityRow(provider_id=two.id, subject="other-sub", user_id=user.id))
        s.flush()
        idp.sign_in(s, two, "other-sub", {"groups": ["platform"]})
        assert _bindings(s, user) == {("developer", "shop", "", True), ("admin", "", "", True)}
        idp.sign_in(s, two, "other-sub", {"groups": []})
        assert _bindings(s, user) == {("developer", "shop", "", True)}
        idp.delete_provider(s, one)
        assert _bindings(s, user) == set()


def test_first_sign_ins_of_one_account_at_once_end_as_one_user(world: Store, keyring: KeyRing) -> None:
    """The console's callbacks racing (pages_sso._sign_in): one creates the user, the others find it by its link."""
    from cellplane.console import pages_sso

    with world.transaction() as s:
        provider_id = _provider(s, keyring).id
    platform = SimpleNamespace(store=world)
    barrier = threading.Barrier(4)
    results: list[object] = []

    def sign_in() -> None:
        barrier.wait()
        try:
            results.append(pages_sso._sign_in(platform, provider_id, {"sub": "racer", "preferred_username": "racer",
                                                                      "groups": ["everyone"]}))
        except Exception as e:  # collected and asserted below
            results.append(e)

    threads = [threading.Thread(target=sign_in) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len({getattr(r, "user_id", r) for r in results}) == 1, results
    with world.read() as s:
        assert s.scalars(select(UserRow.name).where(UserRow.name.like("racer%"))).all() == ["racer"]
