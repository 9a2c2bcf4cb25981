"""Every stream beyond the core CRM entities syncs from the sandbox, complete and valid.

One full sync of all these streams (mail messages switched on) is shared by the tests of this
module.
"""

from __future__ import annotations

import jsonschema
import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.streams import STREAM_TYPES
from tap_pipedrive.streams.core import CORE_STREAMS
from tap_pipedrive.tap import TapPipedrive
from tests.tap_runner import run_tap

CORE = {stream.name for stream in CORE_STREAMS} | {"custom_fields"}
STREAMS = {stream.name for stream in STREAM_TYPES} - CORE
PARENT_OF = {
    "deal_update_time": ("deals", "deal_id"),
    "person_update_time": ("persons", "person_id"),
    "organization_update_time": ("organizations", "organization_id"),
    "product_update_time": ("products", "product_id"),
    "note_update_time": ("notes", "note_id"),
    "mail_thread_update_time": ("mail_threads", "mail_thread_id"),
}


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed=7, scale=0.1, burst_limit=None) as sb:
        projects = sb.dataset["projects"]
        sb.update_record("projects", projects[0]["id"], is_archived=True)
        sb.delete_record("projects", projects[1]["id"])
        # Pipedrive sends this flag as text; "false" must not come out true.
        relationship = sb.dataset["organization_relationships"][0]["id"]
        sb.update_record("organization_relationships", relationship, active_flag="false")
        yield sb


@pytest.fixture(scope="module")
def synced(sandbox):
    config = {
        "api_token": sandbox.api_token,
        "api_url": sandbox.url,
        "include_mail_messages": True,
    }
    # The parents are synced too, so that child rows can be checked against them.
    return run_tap(config, streams=STREAMS | {"deals", "persons", "organizations", "products"})


def test_every_new_stream_is_registered_and_served():
    assert len(STREAMS) >= 40
    assert {"leads", "deal_products", "deal_flow", "mail_messages", "webhooks"} <= STREAMS


def test_counts_match_the_sandbox(sandbox, synced):
    expected = sandbox.expected_counts()
    counts = synced.record_counts()
    wrong = {
        name: (counts.get(name, 0), expected[name])
        for name in sorted(STREAMS)
        if counts.get(name, 0) != expected[name]
    }
    assert not wrong, f"stream: (emitted, expected) {wrong}"
    assert all(counts[name] > 0 for name in STREAMS), "a stream came out empty"


def test_records_validate_against_their_schemas(synced):
    schemas = synced.schemas()
    for name in STREAMS:
        validator = jsonschema.Draft7Validator(schemas[name])
        for record in synced.records(name):
            error = next(iter(validator.iter_errors(record)), None)
            assert error is None, f"{name}: {error.message} at {list(error.path)}"


def test_primary_keys_are_unique_and_present(synced):
    schemas = synced.schemas()
    keys = {
        message["stream"]: message["key_properties"]
        for message in synced.messages
        if message["type"] == "SCHEMA"
    }
    for name in STREAMS:
        assert keys[name], f"{name} declares no primary key"
        assert set(keys[name]) <= set(schemas[name]["properties"])
        seen = set()
        for record in synced.records(name):
            key = tuple(record.get(part) for part in keys[name])
            assert None not in key, f"{name}: null key part in {key}"
            assert key not in seen, f"{name}: duplicate key {key}"
            seen.add(key)


def test_child_rows_carry_their_parents_update_time(synced):
    checked = 0
    for name in STREAMS:
        schema = synced.schemas()[name]
        for column, (parent_stream, parent_key) in PARENT_OF.items():
            if column not in schema["properties"] or parent_key not in schema["properties"]:
                continue
            times = {row["id"]: row["update_time"] for row in synced.records(parent_stream)}
            for row in synced.records(name):
                assert row[column] == times[row[parent_key]], f"{name}: {row}"
                checked += 1
    assert checked > 500


def test_secrets_and_types_are_cleaned(sandbox, synced):
    # The sandbox serves the webhook password; the tap never passes it on.
    assert all("http_auth_password" in hook for hook in sandbox.dataset["webhooks"])
    hooks = synced.records("webhooks")
    assert hooks and all("http_auth_password" not in hook for hook in hooks)
    assert all(isinstance(hook["is_active"], bool) for hook in hooks)
    threads = synced.records("mail_threads")
    assert {thread["folder"] for thread in threads} <= {"inbox", "drafts", "sent", "archive"}
    assert all(isinstance(thread["read_flag"], bool) for thread in threads)
    for row in synced.records("deal_fields"):
        for option in row.get("options") or ():
            assert isinstance(option["id"], str)
    assert any(row.get("options") for row in synced.records("deal_fields"))
    flags = [row["active_flag"] for row in synced.records("organization_relationships")]
    assert False in flags and True in flags
    assert set(flags) <= {True, False}


def test_archived_deleted_and_inactive_rows_are_included(synced):
    leads = synced.records("leads")
    assert any(lead["is_archived"] for lead in leads)
    assert any(not lead["is_archived"] for lead in leads)
    projects = synced.records("projects")
    assert any(project["is_archived"] for project in projects)
    assert any(project["status"] == "deleted" for project in projects)
    goals = synced.records("goals")
    assert {goal["is_active"] for goal in goals} == {True, False}


def test_flow_rows_lift_the_wrapped_id(synced):
    flows = synced.records("deal_flow")
    assert {row["object"] for row in flows} >= {"dealChange", "activity"}
    for row in flows:
        assert row["id"] == row["data"]["id"]


def test_mail_messages_stay_off_without_the_setting(sandbox):
    sandbox.clear_requests()
    config = {"api_token": sandbox.api_token, "api_url": sandbox.url}
    catalog = TapPipedrive(config=config, validate_config=False).catalog_dict
    streams = {entry["tap_stream_id"] for entry in catalog["streams"]}
    assert "mail_messages" not in streams and "mail_threads" in streams
    result = run_tap(config, streams={"mail_messages"})
    assert result.records("mail_messages") == []
    assert not [r for r in sandbox.requests if "mail" in r.path], "mail was requested"
