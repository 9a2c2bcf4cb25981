"""Both configured loaders deliver every record intact.

A synthetic Singer stream goes through ``meltano invoke <loader>``. Its streams hold
the shapes that made other embedded loaders lose rows: a date-time in the first
record, a stream whose columns are all strings, a first record that looks like a
CSV header, a single-record stream, nested objects and arrays, non-ASCII text.

Evidence behind the embedded loader (records in -> rows out of this probe stream):
target-duckdb 0.8.0 with duckdb 2.0.1 loads deals 5 -> 4, permission_sets 5 -> 4 and
single 1 -> 0 while logging "Loading 5 rows" (its CSV COPY lets DuckDB sniff a header
row, so the first record of each batch is lost); target-sqlite 0.2.0 does not import
on Python 3.10+ (it pins SQLAlchemy 1.2). Hence the in-repo loaders/target-sqlite.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from pathlib import Path

import psycopg

from tests.support.meltano import MeltanoProject
from tests.support.postgres import PostgresServer

NULLABLE_STRING = {"type": ["null", "string"]}
DATE_TIME = {"type": ["null", "string"], "format": "date-time"}
TITLES = ["Ünïcødé deal ☃", "日本語の取引", "Ελληνικά", "emoji 🚀", 'comma, "quote"\nnewline']


def _deal(number: int) -> dict:
    return {
        "id": number,
        "title": TITLES[number - 1],
        "value": number * 10.5,
        "add_time": f"2024-01-0{number}T10:2{number}:00Z",
        "owner": {"id": 100 + number, "name": f"Öwner {number}"},
        # Nested numbers with fractions: they reach the target as Decimals.
        "amount": {"value": number * 7131.436, "currency": "EUR"},
        "label_ids": [number, number + 1],
        "probabilities": [number / 8, 0.25],  # exact in binary: equal as Decimal and float
        "active": number % 2 == 0,
    }


STREAMS: dict[str, tuple[dict, list[dict]]] = {
    "deals": (
        {
            "id": {"type": "integer"},
            "title": NULLABLE_STRING,
            "value": {"type": ["null", "number"]},
            "add_time": DATE_TIME,
            "owner": {
                "type": ["null", "object"],
                "properties": {
                    "id": {"type": ["null", "integer"]},
                    "name": NULLABLE_STRING,
                },
            },
            "amount": {
                "type": ["null", "object"],
                "properties": {
                    "value": {"type": ["null", "number"]},
                    "currency": NULLABLE_STRING,
                },
            },
            "label_ids": {"type": ["null", "array"], "items": {"type": "integer"}},
            "probabilities": {"type": ["null", "array"], "items": {"type": "number"}},
            "active": {"type": ["null", "boolean"]},
        },
        [_deal(number) for number in range(1, 6)],
    ),
    "permission_sets": (
        {"id": {"type": "string"}, "name": NULLABLE_STRING, "app": NULLABLE_STRING},
        [{"id": "id", "name": "name", "app": "app"}]
        + [{"id": f"uuid-{n}", "name": f"set {n}", "app": "sales"} for n in range(4)],
    ),
    "single": (
        {"id": {"type": "integer"}, "update_time": DATE_TIME},
        [{"id": 1, "update_time": "2024-03-01T01:02:03Z"}],
    ),
}


def singer_messages() -> str:
    lines = []
    for stream, (properties, records) in STREAMS.items():
        lines.append(
            {
                "type": "SCHEMA",
                "stream": stream,
                "key_properties": ["id"],
                "schema": {"type": "object", "properties": properties},
            }
        )
        lines.extend({"type": "RECORD", "stream": stream, "record": r} for r in records)
    lines.append({"type": "STATE", "value": {"bookmarks": {"deals": {"cursor": "done"}}}})
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def _sorted_by_id(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda record: str(record["id"]))


def _moment(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _sqlite_rows(database: Path, stream: str) -> list[dict]:
    """The table's rows in record form: JSON text decoded, 0/1 as booleans, times parsed."""
    properties, _ = STREAMS[stream]
    columns = list(properties)
    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = connection.execute(
            f'SELECT {", ".join(columns)} FROM "{stream}" ORDER BY CAST(id AS TEXT)'
        ).fetchall()
    decoded = []
    for row in rows:
        record = {}
        for name, value in zip(columns, row, strict=True):
            kinds = properties[name]["type"]
            if value is not None and ("object" in kinds or "array" in kinds):
                value = json.loads(value)
            elif value is not None and "boolean" in kinds:
                value = bool(value)
            elif value is not None and properties[name].get("format") == "date-time":
                value = _moment(value)
            record[name] = value
        decoded.append(record)
    return decoded


def _as_loaded(record: dict, stream: str) -> dict:
    """A probe record with its date-times as moments, for comparison with loaded rows."""
    properties, _ = STREAMS[stream]
    return {
        name: _moment(value) if properties[name].get("format") == "date-time" else value
        for name, value in record.items()
    }


def _invoke_target_sqlite(meltano: MeltanoProject, database: Path, messages: str) -> None:
    result = meltano.run(
        "invoke", "target-sqlite", env={"TARGET_SQLITE_DATABASE": str(database)}, stdin=messages
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "bookmarks": {"deals": {"cursor": "done"}}
    }


def test_target_sqlite_delivers_every_record_intact(meltano: MeltanoProject, tmp_path):
    database = tmp_path / "probe.db"
    _invoke_target_sqlite(meltano, database, singer_messages())

    for stream, (_, records) in STREAMS.items():
        loaded = _sqlite_rows(database, stream)
        assert len(loaded) == len(records), stream
        expected = [_as_loaded(record, stream) for record in _sorted_by_id(records)]
        assert loaded == expected, stream
    # Nested values are JSON text in the file, readable by SQLite's own JSON functions.
    with contextlib.closing(sqlite3.connect(database)) as connection:
        owners = connection.execute(
            "SELECT json_extract(owner, '$.name') FROM deals ORDER BY id"
        ).fetchall()
    assert [name for (name,) in owners] == [f"Öwner {n}" for n in range(1, 6)]
    # Nested numbers stay JSON numbers, as in PostgreSQL's jsonb (not "35657.18" as text).
    with contextlib.closing(sqlite3.connect(database)) as connection:
        kinds = connection.execute(
            "SELECT DISTINCT json_type(amount, '$.value'), json_type(probabilities, '$[0]')"
            " FROM deals"
        ).fetchall()
    assert kinds == [("real", "real")]


FOLLOWER_KEYS = ["deal_id", "user_id"]
# The last pair repeats the first: a stream made of its keys alone has nothing to update.
FOLLOWER_PAIRS = [(1, 7), (1, 8), (2, 7), (1, 7)]


def _followers_messages() -> str:
    """A stream whose columns are all key properties, as the follower streams are."""
    schema = {
        "type": "SCHEMA",
        "stream": "followers",
        "key_properties": FOLLOWER_KEYS,
        "schema": {"type": "object", "properties": {k: {"type": "integer"} for k in FOLLOWER_KEYS}},
    }
    records = [
        {
            "type": "RECORD",
            "stream": "followers",
            "record": dict(zip(FOLLOWER_KEYS, pair, strict=True)),
        }
        for pair in FOLLOWER_PAIRS
    ]
    return "".join(json.dumps(message) + "\n" for message in [schema, *records])


def test_target_sqlite_upserts_on_key_properties(meltano: MeltanoProject, tmp_path):
    """Reloads and re-delivered records keep one row per key; the last version wins."""
    database = tmp_path / "probe.db"
    _invoke_target_sqlite(meltano, database, _followers_messages() + singer_messages())
    changed = {**_deal(3), "title": "renamed", "owner": None, "label_ids": []}
    again = singer_messages().replace(
        '{"type": "STATE"',
        json.dumps({"type": "RECORD", "stream": "deals", "record": changed}) + '\n{"type": "STATE"',
    )
    _invoke_target_sqlite(meltano, database, _followers_messages() + again)

    for stream, (_, records) in STREAMS.items():
        assert len(_sqlite_rows(database, stream)) == len(records), stream
    deal = next(row for row in _sqlite_rows(database, "deals") if row["id"] == 3)
    assert deal == _as_loaded(changed, "deals")
    with contextlib.closing(sqlite3.connect(database)) as connection:
        followers = connection.execute("SELECT deal_id, user_id FROM followers ORDER BY 1, 2")
        assert followers.fetchall() == sorted(set(FOLLOWER_PAIRS))


def test_target_postgres_delivers_every_record_intact(
    meltano: MeltanoProject, postgres_database: PostgresServer
):
    result = meltano.run(
        "invoke",
        "target-postgres",
        env=postgres_database.target_postgres_env(schema="pipedrive"),
        stdin=singer_messages(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert postgres_database.password not in result.stdout + result.stderr

    with psycopg.connect(postgres_database.dsn) as connection:
        for stream, (_, records) in STREAMS.items():
            columns = list(records[0])
            rows = connection.execute(
                f"SELECT {', '.join(columns)} FROM pipedrive.{stream} ORDER BY id::text"
            ).fetchall()
            loaded = [dict(zip(columns, row, strict=True)) for row in rows]
            assert len(loaded) == len(records), stream
            for record, row in zip(_sorted_by_id(records), loaded, strict=True):
                expected = dict(record)
                for name, value in record.items():
                    if name in {"add_time", "update_time"}:
                        # target-postgres stores date-times as UTC without a zone.
                        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                        expected[name] = moment.astimezone(dt.UTC).replace(tzinfo=None)
                assert row == expected, stream


def test_target_postgres_upserts_on_rerun(
    meltano: MeltanoProject, postgres_database: PostgresServer
):
    """A second load of the same records keeps one row per primary key."""
    env = postgres_database.target_postgres_env(schema="pipedrive")
    for _ in range(2):
        result = meltano.run("invoke", "target-postgres", env=env, stdin=singer_messages())
        assert result.returncode == 0, result.stderr[-3000:]
    with psycopg.connect(postgres_database.dsn) as connection:
        counts = {
            stream: connection.execute(f"SELECT count(*) FROM pipedrive.{stream}").fetchone()[0]
            for stream in STREAMS
        }
    assert counts == {stream: len(records) for stream, (_, records) in STREAMS.items()}
