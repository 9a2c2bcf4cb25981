"""The record path: compiled conformance gives the SDK's result; output flushes per STATE."""

from __future__ import annotations

import copy
import io
import json
import logging
import sys

import pytest
from singer_sdk.helpers._typing import conform_record_data_types
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import RecordMessage, SchemaMessage, StateMessage

from pipedrive_sandbox import Sandbox
from tap_pipedrive.conform import Conformer
from tap_pipedrive.output import SingerOutput
from tap_pipedrive.tap import TapPipedrive

LOGGER = logging.getLogger("test")

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": ["integer"]},
        "flag": {"type": ["boolean", "null"]},
        "name": {"type": ["string", "null"]},
        "owner": {
            "type": ["object", "null"],
            "properties": {"id": {"type": ["integer", "null"]}, "active": {"type": ["boolean"]}},
        },
        "emails": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "properties": {"value": {"type": "string"}, "primary": {"type": "boolean"}},
            },
        },
        "flags": {"type": ["array", "null"], "items": {"type": ["boolean"]}},
        "free": {"type": ["object", "null"], "additionalProperties": True, "properties": {}},
    },
}


def _sdk(record: dict, schema: dict) -> dict:
    return conform_record_data_types(
        "s", copy.deepcopy(record), schema, TypeConformanceLevel.RECURSIVE, LOGGER
    )


@pytest.mark.parametrize(
    "record",
    [
        {"id": 1, "flag": 1, "name": "x"},
        {"id": 2, "flag": 0, "unknown": "dropped", "owner": {"id": 3, "active": 1, "extra": 2}},
        {"id": 3, "emails": [{"value": "a", "primary": 1, "label": "work"}], "flags": [1, 0, None]},
        {"id": 4, "free": {"anything": {"goes": 1}}, "flag": None, "owner": None, "emails": None},
    ],
)
def test_conformer_gives_the_sdk_result(record):
    expected = _sdk(record, SCHEMA)
    assert Conformer(SCHEMA, LOGGER)(copy.deepcopy(record)) == expected


def test_conformer_warns_once_per_unknown_property(caplog):
    conform = Conformer(SCHEMA, LOGGER)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            conform({"id": 1, "surprise": 1, "owner": {"id": 1, "inner": 2}})
    warnings = [r.getMessage() for r in caplog.records if "not in the schema" in r.getMessage()]
    # One warning per property, however many records carry it.
    assert sorted(warnings) == [
        "Properties ['owner.inner'] were present in the record but not in the schema; dropped.",
        "Properties ['surprise'] were present in the record but not in the schema; dropped.",
    ]


def test_conformer_matches_the_sdk_on_real_records():
    """Records of every core stream, as the tap builds them, conform exactly as the SDK would."""
    with Sandbox(seed=5, scale=0.02, burst_limit=None) as sandbox:
        tap = TapPipedrive(config={"api_token": sandbox.api_token, "api_url": sandbox.url})
        for name in ("deals", "persons", "organizations", "activities", "products", "users"):
            stream = tap.streams[name]
            rows = []
            for row in stream.get_records(stream.partitions[0] if stream.partitions else None):
                rows.append(row)
                if len(rows) == 40:
                    break
            assert rows, name
            for row in rows:
                row["not_in_schema"] = {"nested": True}
                expected = _sdk(row, stream.effective_schema)
                assert stream._conformer(copy.deepcopy(row)) == expected, name


class _Stdout(io.TextIOWrapper):
    def __init__(self) -> None:
        self.raw_bytes = io.BytesIO()
        super().__init__(self.raw_bytes, encoding="utf-8")
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_output_flushes_at_state_not_per_record(monkeypatch):
    stdout = _Stdout()
    monkeypatch.setattr(sys, "stdout", stdout)
    writer = SingerOutput()
    writer.write_message(SchemaMessage("s", {"type": "object"}, ["id"]))
    after_schema = stdout.flushes
    for number in range(100):
        writer.write_message(RecordMessage("s", {"id": number, "name": "é"}))
    assert stdout.flushes == after_schema
    writer.write_message(StateMessage({"bookmarks": {"s": {"id": 99}}}))
    assert stdout.flushes == after_schema + 1
    lines = [json.loads(line) for line in stdout.raw_bytes.getvalue().decode().splitlines()]
    assert [line["type"] for line in lines] == ["SCHEMA"] + ["RECORD"] * 100 + ["STATE"]
    assert lines[1]["record"] == {"id": 0, "name": "é"}


def test_output_to_a_text_only_stream(monkeypatch):
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    SingerOutput().write_message(RecordMessage("s", {"id": 1}))
    assert json.loads(stdout.getvalue())["record"] == {"id": 1}
