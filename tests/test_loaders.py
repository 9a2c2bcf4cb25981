"""Both configured loaders deliver every record intact.

A synthetic Singer stream goes through ``meltano invoke <loader>``. Its streams hold
the shapes that made other embedded loaders lose rows: a date-time in the first
record, a stream whose columns are all strings, a first record that looks like a
CSV header, a single-record stream, nested objects and arrays, non-ASCII text.
"""

from __future__ import annotations

import datetime as dt
import json

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
        "label_ids": [number, number + 1],
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
            "label_ids": {"type": ["null", "array"], "items": {"type": "integer"}},
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


def test_target_jsonl_delivers_every_record_intact(meltano: MeltanoProject, tmp_path):
    result = meltano.run(
        "invoke",
        "target-jsonl",
        env={"TARGET_JSONL_DESTINATION_PATH": str(tmp_path)},
        stdin=singer_messages(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "bookmarks": {"deals": {"cursor": "done"}}
    }
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{stream}.jsonl" for stream in STREAMS
    )
    for stream, (_, records) in STREAMS.items():
        lines = (tmp_path / f"{stream}.jsonl").read_text(encoding="utf-8").splitlines()
        assert _sorted_by_id([json.loads(line) for line in lines]) == _sorted_by_id(records)


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
                        expected[name] = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
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
