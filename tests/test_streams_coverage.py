"""Every stream beyond the core CRM entities syncs from the sandbox, complete and valid.

One full sync of all these streams (mail messages switched on) is shared by the tests of this
module.
"""

from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.streams import STREAM_TYPES
from tap_pipedrive.streams.core import CORE_STREAMS
from tap_pipedrive.tap import TapPipedrive
from tests.support.tap_runner import run_tap

CORE = {stream.name for stream in CORE_STREAMS} | {"custom_fields"}
# Read instead of the changelogs when field_history is "flow" (synced on their own below).
FLOW = {"deal_flow", "person_flow", "organization_flow"}
STREAMS = {stream.name for stream in STREAM_TYPES} - CORE - FLOW
PARENTS = {"deals", "persons", "organizations", "products"}
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
    return run_tap(config, streams=STREAMS | PARENTS)


@pytest.fixture(scope="module")
def synced_flow(sandbox):
    config = {"api_token": sandbox.api_token, "api_url": sandbox.url, "field_history": "flow"}
    return run_tap(config, streams=FLOW | PARENTS)


@pytest.fixture(params=["changelog", "flow"])
def run(request):
    """A sync and the streams it covers: changelogs (the default) or flows."""
    if request.param == "flow":
        return request.getfixturevalue("synced_flow"), FLOW
    return request.getfixturevalue("synced"), STREAMS


def test_every_new_stream_is_registered_and_served():
    assert len(STREAMS) >= 40
    assert {"leads", "deal_products", "deal_changelog", "mail_messages", "webhooks"} <= STREAMS
    assert {"person_changelog", "organization_changelog"} <= STREAMS


def test_counts_match_the_sandbox(sandbox, run):
    synced, streams = run
    expected = sandbox.expected_counts()
    counts = synced.record_counts()
    wrong = {
        name: (counts.get(name, 0), expected[name])
        for name in sorted(streams)
        if counts.get(name, 0) != expected[name]
    }
    assert not wrong, f"stream: (emitted, expected) {wrong}"
    assert all(counts[name] > 0 for name in streams), "a stream came out empty"


def test_records_validate_against_their_schemas(run):
    synced, streams = run
    schemas = synced.schemas()
    for name in streams:
        validator = jsonschema.Draft7Validator(schemas[name])
        for record in synced.records(name):
            error = next(iter(validator.iter_errors(record)), None)
            assert error is None, f"{name}: {error.message} at {list(error.path)}"


def test_primary_keys_are_unique_and_present(run):
    synced, streams = run
    schemas = synced.schemas()
    keys = {
        message["stream"]: message["key_properties"]
        for message in synced.messages
        if message["type"] == "SCHEMA"
    }
    for name in streams:
        assert keys[name], f"{name} declares no primary key"
        assert set(keys[name]) <= set(schemas[name]["properties"])
        seen = set()
        for record in synced.records(name):
            key = tuple(record.get(part) for part in keys[name])
            assert None not in key, f"{name}: null key part in {key}"
            assert key not in seen, f"{name}: duplicate key {key}"
            seen.add(key)


def test_child_rows_carry_their_parents_update_time(run):
    synced, streams = run
    checked = 0
    for name in streams:
        schema = synced.schemas()[name]
        for column, (parent_stream, parent_key) in PARENT_OF.items():
            if column not in schema["properties"] or parent_key not in schema["properties"]:
                continue
            times = {row["id"]: row["update_time"] for row in synced.records(parent_stream)}
            for row in synced.records(name):
                assert row[column] == times[row[parent_key]], f"{name}: {row}"
                checked += 1
    assert checked > (500 if streams is STREAMS else 100)


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


def test_flow_rows_lift_the_wrapped_id(synced_flow):
    flows = synced_flow.records("deal_flow")
    assert {row["object"] for row in flows} >= {"dealChange", "activity"}
    for row in flows:
        assert row["id"] == row["data"]["id"]


def _moment(value):
    """A v1 time ("2024-01-31 10:00:00", UTC) or an RFC 3339 one, as an aware datetime."""
    moment = datetime.fromisoformat(str(value).replace(" ", "T").replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.mark.parametrize("entity", ["deal", "person", "organization"])
def test_changelogs_deliver_every_field_change_the_flows_deliver(synced, synced_flow, entity):
    key = f"{entity}_id"
    from_flow = {
        (
            row[key],
            row["data"]["field_key"],
            row["data"]["old_value"],
            row["data"]["new_value"],
            _moment(row["data"]["log_time"]),
        )
        for row in synced_flow.records(f"{entity}_flow")
        if row["object"] == f"{entity}Change"
    }
    from_changelog = {
        (row[key], row["field_key"], row["old_value"], row["new_value"], _moment(row["time"]))
        for row in synced.records(f"{entity}_changelog")
    }
    assert from_flow, "the flow delivered no field change to compare with"
    assert from_flow <= from_changelog


def test_mail_messages_stay_off_without_the_setting(sandbox):
    sandbox.clear_requests()
    config = {"api_token": sandbox.api_token, "api_url": sandbox.url}
    catalog = TapPipedrive(config=config, validate_config=False).catalog_dict
    streams = {entry["tap_stream_id"] for entry in catalog["streams"]}
    assert "mail_messages" not in streams and "mail_threads" in streams
    result = run_tap(config, streams={"mail_messages"})
    assert result.records("mail_messages") == []
    assert not [r for r in sandbox.requests if "mail" in r.path], "mail was requested"
