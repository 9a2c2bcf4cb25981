"""deal_participants.added_by_user_id: the user summary the API sends, loaded whole.

The v1 spec declares this property as a whole GetUserResponse envelope
(``{success, data: {...user}}``), but its own examples of the participants list and of
adding a participant show the user summary v1 embeds everywhere (``id``, ``name``,
``email``, ``has_pic``, ``pic_hash``, ``active_flag``, ``value``). The schema follows the
examples (tools/generate_schemas.py, OVERRIDES); so does the sandbox.
"""

from __future__ import annotations

import json
import logging
import typing as t
from pathlib import Path

import pytest
import yaml

from pipedrive_sandbox import Sandbox
from tests.support.tap_runner import sync_capturing

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA = REPO_ROOT / "tap_pipedrive" / "schemas" / "deal_participants.json"
SPEC_CANDIDATES = [
    REPO_ROOT.parent / "shared" / "pipedrive-openapi" / "v1.yaml",
    REPO_ROOT.parent.parent / "shared" / "pipedrive-openapi" / "v1.yaml",
]
SPEC = next((path for path in SPEC_CANDIDATES if path.is_file()), None)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed=11, scale=0.03, burst_limit=None) as sb:
        yield sb


def test_participants_carry_who_added_them(sandbox, caplog):
    config = {"api_url": sandbox.url, "api_token": sandbox.api_token}
    caplog.set_level(logging.WARNING)
    _, messages, error = sync_capturing(config, streams={"deal_participants", "users"})
    assert error is None
    users = {
        m["record"]["id"]: m["record"]
        for m in messages
        if m["type"] == "RECORD" and m["stream"] == "users"
    }
    rows = [
        m["record"]
        for m in messages
        if m["type"] == "RECORD" and m["stream"] == "deal_participants"
    ]
    assert rows
    for row in rows:
        added_by = row["added_by_user_id"]
        assert added_by["id"] == added_by["value"]
        assert added_by["id"] in users
        assert added_by["name"] == users[added_by["id"]]["name"]
        assert added_by["email"] == users[added_by["id"]]["email"]
    dropped = [r.getMessage() for r in caplog.records if "not in the schema" in r.getMessage()]
    assert dropped == []


@pytest.mark.skipif(SPEC is None, reason="official OpenAPI specs not available")
def test_schema_holds_what_the_spec_examples_send():
    spec = yaml.safe_load(t.cast("Path", SPEC).read_text(encoding="utf-8"))
    properties = json.loads(SCHEMA.read_text())["properties"]["added_by_user_id"]["properties"]
    examples = []
    for path, operation in (
        ("/deals/{id}/participants", "get"),
        ("/deals/{id}/participants", "post"),
    ):
        responses = spec["paths"][path][operation]["responses"]
        for response in responses.values():
            for content in (response.get("content") or {}).values():
                example = content.get("example") or {}
                data = example.get("data")
                for row in data if isinstance(data, list) else [data]:
                    if isinstance(row, dict) and "added_by_user_id" in row:
                        examples.append(row["added_by_user_id"])
    assert examples
    for example in examples:
        assert set(example) <= set(properties), sorted(set(example) - set(properties))
        assert isinstance(example["id"], int) and example["value"] == example["id"]
