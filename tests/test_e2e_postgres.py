"""The production path end to end: sandbox -> `meltano run tap-pipedrive target-postgres`.

On a real PostgreSQL server (tests/support/postgres.py) and the project's Meltano:

1. ``meltano install``, then a full sync of every stream: each table's row count equals
   the sandbox's, and sampled rows equal the sandbox's records, built-in fields and
   typed custom-field columns alike.
2. The sandbox changes (updates, a delete, new records, a new custom field) and Meltano
   runs again: exactly the changed rows move, the new column arrives typed, and the
   counts still match.
3. ``meltano run --full-refresh``: the same final data, now with the new custom field
   filled in on every row.

Nothing Meltano, the tap or the target print may hold the API token or the database
password.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.tap import TapPipedrive
from tests.support.meltano import MeltanoProject, sandbox_tap_environment
from tests.support.pipeline import row_counts
from tests.support.postgres import PostgresServer
from tests.support.secrets import SecretLedger

SCHEMA = "pipedrive"
SAMPLE_SIZE = 8
CUSTOM_FIELD_STREAMS = ("deals", "persons", "organizations", "products")
# Built-in columns compared row by row, per stream.
BUILT_IN = {
    "deals": ("title", "value", "currency", "status", "stage_id", "is_deleted", "add_time", "update_time", "expected_close_date"),
    "persons": ("name", "owner_id", "org_id", "update_time", "birthday"),
    "organizations": ("name", "owner_id", "update_time", "annual_revenue"),
    "products": ("name", "code", "tax", "update_time"),
    "activities": ("subject", "type", "due_date", "done", "update_time"),
    "notes": ("content", "deal_id", "add_time", "update_time"),
    "leads": ("title", "owner_id", "expected_close_date", "add_time"),
    "projects": ("title", "status", "start_date", "update_time"),
}  # fmt: skip

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture
def running_sandbox():
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sandbox:
        yield sandbox


# --- what the database should hold ----------------------------------------------------------
def _tap(sandbox: Sandbox) -> TapPipedrive:
    config = {"api_token": sandbox.api_token, "api_url": sandbox.url, "include_mail_messages": True}
    return TapPipedrive(config=config, validate_config=False)


def expected_rows(sandbox: Sandbox) -> dict[str, int]:
    """Rows per table after a full sync, from the sandbox's own bookkeeping."""
    tap = _tap(sandbox)
    counts = {
        name: count for name, count in sandbox.expected_counts().items() if name in tap.streams
    }
    # The tap asks for deleted projects too (status=...,deleted), as for deals.
    counts["projects"] = len(sandbox.dataset["projects"])
    # One row per custom field of each stream that has them.
    counts["custom_fields"] = len(list(tap.streams["custom_fields"].get_records(None)))
    return {name: count for name, count in counts.items() if count}


def _tables(server: PostgresServer) -> dict[str, int]:
    return {name: count for name, count in row_counts(server, SCHEMA).items() if count}


# --- comparing values -----------------------------------------------------------------------
def _same(expected: Any, stored: Any) -> bool:
    """Whether a sandbox value and the value PostgreSQL holds for it are the same."""
    if expected in (None, "") and stored in (None, ""):
        return True
    if isinstance(stored, dt.datetime):
        text = str(expected).replace(" ", "T")
        text = text if text.endswith("Z") or "+" in text[10:] else text + "Z"
        if stored.tzinfo is None:  # target-postgres keeps UTC in "timestamp" columns
            stored = stored.replace(tzinfo=dt.UTC)
        return stored == dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if isinstance(stored, dt.date):
        return stored.isoformat() == str(expected)[:10]
    if isinstance(stored, (Decimal, float)) or (
        isinstance(stored, int) and not isinstance(stored, bool)
    ):
        return expected is not None and abs(float(stored) - float(expected)) < 1e-6
    if isinstance(stored, bool):
        return stored == bool(expected)
    return stored == expected


def _custom_value(field: dict, value: Any) -> Any:
    """A v2 custom field value as the tap emits it (option ids become labels)."""
    labels = {option["id"]: option["label"] for option in field["options"] or []}
    if value is None:
        return None
    if field["field_type"] == "enum":
        return labels[int(value)]
    if field["field_type"] == "set":
        return [labels[int(item)] for item in value]
    return value


def _custom_fields(server: PostgresServer) -> dict[str, list[dict]]:
    with psycopg.connect(server.dsn) as connection:
        rows = connection.execute(
            f'SELECT stream, key, "column", field_type, options FROM {SCHEMA}.custom_fields'
        ).fetchall()
    fields: dict[str, list[dict]] = {}
    for stream, key, column, field_type, options in rows:
        fields.setdefault(stream, []).append(
            {"key": key, "column": column, "field_type": field_type, "options": options}
        )
    return fields


def _row(server: PostgresServer, table: str, record_id: Any) -> dict[str, Any]:
    with psycopg.connect(server.dsn) as connection:
        cursor = connection.execute(f'SELECT * FROM {SCHEMA}."{table}" WHERE id = %s', (record_id,))
        names = [column.name for column in cursor.description]
        found = cursor.fetchone()
    assert found is not None, f"{table} id {record_id} is not in the database"
    return dict(zip(names, found, strict=True))


def assert_rows_match(server: PostgresServer, sandbox: Sandbox, table: str, ids: list[Any]) -> int:
    """Compare the listed records column by column; return how many values were compared."""
    records = {record["id"]: record for record in sandbox.dataset[table]}
    fields = _custom_fields(server).get(table, []) if table in CUSTOM_FIELD_STREAMS else []
    compared = 0
    for record_id in ids:
        record, row = records[record_id], _row(server, table, record_id)
        for name in BUILT_IN[table]:
            assert _same(record.get(name), row[name]), (
                table,
                record_id,
                name,
                record.get(name),
                row[name],
            )
            compared += 1
        custom = record.get("custom_fields") or {}
        for field in fields:
            expected = _custom_value(field, custom.get(field["key"]))
            stored = row[field["column"]]
            if field["field_type"] in ("address", "time", "timerange") and expected is not None:
                expected, stored = expected.get("value"), (stored or {}).get("value")
            if field["field_type"] == "set" and expected is not None:
                expected, stored = sorted(expected), sorted(stored or [])
            assert _same(expected, stored), (table, record_id, field["column"], expected, stored)
            compared += 1
    return compared


def _sample(sandbox: Sandbox, table: str, rng: random.Random) -> list[Any]:
    ids = [record["id"] for record in sandbox.dataset[table]]
    return rng.sample(ids, min(SAMPLE_SIZE, len(ids)))


def _moved_since(server: PostgresServer, table: str, moment: dt.datetime) -> set[Any]:
    with psycopg.connect(server.dsn) as connection:
        rows = connection.execute(
            f'SELECT id FROM {SCHEMA}."{table}" WHERE _sdc_extracted_at > %s', (moment,)
        ).fetchall()
    return {row[0] for row in rows}


def _column_type(server: PostgresServer, table: str, column: str) -> str | None:
    with psycopg.connect(server.dsn) as connection:
        found = connection.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND column_name = %s",
            (SCHEMA, table, column),
        ).fetchone()
    return found[0] if found else None


def _child_rows(server: PostgresServer, key: str, parent_id: Any) -> dict[str, int]:
    """Rows per child table (``deal_*`` tables with a ``deal_id``) of one parent."""
    prefix = key.removesuffix("_id") + "_"
    with psycopg.connect(server.dsn) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.columns "
                "WHERE table_schema = %s AND column_name = %s",
                (SCHEMA, key),
            )
            if name.startswith(prefix)
        ]
        counts = {
            table: connection.execute(
                f'SELECT count(*) FROM {SCHEMA}."{table}" WHERE "{key}" = %s', (parent_id,)
            ).fetchone()[0]
            for table in tables
        }
    return {table: count for table, count in counts.items() if count}


# --- the test --------------------------------------------------------------------------------
def test_meltano_into_postgres_full_incremental_and_full_refresh(
    meltano: MeltanoProject, postgres_database: PostgresServer, running_sandbox: Sandbox
):
    sandbox = running_sandbox
    server = postgres_database
    ledger = SecretLedger(sandbox.api_token, server.password)
    env = {
        **sandbox_tap_environment(sandbox.url),
        **server.target_postgres_env(schema=SCHEMA),
        "TAP_PIPEDRIVE_INCLUDE_MAIL_MESSAGES": "true",
    }
    # The suffix keeps this test's bookmarks apart from any other run in the session.
    run = ("run", "--state-id-suffix", server.database)

    def meltano_run(*args: str) -> None:
        result = meltano.run(*args, env=env)
        ledger.assert_absent(
            result.stdout + result.stderr, where=f"the output of meltano {args[0]}"
        )
        assert result.returncode == 0, result.stderr[-4000:]

    meltano_run("install")

    # 1. Full sync: every table, every row.
    meltano_run(*run, "tap-pipedrive", "target-postgres")
    assert _tables(server) == expected_rows(sandbox)
    rng = random.Random(3)
    compared = sum(
        assert_rows_match(server, sandbox, table, _sample(sandbox, table, rng))
        for table in BUILT_IN
    )
    assert compared > 300

    # 2. Changes in Pipedrive, then an incremental run: only they move.
    after_first = dt.datetime.now(dt.UTC)
    new_field = sandbox.add_custom_field("deals", "Renewal Score", "double")
    deals = [record["id"] for record in sandbox.dataset["deals"] if record["status"] != "deleted"]
    persons = [record["id"] for record in sandbox.dataset["persons"]]
    changed_deals = rng.sample(deals, 4)
    for deal_id in changed_deals[:3]:
        sandbox.update_record("deals", deal_id, title=f"Renamed ✓ {deal_id}", value=1234.5)
    sandbox.delete_record("deals", changed_deals[3])
    changed_deals.append(sandbox.add_record("deals", title="Brand new deal 🚀")["id"])
    changed_persons = rng.sample(persons, 2)
    for person_id in changed_persons:
        sandbox.update_record("persons", person_id, name="Zoë Ångström-Renamed")
    changed_persons.append(sandbox.add_record("persons", name="New Person 新")["id"])
    project = sandbox.dataset["projects"][0]["id"]
    sandbox.delete_record("projects", project)

    # Pipedrive lists no children of a deleted deal, so their rows stay as last read
    # (their deal_update_time says how old they are; deals.is_deleted says the deal is gone).
    kept_children = _child_rows(server, "deal_id", changed_deals[3])

    meltano_run(*run, "tap-pipedrive", "target-postgres")
    expected = expected_rows(sandbox)
    for table, rows in kept_children.items():
        expected[table] = expected.get(table, 0) + rows
    assert _tables(server) == expected
    assert _moved_since(server, "deals", after_first) == set(changed_deals)
    assert _moved_since(server, "persons", after_first) == set(changed_persons)
    assert not _moved_since(server, "organizations", after_first)
    assert not _moved_since(server, "activities", after_first)
    assert_rows_match(server, sandbox, "deals", changed_deals)
    assert_rows_match(server, sandbox, "persons", changed_persons)
    assert _row(server, "deals", changed_deals[3])["is_deleted"] is True
    assert _row(server, "projects", project)["status"] == "deleted"
    columns = {field["key"]: field["column"] for field in _custom_fields(server)["deals"]}
    assert _column_type(server, "deals", columns[new_field["field_code"]]) == "numeric"

    # 3. Full refresh: the same data, every row read again (the new field filled in too).
    after_second = dt.datetime.now(dt.UTC)
    meltano_run(*run, "--full-refresh", "tap-pipedrive", "target-postgres")
    assert _tables(server) == expected
    all_deals = [record["id"] for record in sandbox.dataset["deals"]]
    assert _moved_since(server, "deals", after_second) == set(all_deals)
    sample = _sample(sandbox, "deals", rng)
    assert_rows_match(server, sandbox, "deals", sample)
    with psycopg.connect(server.dsn) as connection:
        filled = connection.execute(
            f'SELECT count(*) FROM {SCHEMA}.deals WHERE "{columns[new_field["field_code"]]}" IS NOT NULL'
        ).fetchone()[0]
    holding = sum(
        1
        for record in sandbox.dataset["deals"]
        if (record.get("custom_fields") or {}).get(new_field["field_code"]) is not None
    )
    assert filled == holding > 0


# --- deletes and merges ----------------------------------------------------------------------
def _snapshot(server: PostgresServer, keys: dict[str, list[str]]) -> dict[str, dict[tuple, dict]]:
    """Per table: key -> the row's columns, Singer's metadata columns aside, and whether the
    row is retired (``_sdc_deleted_at`` set)."""
    tables: dict[str, dict[tuple, dict]] = {}
    with psycopg.connect(server.dsn) as connection:
        for table, key in keys.items():
            try:
                cursor = connection.execute(f'SELECT * FROM {SCHEMA}."{table}"')
            except psycopg.errors.UndefinedTable:
                connection.rollback()
                continue
            names = [column.name for column in cursor.description]
            rows = tables.setdefault(table, {})
            for found in cursor.fetchall():
                row = dict(zip(names, found, strict=True))
                values = {k: v for k, v in row.items() if not k.startswith("_sdc_")}
                values["retired"] = row["_sdc_deleted_at"] is not None
                rows[tuple(_key_text(row[name]) for name in key)] = values
    return tables


def _key_text(value: Any) -> Any:
    """A key column as the tap emitted it (timestamps come back from PostgreSQL as naive UTC)."""
    if isinstance(value, dt.datetime):
        spec = "milliseconds" if value.microsecond else "seconds"
        return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
    return value


def _values(row: dict) -> dict:
    return {name: value for name, value in row.items() if name != "retired"}


@pytest.mark.parametrize("hard_delete", [False, True], ids=["soft_delete", "hard_delete"])
def test_meltano_into_postgres_retires_deletes_merges_and_removed_children(
    meltano: MeltanoProject,
    postgres_database: PostgresServer,
    running_sandbox: Sandbox,
    hard_delete: bool,
):
    from tests.support.tap_runner import run_tap
    from tests.test_deletes import _change_everything, _truth

    sandbox = running_sandbox
    server = postgres_database
    env = {
        **sandbox_tap_environment(sandbox.url),
        **server.target_postgres_env(schema=SCHEMA),
        "TARGET_POSTGRES_HARD_DELETE": "true" if hard_delete else "false",
    }
    run = ("run", "--state-id-suffix", server.database, "tap-pipedrive", "target-postgres")
    config = {"api_token": sandbox.api_token, "api_url": sandbox.url}

    def meltano_run(extra: dict[str, str] | None = None) -> None:
        result = meltano.run(*run, env={**env, **(extra or {})})
        assert result.returncode == 0, result.stderr[-4000:]

    first_truth_run = run_tap(config)
    keys = {
        m["stream"]: m["key_properties"] for m in first_truth_run.messages if m["type"] == "SCHEMA"
    }
    truth_before = _truth(first_truth_run)
    meltano_run()
    before = _snapshot(server, keys)
    live_before = {
        table: sum(not row["retired"] for row in rows.values()) for table, rows in before.items()
    }
    assert {table: count for table, count in live_before.items() if count} == {
        table: len(rows) for table, rows in truth_before.items() if rows
    }

    deleted = _change_everything(sandbox)
    truth_after = _truth(run_tap(config))

    # A run between sweeps: incremental streams send their bookmarks, nothing is swept.
    sandbox.clear_requests()
    meltano_run()
    persons = [r for r in sandbox.requests if r.path.endswith("/v2/persons")]
    assert persons and all("updated_since" in r.query for r in persons)
    notes = [r for r in sandbox.requests if r.path.endswith("/v1/notes")]
    assert notes and all("updated_since" in r.query for r in notes)

    # The sweep, on demand, as the README shows it:
    # TAP_PIPEDRIVE_SWEEP_NOW=true meltano run tap-pipedrive target-postgres
    meltano_run({"TAP_PIPEDRIVE_SWEEP_NOW": "true"})
    after = _snapshot(server, keys)

    for table, truth in truth_after.items():
        stored = after.get(table, {})
        live = {key for key, row in stored.items() if not row["retired"]}
        assert live == set(truth), (table, sorted(live ^ set(truth), key=str)[:5])
        gone = set(before.get(table, {})) - set(truth)
        if hard_delete:
            assert not gone & set(stored), (table, "retired rows must be deleted")
        else:
            # Soft delete: every row that is gone is retired and keeps its last values,
            # except deals and projects, listed as deleted with their last values.
            assert gone <= set(stored), table
            for key in gone:
                assert stored[key]["retired"], (table, key)
                if table not in ("deals", "projects"):
                    assert _values(stored[key]) == _values(before[table][key]), (table, key)
        # No other row changed: only rows whose record changed in the sandbox moved.
        moved = {
            key
            for key in set(before.get(table, {})) & live
            if _values(before[table][key]) != _values(stored[key])
        }
        changed = {key for key in moved if truth_before[table].get(key) != truth.get(key)}
        assert moved == changed, (table, sorted(moved - changed, key=str)[:5])
    for entity, ids in deleted.items():
        for record_id in ids:
            row = after[entity].get((record_id,))
            assert (row is None) if hard_delete else row["retired"], (entity, record_id)
