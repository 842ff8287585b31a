"""The store on both engines: migrations, transactions, constraints, secrets at rest and timestamps.

Every test taking ``database_url`` runs once on SQLite and once on a real, throwaway PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import delete, func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from cellplane import API_VERSION
from cellplane.controlplane import config as config_service
from cellplane.controlplane import lifecycle, releases, resources, rotation
from cellplane.controlplane.keyring import KeyRing
from cellplane.errors import CellplaneError
from cellplane.model import parse_document
from cellplane.store import Store, WriteNeeded, current_revision, head_revision
from cellplane.store.tables import (
    Base,
    ConfigValueRow,
    DeploymentRow,
    ReleaseRow,
    ResourceRow,
    RoleBindingRow,
    TokenRow,
    UserRow,
)

TABLES = {"resources", "users", "tokens", "role_bindings", "config_values", "audit_events"}


@pytest.fixture
def keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KeyRing:
    monkeypatch.delenv("CELLPLANE_MASTER_KEY", raising=False)
    return KeyRing.load_or_create(tmp_path)


def resource(name: str, kind: str = "Project", organization: str = "default", project: str = "") -> ResourceRow:
    return ResourceRow(uid=f"uid-{kind}-{organization}-{project}-{name}", kind=kind, organization=organization,
                       project=project, name=name, labels={}, annotations={}, spec={}, status={})


def count(store: Store, model: type[Base]) -> int:
    with store.transaction() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def raw_doc(kind: str, name: str, spec: dict | None = None, **metadata: str) -> dict:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec or {}}


# -- migrations ------------------------------------------------------------------------------------------------------


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert current_revision(store.engine) is None
        store.migrate()
        assert current_revision(store.engine) == head_revision()
        assert set(inspect(store.engine).get_table_names()) >= TABLES

        store.migrate("base")
        assert current_revision(store.engine) is None
        assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}

        store.migrate("head")
        assert current_revision(store.engine) == head_revision()
        assert set(inspect(store.engine).get_table_names()) >= TABLES
        # Migrating an up-to-date schema again is a no-op.
        store.migrate()
        assert current_revision(store.engine) == head_revision()
    finally:
        store.dispose()


def test_replicas_migrating_the_same_database_at_once_all_succeed(database_url: str) -> None:
    """Replicas starting together each run the migrations; they must queue, not collide on CREATE TABLE."""
    stores = [Store(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def run(store: Store) -> None:
        barrier.wait()
        try:
            store.migrate()
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    try:
        assert errors == []
        assert {current_revision(s.engine) for s in stores} == {head_revision()}
    finally:
        for s in stores:
            s.dispose()


def _not_search_index(name: str | None, type_: str, parent: object) -> bool:
    """The SQLite full-text index of log lines (a virtual table and its shadow tables) has no model."""
    return not (type_ == "table" and name is not None and name.startswith("workload_logs_fts"))


def test_migrated_schema_matches_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True,
                                                         "include_name": _not_search_index})
        assert compare_metadata(context, Base.metadata) == []


# -- SQLite specifics ------------------------------------------------------------------------------------------------


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        store.migrate()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        with store.transaction() as s:  # every pooled connection gets the pragmas, not only the first
            assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        store.dispose()


@contextmanager
def _lock_held(store: Store, name: str) -> Iterator[tuple[threading.Event, list[BaseException]]]:
    """A writer in another thread that adds ``name`` and holds SQLite's write lock until the event yielded is set
    (at the latest when the block ends), then commits; what it raised goes into the list yielded."""
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with store.transaction() as s:
                s.add(resource(name))
                s.flush()
                holding.set()
                assert release.wait(10)
        except BaseException as e:
            errors.append(e)
            holding.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        yield release, errors
    finally:
        release.set()
        thread.join(30)


def test_sqlite_second_writer_waits_instead_of_failing(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    store.migrate()
    hold = 0.7
    try:
        with _lock_held(store, "one") as (release, errors):
            threading.Timer(hold, release.set).start()
            started = time.monotonic()
            with store.transaction() as s:
                s.add(resource("two"))
                s.flush()
            waited = time.monotonic() - started
        assert errors == []
        assert waited >= hold / 2, "the second writer did not wait for the first"
        with store.transaction() as s:
            assert sorted(s.scalars(select(ResourceRow.name))) == ["one", "two"]
    finally:
        store.dispose()


def test_sqlite_read_then_write_transactions_serialize(tmp_path: Path) -> None:
    """Two read-modify-write transactions at once: the second waits for the first, neither fails."""
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    store.migrate()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def read_then_write() -> None:
        try:
            start.wait(10)
            with store.transaction() as s:
                n = s.scalar(select(func.count()).select_from(ResourceRow))
                time.sleep(0.3)
                s.add(resource(f"r{n}"))
        except BaseException as e:
            errors.append(e)

    try:
        threads = [threading.Thread(target=read_then_write) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        with store.transaction() as s:
            assert sorted(s.scalars(select(ResourceRow.name))) == ["r0", "r1"]
    finally:
        store.dispose()


def test_sqlite_reader_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """A read transaction begins deferred: in WAL mode it reads the last committed state while a writer holds the
    write lock, where a BEGIN IMMEDIATE would wait for the writer to finish."""
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    store.migrate()
    with store.transaction() as s:
        s.add(resource("committed"))
    try:
        with _lock_held(store, "uncommitted") as (_, errors):
            started = time.monotonic()
            with store.read() as s:
                assert list(s.scalars(select(ResourceRow.name))) == ["committed"]
            assert time.monotonic() - started < 1.0, "the reader waited for the writer"
    finally:
        store.dispose()
    assert errors == []


def test_read_transaction_refuses_writes_and_run_writes_instead(store: Store) -> None:
    with pytest.raises(WriteNeeded), store.read() as s:
        s.add(resource("orm"))
        s.flush()
    with pytest.raises(WriteNeeded), store.read() as s:
        s.execute(delete(ResourceRow))
    assert count(store, ResourceRow) == 0

    attempts: list[bool] = []

    def make(s: Session) -> str:
        attempts.append(bool(s.info.get("read_only")))
        if s.scalar(select(ResourceRow.name).where(ResourceRow.name == "made")) is None:
            s.add(resource("made"))
            s.flush()
        return "done"

    assert store.run(make) == "done"
    assert attempts == [True, False]  # read first; again in a write transaction once it had to write
    assert store.run(make) == "done"
    assert attempts == [True, False, True]  # nothing to write: the read transaction was enough
    assert count(store, ResourceRow) == 1


def test_changes_are_counted_after_commit_only(store: Store) -> None:
    changes = store.changes
    start = changes.seq

    def since(tables: tuple[str, ...] = (), rows: Any = lambda table, key: True) -> bool:
        return changes.since(start, tables, rows)

    with store.read() as s:
        s.scalars(select(ResourceRow)).all()
    with store.transaction(dry_run=True) as s:
        s.add(resource("dry"))
    with pytest.raises(RuntimeError), store.transaction() as s:
        s.add(resource("lost"))
        s.flush()
        raise RuntimeError("boom")
    assert changes.seq == start, "reads, dry runs and rollbacks count no change"

    with store.transaction() as s:
        s.add(resource("shop"))
    assert changes.seq == start + 1
    key = ("Project", "default", "", "shop")
    assert since(rows=lambda table, k: (table, k) == ("resources", key))
    assert not since(rows=lambda table, k: k != key), "a resource row is told apart from the others"
    assert not since(("resources", "users"), rows=lambda table, k: False)

    start = changes.seq
    with store.transaction() as s:
        user = UserRow(name="ada")
        s.add(user)
        s.flush()
        s.add(TokenRow(id="t1", user_id=user.id, name="default", digest="d" * 64))
    assert since(("tokens",)) and since(("users",)) and not since(("role_bindings",))

    start = changes.seq
    with store.transaction() as s:
        s.delete(s.scalar(select(UserRow).where(UserRow.name == "ada")))
    assert since(("tokens",)) and since(("role_bindings",)), "rows the database deletes with the user count too"

    start = changes.seq
    with store.transaction() as s:  # a statement, not a row: the whole table counts as changed
        s.execute(update(ResourceRow).where(ResourceRow.name == "shop").values(labels={"a": "b"}))
    assert since(("resources",), rows=lambda table, k: False)


def test_a_deployments_observed_status_is_no_change(store: Store) -> None:
    """What a data plane reports about a deployment (every few seconds) is shown, never cached: writing it alone
    counts as no change; anything else about the deployment does."""
    at = datetime.now(UTC)
    with store.transaction() as s:
        s.add(DeploymentRow(id="dep_1", organization="default", project="shop", component="api",
                            environment="development", track="default", release_id="r1", build_id="b1",
                            artifact="sha256:x", requested_by="ada", created_at=at, updated_at=at, status={}))
    start = store.changes.seq
    with store.transaction() as s:
        s.get(DeploymentRow, "dep_1").status = {"state": "running"}
        s.execute(update(DeploymentRow).where(DeploymentRow.id.in_(["dep_1"])).values(observed_at=at))
    assert not store.changes.since(start, ("deployments",))
    with store.transaction() as s:
        s.get(DeploymentRow, "dep_1").release_id = "r2"
    assert store.changes.since(start, ("deployments",))
    start = store.changes.seq
    with store.transaction() as s:
        s.execute(update(DeploymentRow).where(DeploymentRow.id == "dep_1").values(release_id="r3", observed_at=at))
    assert store.changes.since(start, ("deployments",))


# -- transactions ----------------------------------------------------------------------------------------------------


def test_transaction_commits_on_success(store: Store) -> None:
    with store.transaction() as s:
        s.add(resource("kept"))
    with store.transaction() as s:
        assert s.scalar(select(ResourceRow.name)) == "kept"


def test_json_columns_keep_what_the_standard_library_would(store: Store) -> None:
    # orjson encodes and decodes the JSON columns; what it cannot encode (integers beyond 64 bits) the standard
    # library does, and keys that are not strings become strings, as json.dumps makes them.
    spec = {"big": 2**70, "negative": -(2**65), "ratio": 0.1, "text": "héllo ✓", "none": None,
            "nested": [{"a": [1, 2.5, True]}], 7: "seven"}
    row = resource("jsonic")
    row.spec = spec
    with store.transaction() as s:
        s.add(row)
    with store.read() as s:
        kept = s.scalar(select(ResourceRow.spec).where(ResourceRow.name == "jsonic"))
    assert kept == {**{k: v for k, v in spec.items() if k != 7}, "7": "seven"}


def test_transaction_rolls_back_on_exception(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as s:
        s.add(resource("lost"))
        s.flush()
        raise RuntimeError("boom")
    assert count(store, ResourceRow) == 0


def test_dry_run_transaction_rolls_back(store: Store) -> None:
    with store.transaction(dry_run=True) as s:
        s.add(resource("dry"))
        s.flush()
        assert s.scalar(select(func.count()).select_from(ResourceRow)) == 1
    assert count(store, ResourceRow) == 0


# -- constraints -----------------------------------------------------------------------------------------------------


def test_resource_identity_is_unique(store: Store) -> None:
    with store.transaction() as s:
        s.add(resource("api", kind="Component", project="shop"))
        # The same name is fine in another project, organization or kind.
        s.add(resource("api", kind="Component", project="other"))
        s.add(resource("api", kind="Component", organization="acme", project="shop"))
        s.add(resource("api", kind="Project"))
    with pytest.raises(IntegrityError), store.transaction() as s:
        row = resource("api", kind="Component", project="shop")
        row.uid = "another-uid"
        s.add(row)
        s.flush()
    assert count(store, ResourceRow) == 4


def test_deleting_a_user_cascades_to_role_bindings_and_tokens(store: Store) -> None:
    with store.transaction() as s:
        alice, bob = UserRow(name="alice"), UserRow(name="bob")
        s.add_all([alice, bob])
        s.flush()
        s.add_all([RoleBindingRow(id="rb-alice", user_id=alice.id, role="developer", organization="default"),
                   RoleBindingRow(id="rb-bob", user_id=bob.id, role="viewer", organization="default"),
                   TokenRow(id="tok-alice", user_id=alice.id, name="default", digest="a" * 64)])
    with store.transaction() as s:  # a plain DELETE: the database, not the ORM, must cascade
        s.execute(delete(UserRow).where(UserRow.name == "alice"))
    with store.transaction() as s:
        assert list(s.scalars(select(RoleBindingRow.id))) == ["rb-bob"]
        assert list(s.scalars(select(TokenRow.id))) == []


def test_role_binding_of_a_missing_user_is_rejected(store: Store) -> None:
    with pytest.raises(IntegrityError), store.transaction() as s:
        s.add(RoleBindingRow(id="rb-ghost", user_id=424242, role="viewer", organization="default"))
        s.flush()


# -- apply atomicity -------------------------------------------------------------------------------------------------


def test_apply_of_ten_documents_stores_nothing_when_the_tenth_fails(store: Store, keyring: KeyRing) -> None:
    raws = [raw_doc("Organization", "acme")]
    raws += [raw_doc("Project", f"p{i}", organization="acme") for i in range(7)]
    raws.append(raw_doc("Component", "api", {"endpoints": [{"name": "http", "port": 8080}]},
                        organization="acme", project="p0"))
    # The tenth refers to a pipeline that does not exist.
    raws.append(raw_doc("Project", "p9", {"deploymentPipeline": "missing"}, organization="acme"))
    assert len(raws) == 10
    applied = []
    with pytest.raises(CellplaneError) as caught, store.transaction() as s:
        for raw in raws:
            doc = parse_document(raw)
            place = resources.scope_of(doc, None, None)
            applied += lifecycle.apply(s, doc, place, keyring, "tester")
    assert len([r for r in applied if r.action == "created"]) >= 9  # the first nine went through
    assert caught.value.details[0].field == "spec.deploymentPipeline"
    assert count(store, ResourceRow) == 0

    # The same nine documents alone are stored.
    with store.transaction() as s:
        for raw in raws[:9]:
            doc = parse_document(raw)
            lifecycle.apply(s, doc, resources.scope_of(doc, None, None), keyring, "tester")
    with store.transaction() as s:
        assert s.scalar(select(func.count()).select_from(ResourceRow).where(ResourceRow.kind == "Project")) == 7
        assert resources.find(s, resources.Scope(resources.KINDS["Component"], "acme", "p0"), "api") is not None


# -- secrets at rest -------------------------------------------------------------------------------------------------

PLAINTEXT = "s3cr3t-hunter2-plaintext"


def set_secret(store: Store, keyring: KeyRing, component: str, key: str, value: str, env: str = "") -> None:
    with store.transaction() as s:
        config_service.set_value(s, keyring, "default", "shop", component, env, key, value, True, "tester")


def raw_values(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT value FROM config_values ORDER BY id"))]


def test_secret_is_stored_as_ciphertext_only(store: Store, keyring: KeyRing, tmp_path: Path) -> None:
    set_secret(store, keyring, "orders", "DB_PASSWORD", PLAINTEXT)
    with store.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM config_values")).one()
    assert PLAINTEXT not in repr(tuple(row))
    assert row.value.startswith(f"v1:{keyring.primary_id}:")
    if store.backend == "sqlite":  # not in the database file, nor in its write-ahead log
        for path in tmp_path.glob("cellplane.db*"):
            assert PLAINTEXT.encode() not in path.read_bytes()

    with store.transaction() as s:
        stored = s.scalar(select(ConfigValueRow))
        assert stored is not None and stored.secret
        assert config_service.plaintext(keyring, stored) == PLAINTEXT
        assert config_service.public_view(stored)["value"] == "********"
        # The same value again changes nothing: no new version, no new ciphertext.
        _, changed = config_service.set_value(s, keyring, "default", "shop", "orders", "", "DB_PASSWORD",
                                              PLAINTEXT, True, "tester")
        assert not changed


def test_ciphertext_moved_to_another_row_does_not_decrypt(store: Store, keyring: KeyRing) -> None:
    set_secret(store, keyring, "orders", "DB_PASSWORD", PLAINTEXT)
    set_secret(store, keyring, "billing", "DB_PASSWORD", "billing-password")
    set_secret(store, keyring, "orders", "API_KEY", "api-key")
    stolen = raw_values(store)[0]
    with store.transaction() as s:
        s.execute(update(ConfigValueRow).where(ConfigValueRow.component == "billing").values(value=stolen))
        s.execute(update(ConfigValueRow).where(ConfigValueRow.key == "API_KEY").values(value=stolen))
    with store.transaction() as s:
        for row in s.scalars(select(ConfigValueRow).where(ConfigValueRow.value == stolen)):
            if (row.component, row.key) == ("orders", "DB_PASSWORD"):
                assert config_service.plaintext(keyring, row) == PLAINTEXT
                continue
            with pytest.raises(CellplaneError) as caught:
                config_service.plaintext(keyring, row)
            assert caught.value.code == "secret-undecryptable"
            assert PLAINTEXT not in caught.value.message


def test_key_rotation_reencrypts_every_secret(store: Store, keyring: KeyRing, tmp_path: Path) -> None:
    values = {f"KEY_{i}": f"value-{i}" for i in range(7)}
    for key, value in values.items():
        set_secret(store, keyring, "orders", key, value)
    with store.transaction() as s:  # a plain value is left alone
        config_service.set_value(s, keyring, "default", "shop", "orders", "", "PLAIN", "visible", False, "tester")
    old_id = keyring.primary_id

    new_id = keyring.begin_rotation()
    assert new_id != old_id
    assert keyring.key_ids == [new_id, old_id]
    total = 0
    while True:  # small batches, as the API does it
        with store.transaction() as s:
            done = rotation.rotate_all(s, keyring, batch=3)
        total += done
        if done == 0:
            break
    assert total == len(values)
    assert keyring.finish_rotation() == [old_id]
    assert keyring.key_ids == [new_id]

    secrets_ = [v for v in raw_values(store) if v != "visible"]
    assert len(secrets_) == len(values)
    assert all(keyring.key_id_of(v) == new_id for v in secrets_)
    assert not any(old_id in v.split(":", 2)[1] for v in secrets_)
    # The persisted ring holds only the new key, and still decrypts everything.
    reloaded = KeyRing.load_or_create(tmp_path)
    assert reloaded.key_ids == [new_id]
    assert old_id not in (tmp_path / "master.key").read_text()
    with store.transaction() as s:
        for row in s.scalars(select(ConfigValueRow).where(ConfigValueRow.secret.is_(True))):
            assert config_service.plaintext(reloaded, row) == values[row.key]


# -- timestamps ------------------------------------------------------------------------------------------------------


def test_timestamps_come_back_as_aware_utc(store: Store) -> None:
    plus_five = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=5)))
    with store.transaction() as s:
        s.add(resource("defaulted"))
        explicit = resource("explicit")
        explicit.created_at = plus_five
        s.add(explicit)
        s.add(UserRow(name="alice"))
    with store.transaction() as s:
        rows = {r.name: r for r in s.scalars(select(ResourceRow))}
        user = s.scalar(select(UserRow))
    for value in (rows["defaulted"].created_at, rows["defaulted"].updated_at, rows["explicit"].created_at,
                  user.created_at):
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
    assert rows["explicit"].created_at == plus_five
    assert rows["explicit"].created_at.hour == 22  # 03:04 at +05:00 is 22:04 UTC the day before
    assert abs(rows["defaulted"].created_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_naive_timestamps_are_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"), store.transaction() as s:
        row = resource("naive")
        row.created_at = datetime(2030, 1, 1)
        s.add(row)
        s.flush()


def test_key_rotation_reencrypts_the_secrets_copied_into_releases(store: Store, keyring: KeyRing,
                                                                  tmp_path: Path) -> None:
    set_secret(store, keyring, "orders", "DB_PASSWORD", PLAINTEXT)
    place = releases.Slot("default", "shop", "orders", "development", "default")
    with store.transaction() as s:
        release = releases.make(s, keyring, place, build_id="b-1", artifact="sha256:" + "0" * 64,
                                spec={"configuration": {"env": [{"name": "DB_PASSWORD", "secret": True}]}},
                                origin="test", actor="tester")
        release_id = release.id
        [item] = release.configuration
    assert PLAINTEXT not in repr(release.configuration)
    old_id = keyring.primary_id
    new_id = keyring.begin_rotation()
    while True:
        with store.transaction() as s:
            if rotation.rotate_all(s, keyring, batch=1) == 0:
                break
    keyring.finish_rotation()
    reloaded = KeyRing.load_or_create(tmp_path)
    with store.transaction() as s:
        rotated = s.get(ReleaseRow, release_id)
        [after] = rotated.configuration
        assert keyring.key_id_of(after["cipher"]) == new_id != old_id
        assert after["cipher"] != item["cipher"]
        assert releases.reveal(reloaded, rotated, after) == PLAINTEXT
