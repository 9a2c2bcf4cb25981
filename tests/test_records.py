"""Every record of every stream validates against its stream's schema; timestamps are RFC 3339 UTC."""

from __future__ import annotations

import re
from collections.abc import Iterator

import jsonschema
import pytest

from tests.support.tap_runner import CORE_STREAM_NAMES, run_tap

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


DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FORMATS = {"date-time": RFC3339_UTC, "date": DATE}


def format_violations(schema: dict, value: object, where: str) -> Iterator[str]:
    """Values that break their schema's ``date-time`` or ``date`` format, at any depth."""
    if value is None:
        return
    pattern = FORMATS.get(schema.get("format", ""))
    if pattern is not None and not (isinstance(value, str) and pattern.match(value)):
        yield f"{where} = {value!r} (not {schema['format']})"
    if isinstance(value, dict):
        for name, prop in (schema.get("properties") or {}).items():
            yield from format_violations(prop, value.get(name), f"{where}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from format_violations(schema["items"], item, f"{where}[{index}]")


def test_format_walk_sees_nested_objects_and_arrays() -> None:
    schema = {
        "properties": {
            "person": {"properties": {"add_time": {"format": "date-time"}}},
            "options": {"items": {"properties": {"day": {"format": "date"}}}},
        }
    }
    record = {"person": {"add_time": "2020-07-07 10:29:47"}, "options": [{"day": "2020-07-07"}]}
    assert list(format_violations(schema, record, "r")) == [
        "r.person.add_time = '2020-07-07 10:29:47' (not date-time)"
    ]
    record["options"].append({"day": "2020-07-07T00:00:00Z"})
    assert len(list(format_violations(schema, record, "r"))) == 2


def test_timestamps_are_valid_at_every_depth(full_sync):
    checked = 0
    for stream, schema in full_sync.schemas().items():
        for record in full_sync.records(stream):
            violations = list(format_violations(schema, record, stream))
            assert not violations, violations[:3]
            checked += 1
    assert checked


def test_nested_v1_timestamps_arrive_as_rfc3339(full_sync):
    # The person inside a deal participant carries v1 timestamps ("2020-07-07 10:29:47").
    people = [row["person"] for row in full_sync.records("deal_participants") if row.get("person")]
    assert people and all(RFC3339_UTC.match(person["add_time"]) for person in people)


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
