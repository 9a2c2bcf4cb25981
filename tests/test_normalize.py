"""Timestamp and date normalisation, including the odd values Pipedrive sends."""

from __future__ import annotations

import logging

import pytest

from tap_pipedrive.normalize import CoercionLog, TimestampPaths, to_date, to_rfc3339


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-01T10:20:30Z", "2024-05-01T10:20:30Z"),
        ("2024-05-01T10:20:30.000Z", "2024-05-01T10:20:30.000Z"),
        ("2020-10-14T11:30:36.551Z", "2020-10-14T11:30:36.551Z"),
        ("2024-05-01 10:20:30", "2024-05-01T10:20:30Z"),
        ("2024-05-01T12:20:30+02:00", "2024-05-01T10:20:30Z"),
        ("2024-05-01T12:20:30.551+02:00", "2024-05-01T10:20:30.551Z"),
        ("2024-05-01", "2024-05-01T00:00:00Z"),
        ("0000-00-00 00:00:00", None),
        ("0000-00-00", None),
        ("2024-00-10 00:00:00", None),
    ],
)
def test_to_rfc3339(raw, expected):
    assert to_rfc3339(raw) == expected


@pytest.mark.parametrize("raw", ["yesterday", "2024-13-45 99:99:99", "", 12345])
def test_to_rfc3339_rejects_garbage(raw):
    with pytest.raises((ValueError, IndexError)):
        to_rfc3339(raw)


def test_to_date():
    assert to_date("2024-05-01") == "2024-05-01"
    assert to_date("2024-05-01 00:00:00") == "2024-05-01"
    assert to_date("0000-00-00") is None
    with pytest.raises(ValueError):
        to_date("05/01/2024")


def test_coercion_log_warns_once_per_field_and_counts(caplog):
    log = CoercionLog(logging.getLogger("test"))
    with caplog.at_level(logging.WARNING):
        log.coerced("update_time", "0000-00-00 00:00:00")
        log.coerced("update_time", "0000-00-00 00:00:00")
        log.coerced("add_time", "bad")
    assert log.counts == {"update_time": 2, "add_time": 1}
    assert sum("update_time" in r.getMessage() for r in caplog.records) == 1


def test_timestamp_paths_rewrite_every_depth():
    schema = {
        "properties": {
            "add_time": {"type": ["string", "null"], "format": "date-time"},
            "person": {
                "type": ["object", "null"],
                "properties": {
                    "add_time": {"format": "date-time"},
                    "birthday": {"format": "date"},
                    "picture": {"properties": {"update_time": {"format": "date-time"}}},
                },
            },
            "options": {"items": {"properties": {"add_time": {"format": "date-time"}}}},
            "times": {"items": {"format": "date-time"}},
            "name": {"type": "string"},
            "custom_fields": {"properties": {"due": {"format": "date"}}},
        }
    }
    paths = TimestampPaths(schema, skip=frozenset({"custom_fields"}))
    row = {
        "add_time": "2020-07-07 10:29:47",
        "person": {
            "add_time": "2020-07-07 10:29:47",
            "birthday": "1990-02-30",
            "picture": {"update_time": "2021-01-01T02:00:00+02:00"},
        },
        "options": [{"add_time": "2020-07-07 10:29:47"}, None, {"add_time": None}],
        "times": ["2020-07-07 10:29:47", None],
        "name": "2020-07-07 10:29:47",
        "custom_fields": {"due": "2020-07-07 10:29:47"},
    }
    log = CoercionLog(logging.getLogger("test"))
    paths.apply(row, log)
    assert row == {
        "add_time": "2020-07-07T10:29:47Z",
        "person": {
            "add_time": "2020-07-07T10:29:47Z",
            "birthday": None,
            "picture": {"update_time": "2021-01-01T00:00:00Z"},
        },
        "options": [{"add_time": "2020-07-07T10:29:47Z"}, None, {"add_time": None}],
        "times": ["2020-07-07T10:29:47Z", None],
        "name": "2020-07-07 10:29:47",
        "custom_fields": {"due": "2020-07-07 10:29:47"},
    }
    assert dict(log.counts) == {"person.birthday": 1}


def test_timestamp_paths_leave_out_branches_without_timestamps():
    schema = {
        "properties": {
            "update_time": {"format": "date-time"},
            "owner": {"properties": {"name": {"type": "string"}}},
            "emails": {"items": {"properties": {"value": {"type": "string"}}}},
        }
    }
    paths = TimestampPaths(schema)
    assert paths.objects == () and paths.object_lists == ()
    assert not TimestampPaths({"properties": {"owner": schema["properties"]["owner"]}})
