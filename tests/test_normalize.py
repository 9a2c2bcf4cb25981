"""Timestamp and date normalisation, including the odd values Pipedrive sends."""

from __future__ import annotations

import logging

import pytest

from tap_pipedrive.normalize import CoercionLog, to_date, to_rfc3339


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
