"""Every record of every stream validates against its stream's schema; timestamps are RFC 3339 UTC."""

from __future__ import annotations

import re

import jsonschema
import pytest

from tests.tap_runner import CORE_STREAM_NAMES, run_tap

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture
def full_sync(sandbox, api_config):
    return run_tap(api_config)


def test_records_validate_against_schemas(full_sync):
    schemas = full_sync.schemas()
    counts = full_sync.record_counts()
    assert counts, "no records"
    for stream, schema in schemas.items():
        validator = jsonschema.Draft7Validator(schema)
        for record in full_sync.records(stream):
            errors = sorted(validator.iter_errors(record), key=str)
            assert not errors, f"{stream} record {record.get('id')}: {errors[0].message}"


def test_timestamps_are_rfc3339_utc(full_sync):
    for stream, schema in full_sync.schemas().items():
        date_time_fields = [
            name for name, prop in schema["properties"].items() if prop.get("format") == "date-time"
        ]
        for record in full_sync.records(stream):
            for field in date_time_fields:
                value = record.get(field)
                if value is not None:
                    assert RFC3339_UTC.match(value), f"{stream}.{field} = {value!r}"


def test_core_stream_counts_match_the_sandbox(sandbox, full_sync):
    expected = sandbox.expected_counts()
    counts = full_sync.record_counts()
    for stream in CORE_STREAM_NAMES:
        assert counts.get(stream, 0) == expected[stream], stream


def test_deals_include_deleted_and_archived(full_sync):
    deals = full_sync.records("deals")
    assert any(d["is_deleted"] for d in deals)
    assert any(d["is_archived"] for d in deals)
    assert any(d["status"] == "won" for d in deals)


def test_optional_fields_are_requested(sandbox, full_sync):
    deal = full_sync.records("deals")[0]
    assert "activities_count" in deal
    assert "next_activity_id" in deal


def test_properties_real_accounts_send_arrive_typed(sandbox, full_sync):
    """Properties the spec does not declare but real accounts send are kept, with types."""
    users = full_sync.records("users")
    assert {type(user["is_admin"]) for user in users} == {bool}
    assert any(user["is_admin"] for user in users)
    assert any(isinstance(user.get("signup_flow_variation"), str) for user in users)
    assert any(isinstance(role.get("description"), str) for role in full_sync.records("roles"))
    outcomes = [goal["expected_outcome"] for goal in full_sync.records("goals")]
    assert any(isinstance(outcome.get("currency_id"), int) for outcome in outcomes)
    leads = full_sync.records("leads")
    archived = [lead for lead in leads if lead["is_archived"]]
    assert archived and all(RFC3339_UTC.match(lead["archive_time"]) for lead in archived)
    assert all(lead.get("archive_time") is None for lead in leads if not lead["is_archived"])
    notes = full_sync.records("notes")
    assert any(isinstance((note.get("lead") or {}).get("title"), str) for note in notes)
    files = full_sync.records("files")
    assert files and all(isinstance(file.get("people_name"), str) for file in files)
