"""SQLite target: the SDK's SQL machinery, plus JSON columns for nested values and upserts.

Why this exists: the embedded loaders on PyPI lose or refuse data here. target-duckdb
0.8.0 drops the first record of a batch (its CSV COPY lets DuckDB sniff a header row),
and target-sqlite 0.2.0 pins SQLAlchemy 1.2, which no longer imports on Python 3.10+.
"""

from __future__ import annotations

import datetime
import typing as t
from decimal import Decimal

import simplejson
import sqlalchemy as sa
from singer_sdk import typing as th
from singer_sdk.sql import SQLConnector, SQLSink, SQLTarget
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


class SQLiteConnector(SQLConnector):
    """Connects to one SQLite file; nested values are stored as JSON text."""

    allow_column_add = True
    allow_column_alter = False
    allow_merge_upsert = True
    allow_temp_tables = False

    def get_sqlalchemy_url(self, config: t.Mapping[str, t.Any]) -> str:
        return f"sqlite:///{config['database']}"

    def to_sql_type(self, jsonschema_type: dict) -> sa.types.TypeEngine:
        types = jsonschema_type.get("type", [])
        types = [types] if isinstance(types, str) else types
        if "object" in types or "array" in types:
            return sa.types.JSON()
        return super().to_sql_type(jsonschema_type)


class SQLiteSink(SQLSink[SQLiteConnector]):
    """Upserts on the stream's key properties, so re-delivered records replace old rows."""

    connector_class = SQLiteConnector

    def bulk_insert_records(
        self,
        full_table_name: t.Any,
        schema: dict,
        records: t.Iterable[dict[str, t.Any]],
    ) -> int | None:
        columns = list(self.conform_schema(schema)["properties"])
        rows = [
            {name: _storable(record.get(name)) for name in columns}
            for record in (self.conform_record(r) for r in records)
        ]
        if not rows:
            return 0
        _, _, table_name = self.connector.parse_full_table_name(full_table_name)
        table = sa.Table(table_name, sa.MetaData(), *(sa.Column(c) for c in columns))
        statement = sqlite_insert(table)
        if self.key_properties:
            keys = list(self.key_properties)
            updates = {c: statement.excluded[c] for c in columns if c not in keys}
            # A stream made of its keys alone has nothing to update: the row is already there.
            statement = (
                statement.on_conflict_do_update(index_elements=keys, set_=updates)
                if updates
                else statement.on_conflict_do_nothing(index_elements=keys)
            )
        with self.connector._connect() as connection, connection.begin():
            connection.execute(statement, rows)
        return len(rows)


def _storable(value: t.Any) -> t.Any:
    """Turn a conformed value into one of SQLite's own types."""
    if isinstance(value, (dict, list)):
        # The SDK reads JSON numbers with fractions as Decimals; written as JSON numbers
        # (exactly as they came), not as strings, so SQLite's JSON holds what jsonb would.
        return simplejson.dumps(value, ensure_ascii=False, use_decimal=True, default=str)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        # ISO text sorts and compares correctly, and reads back unambiguously.
        return value.isoformat()
    return value


class TargetSQLite(SQLTarget):
    """Singer target for a local SQLite database file."""

    name = "target-sqlite"
    default_sink_class = SQLiteSink
    config_jsonschema = th.PropertiesList(
        th.Property(
            "database",
            th.StringType,
            required=True,
            title="Database file",
            description="Path of the SQLite database file (created if missing).",
        ),
    ).to_dict()
