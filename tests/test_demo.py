"""`make demo` end to end: sandbox -> tap -> Meltano -> target-sqlite, checked independently."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipedrive_sandbox import Sandbox
from tests.support.meltano import (
    REPO_ROOT,
    SANDBOX_API_TOKEN,
    MeltanoProject,
    count_differences,
)

DEMO_SCRIPT = REPO_ROOT / "scripts" / "demo.py"


def _load_demo_module():
    spec = importlib.util.spec_from_file_location("demo_script", DEMO_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo_module()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_demo_loads_exactly_what_the_sandbox_serves(meltano: MeltanoProject, tmp_path):
    database = tmp_path / "demo.db"
    database.write_bytes(b"not a database: the demo must replace this file")
    result = subprocess.run(
        [sys.executable, str(DEMO_SCRIPT), "--database", str(database)],
        cwd=REPO_ROOT,
        env=meltano.environment({"MELTANO_BIN": str(meltano.executable)}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "streams match the sandbox's expected counts" in result.stdout
    assert f"sqlite3 {database} 'select count(*) from deals'" in result.stdout
    run_log = (REPO_ROOT / ".demo" / "meltano-run.log").read_text(encoding="utf-8")
    assert SANDBOX_API_TOKEN not in run_log + result.stdout + result.stderr
    # Progress is shown while the run goes on, not only a summary at the end.
    assert "\n  Progress" in result.stdout
    # The report next to the database holds the tap's calls for every stream it read.
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    summary = demo.run_summary(run_log)
    assert summary["deals"]["calls"] >= 1 and summary["deal_participants"]["calls"] > 1
    assert 'data-stream="deals"' in report and f"{summary['deals']['records']:,}" in report

    # Recount from the database file and from a sandbox built here, not from the demo's report.
    expected = Sandbox(seed=demo.DEFAULT_SEED, scale=demo.DEFAULT_SCALE).expected_counts()
    assert expected["custom_fields"] > 0 and expected["mail_messages"] > 0
    # The updates feeds are read only with field_history: flow (the changelogs instead).
    assert {"deal_flow", "person_flow", "organization_flow"} == demo.NOT_READ
    expected = {stream: count for stream, count in expected.items() if stream not in demo.NOT_READ}
    with contextlib.closing(sqlite3.connect(database)) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        loaded = {
            table: connection.execute(f"SELECT count(*) FROM {_quoted(table)}").fetchone()[0]
            for table in tables
        }
        assert count_differences(loaded, expected) == {}, "(loaded, expected) rows per stream"
        for table in tables:
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({_quoted(table)})")]
            if "id" in columns:
                distinct = connection.execute(
                    f"SELECT count(DISTINCT id) FROM {_quoted(table)}"
                ).fetchone()[0]
                assert distinct == loaded[table], f"{table} has duplicate or null ids"
        json_columns = [
            row[1]
            for row in connection.execute("PRAGMA table_info(deals)")
            if row[2].upper() == "JSON"
        ]
        nested = [
            json.loads(value)
            for column in json_columns
            for (value,) in connection.execute(f"SELECT {_quoted(column)} FROM deals")
            if value is not None
        ]
        person_texts = [
            value
            for row in connection.execute("SELECT * FROM persons")
            for value in row
            if isinstance(value, str)
        ]
        update_times = [value for (value,) in connection.execute("SELECT update_time FROM deals")]
    # Nested values are stored as JSON objects and arrays, not as Python reprs.
    assert json_columns and any(isinstance(value, (dict, list)) for value in nested)
    assert any(not text.isascii() for text in person_texts)
    # Date-times are ISO text with their UTC offset.
    assert len(update_times) == expected["deals"]
    assert all(
        dt.datetime.fromisoformat(text).utcoffset() == dt.timedelta(0) for text in update_times
    )


def _processes_with_environment_value(marker: str) -> list[int]:
    """Ids of live processes whose environment mentions ``marker`` (Linux /proc)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_sigterm_stops_the_sandbox_meltano_and_its_plugins(meltano: MeltanoProject, tmp_path):
    # Scale 1 runs for minutes, so the interrupt surely lands mid-run.
    database = tmp_path / "demo.db"
    process = subprocess.Popen(
        [sys.executable, str(DEMO_SCRIPT), "--database", str(database), "--scale", "1"],
        cwd=REPO_ROOT,
        env=meltano.environment({"MELTANO_BIN": str(meltano.executable)}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    first_line = process.stdout.readline()
    assert "listening on http://127.0.0.1:" in first_line
    port = int(first_line.rsplit(":", 1)[1])
    # Wait until the target creates the database, so the tap and target are both running.
    deadline = time.monotonic() + 120
    while not database.exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no database was created within 120s"
        time.sleep(0.2)
    assert process.poll() is None, "the demo finished before it could be interrupted"
    # Meltano passes its environment on, so the plugins carry the database path too.
    assert len(_processes_with_environment_value(str(tmp_path))) >= 3

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    process.stdout.close()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    assert _processes_with_environment_value(str(tmp_path)) == []


def test_compare_flags_missing_extra_and_different_streams():
    table, mismatched = demo.compare(
        loaded={"deals": 5, "persons": 3, "surprise": 1},
        expected={"deals": 5, "persons": 4, "stages": 2, "mail_threads": 0},
    )
    assert mismatched == ["persons", "stages", "surprise"]
    assert [line.split()[0] for line in table] == [
        "stream",
        "deals",
        "mail_threads",
        "persons",
        "stages",
        "surprise",
    ]
    assert table[1].split() == ["deals", "5", "5", "ok"]
    assert table[4].split() == ["stages", "0", "2", "MISMATCH"]


def test_compare_accepts_identical_counts():
    _, mismatched = demo.compare({"deals": 2000, "users": 12}, {"deals": 2000, "users": 12})
    assert mismatched == []


def test_previous_database_is_removed_but_other_files_are_kept(tmp_path):
    database = tmp_path / "demo.db"
    for name in ("demo.db", "demo.db-journal", "demo.db-wal", "notes.txt"):
        (tmp_path / name).write_text("old", encoding="utf-8")
    demo.remove_previous_database(database)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    demo.remove_previous_database(tmp_path / "new" / "demo.db")  # missing: creates the folder
    assert (tmp_path / "new").is_dir()


def test_loaded_counts_counts_every_table(tmp_path):
    database = tmp_path / "demo.db"
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("CREATE TABLE deals (id INTEGER PRIMARY KEY)")
        connection.executemany("INSERT INTO deals VALUES (?)", [(1,), (2,), (3,)])
        connection.execute('CREATE TABLE "odd ""name" (id TEXT)')
        connection.execute("CREATE TABLE stages (id INTEGER)")
    assert demo.loaded_counts(database) == {"deals": 3, 'odd "name': 0, "stages": 0}


@pytest.mark.parametrize("content", [None, b"not a database at all, just some bytes " * 4])
def test_loaded_counts_of_a_missing_or_foreign_file_is_one_clear_error(tmp_path, content):
    database = tmp_path / "demo.db"
    if content is not None:
        database.write_bytes(content)
    with pytest.raises(demo.DemoError, match=r"^cannot read .*demo\.db: "):
        demo.loaded_counts(database)
    assert database.exists() == (content is not None)  # read-only: nothing created


def test_query_hint_names_the_database_as_typed():
    hint = demo.query_hint(demo.REPO_ROOT / "output" / "demo" / "pipedrive.db")
    assert "sqlite3 output/demo/pipedrive.db 'select count(*) from deals'" in hint


def test_bad_scale_is_one_clear_line():
    result = subprocess.run(
        [sys.executable, str(DEMO_SCRIPT), "--scale", "0"],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--scale must be > 0, got 0.0" in result.stderr
    assert "Traceback" not in result.stderr
