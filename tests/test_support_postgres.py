"""The PostgreSQL test server is private, loopback-only and password-protected."""

from __future__ import annotations

import dataclasses
import os
import stat

import psycopg
import pytest

from tests.support import postgres as postgres_support
from tests.support.postgres import PostgresServer, PostgresUnavailableError, find_bin_dir


def test_server_listens_on_loopback_only(postgres_server: PostgresServer):
    with psycopg.connect(postgres_server.dsn) as connection:
        listen = connection.execute("SHOW listen_addresses").fetchone()
        port = connection.execute("SHOW port").fetchone()
        socket_dirs = connection.execute("SHOW unix_socket_directories").fetchone()
    assert listen == ("127.0.0.1",)
    assert port == (str(postgres_server.port),)
    assert socket_dirs == (str(postgres_server.socket_dir),)


def test_server_does_not_run_as_root(postgres_server: PostgresServer):
    with psycopg.connect(postgres_server.dsn) as connection:
        data_dir = connection.execute("SHOW data_directory").fetchone()[0]
    assert os.stat(data_dir).st_uid != 0
    assert stat.S_IMODE(os.stat(data_dir).st_mode) & 0o077 == 0


def test_tcp_login_requires_the_password(postgres_server: PostgresServer):
    wrong = dataclasses.replace(postgres_server, password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong.dsn).close()


def test_each_test_gets_its_own_empty_database(postgres_database: PostgresServer):
    with psycopg.connect(postgres_database.dsn) as connection:
        assert connection.execute("SELECT current_database()").fetchone() == (
            postgres_database.database,
        )
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        connection.execute("CREATE TABLE deals (id integer PRIMARY KEY, title text)")
        connection.execute("INSERT INTO deals VALUES (1, 'Ünïcødé ☃')")
        assert connection.execute("SELECT title FROM deals").fetchone() == ("Ünïcødé ☃",)


def test_pg_bin_dir_overrides_the_search(tmp_path, monkeypatch):
    for tool in ("initdb", "pg_ctl", "postgres"):
        (tmp_path / tool).write_text("#!/bin/sh\n", encoding="utf-8")
    monkeypatch.setenv("PG_BIN_DIR", str(tmp_path))
    assert find_bin_dir() == tmp_path


def test_missing_binaries_stop_before_anything_is_created(monkeypatch):
    def no_binaries():
        raise PostgresUnavailableError("PostgreSQL server binaries not found")

    monkeypatch.setattr(postgres_support, "find_bin_dir", no_binaries)
    created = []
    monkeypatch.setattr(postgres_support.tempfile, "mkdtemp", lambda **_: created.append(1))
    with pytest.raises(PostgresUnavailableError), postgres_support.running_postgres():
        pass
    assert created == []
