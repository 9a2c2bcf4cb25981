"""Custom fields end to end: sandbox -> tap-pipedrive -> Meltano -> target-postgres -> typed columns."""

from __future__ import annotations

import json

import psycopg
import pytest

from pipedrive_sandbox import Sandbox
from tests.support.meltano import MeltanoProject, sandbox_tap_environment
from tests.support.postgres import PostgresServer

SCHEMA = "pipedrive"
# Column type in PostgreSQL per Pipedrive custom field type, as loaded by target-postgres.
EXPECTED_COLUMN_TYPES = {
    "renewal_date": "date",
    "win_chance": "numeric",
    "seats": "bigint",
    "technical_owner": "bigint",
    "priority": "text",
    "reference_code": "text",
    "contract_value": "jsonb",
    "billing_address": "jsonb",
    "contract_period": "jsonb",
}


@pytest.fixture
def running_sandbox():
    with Sandbox(seed=5, scale=0.05) as sandbox:
        yield sandbox


def _columns(server: PostgresServer, table: str) -> dict[str, str]:
    with psycopg.connect(server.dsn) as connection:
        return dict(
            connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (SCHEMA, table),
            ).fetchall()
        )


@pytest.mark.timeout(900)
def test_custom_fields_arrive_as_typed_columns(
    meltano: MeltanoProject, postgres_database: PostgresServer, running_sandbox: Sandbox
):
    env = {
        **sandbox_tap_environment(running_sandbox.url),
        **postgres_database.target_postgres_env(schema=SCHEMA),
        "TAP_PIPEDRIVE__SELECT": json.dumps(["deals.*", "custom_fields.*"]),
    }
    run = ("run", "--state-id-suffix", f"cf-{postgres_database.database}")
    result = meltano.run(*run, "tap-pipedrive", "target-postgres", env=env)
    assert result.returncode == 0, result.stderr[-4000:]

    columns = _columns(postgres_database, "deals")
    for column, data_type in EXPECTED_COLUMN_TYPES.items():
        assert columns.get(column) == data_type, (column, columns.get(column))
    # Colliding and symbol-only labels got distinct columns; no raw hash-keyed blob.
    assert sum(name.startswith("deal_score_") for name in columns) == 2
    assert sum(name.startswith("custom_field_") for name in columns) >= 2
    assert "custom_fields" not in columns

    definitions = {d.name: d for d in running_sandbox.world.fields.custom("deal")}
    priority = definitions["Priority"]
    labels = {option["id"]: option["label"] for option in priority.options}
    expected = {
        deal["id"]: labels[deal["custom_fields"][priority.code]]
        for deal in running_sandbox.dataset["deals"]
        if deal["custom_fields"].get(priority.code) is not None
    }
    renewal = definitions["Renewal date"]
    with psycopg.connect(postgres_database.dsn) as connection:
        loaded = dict(
            connection.execute(
                f"SELECT id, priority FROM {SCHEMA}.deals WHERE priority IS NOT NULL"
            ).fetchall()
        )
        dates = connection.execute(
            f"SELECT id, renewal_date::text FROM {SCHEMA}.deals WHERE renewal_date IS NOT NULL"
        ).fetchall()
        join = connection.execute(
            f"SELECT key, label, column_type FROM {SCHEMA}.custom_fields "
            "WHERE stream = 'deals' AND \"column\" = 'renewal_date'"
        ).fetchall()
        money = connection.execute(
            f"SELECT (contract_value->>'value')::numeric, contract_value->>'currency' "
            # An unset value is stored as JSON null, which IS NOT NULL does not exclude;
            # ordered, so the row does not depend on where updates left rows in the table.
            f"FROM {SCHEMA}.deals WHERE jsonb_typeof(contract_value) = 'object' "
            "ORDER BY id LIMIT 1"
        ).fetchone()
    assert expected and loaded == expected
    source_dates = {
        deal["id"]: deal["custom_fields"][renewal.code]
        for deal in running_sandbox.dataset["deals"]
        if deal["custom_fields"].get(renewal.code)
    }
    assert dates and dict(dates) == source_dates
    assert join == [(renewal.code, "Renewal date", "string (date)")]
    assert money is not None and money[1] in {"EUR", "USD", "GBP", "JPY", "SEK"}
