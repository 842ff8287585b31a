"""Proves the test database harness: tests/pgserver.py and the fixtures in tests/conftest.py."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from pgserver import PostgresServer, find_postgres_bin


@pytest.mark.postgres
def test_server_runs_from_real_binaries(postgres_server: PostgresServer) -> None:
    bindir = find_postgres_bin()
    assert bindir is not None
    assert (bindir / "initdb").exists()
    assert postgres_server.bindir == bindir
    assert postgres_server.url_for("x") == f"postgresql+psycopg://cellplane@127.0.0.1:{postgres_server.port}/x"


@pytest.mark.postgres
def test_two_databases_are_separate(postgres_server: PostgresServer) -> None:
    url_a = postgres_server.create_database("harness_a")
    url_b = postgres_server.create_database("harness_b")
    assert url_a.endswith("/harness_a")
    assert url_b.endswith("/harness_b")

    with psycopg.connect(postgres_server.dsn_for("harness_a")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        conn.execute("create table items (id int primary key, name text not null)")
        conn.execute("insert into items values (1, 'one'), (2, 'two')")
        rows = conn.execute("select id, name from items order by id").fetchall()
        assert rows == [(1, "one"), (2, "two")]
        # The server is UTF-8, and runs with the options the harness passes.
        assert conn.execute("show server_encoding").fetchone() == ("UTF8",)
        assert conn.execute("show fsync").fetchone() == ("off",)

    with psycopg.connect(postgres_server.dsn_for("harness_b")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        exists = conn.execute("select to_regclass('items') is not null").fetchone()
        assert exists == (False,)


@pytest.mark.postgres
def test_create_database_rejects_names_needing_quotes(postgres_server: PostgresServer) -> None:
    with pytest.raises(ValueError, match="must match"):
        postgres_server.create_database("Bad-Name")


@pytest.mark.postgres
def test_stop_removes_everything(postgres_server: PostgresServer) -> None:
    # A second, private server: stopping the session one would break the other tests.
    server = PostgresServer.start()
    with psycopg.connect(server.dsn_for("postgres")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    server.stop()
    server.stop()  # idempotent
    assert not server.base.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn_for("postgres"), connect_timeout=2)


def test_database_url_works_with_sqlalchemy(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("create table things (id integer primary key, label varchar(20))"))
            conn.execute(sa.text("insert into things (id, label) values (1, 'a'), (2, 'b')"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            labels = conn.execute(sa.text("select label from things order by id")).scalars().all()
        assert labels == ["a", "b"]
        assert engine.dialect.name in ("sqlite", "postgresql")
    finally:
        engine.dispose()


def test_database_url_is_fresh(database_url: str) -> None:
    # Each test gets its own empty database: the table made by the test above is not here.
    engine = sa.create_engine(database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
