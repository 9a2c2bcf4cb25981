"""Deletes, merges and removed children reach the target through ACTIVATE_VERSION.

``Warehouse`` loads Singer messages the way target-postgres does in its default soft-delete
mode: RECORD upserts by key and stores the message's version, ACTIVATE_VERSION sets
``_sdc_deleted_at`` on rows of an older version that are not retired yet (target-postgres
also retires rows without a version; the SDK's generic SQL targets do not, so the stricter
rule is the one tested). After a
sweep, the rows it keeps live must be exactly what a fresh full sync of the same account
delivers, value for value.
"""

from __future__ import annotations

import dataclasses
import typing as t

import pytest

from tests.support.tap_runner import SyncResult, run_tap

if t.TYPE_CHECKING:
    from pipedrive_sandbox import Sandbox


def _incremental(result: SyncResult) -> set[str]:
    """Streams with a bookmark (their SCHEMA names a replication key)."""
    return {
        m["stream"]
        for m in result.messages
        if m["type"] == "SCHEMA" and m.get("bookmark_properties")
    }


@dataclasses.dataclass
class Row:
    record: dict
    version: int | None
    deleted_at: t.Any


@dataclasses.dataclass
class Warehouse:
    tables: dict[str, dict[tuple, Row]] = dataclasses.field(default_factory=dict)
    keys: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def load(self, result: SyncResult) -> None:
        for message in result.messages:
            kind, stream = message["type"], message.get("stream")
            if kind == "SCHEMA":
                self.keys[stream] = message["key_properties"]
                self.tables.setdefault(stream, {})
            elif kind == "RECORD":
                record = message["record"]
                key = tuple(record[name] for name in self.keys[stream])
                self.tables[stream][key] = Row(
                    record, message.get("version"), record.get("_sdc_deleted_at")
                )
            elif kind == "ACTIVATE_VERSION":
                for row in self.tables[stream].values():
                    stale = row.version is not None and row.version < message["version"]
                    if stale and row.deleted_at is None:
                        row.deleted_at = "retired"

    def live(self, stream: str) -> dict[tuple, dict]:
        return {
            key: row.record
            for key, row in self.tables.get(stream, {}).items()
            if row.deleted_at is None
        }

    def retired(self, stream: str) -> set[tuple]:
        return {k for k, row in self.tables.get(stream, {}).items() if row.deleted_at is not None}


def _truth(result: SyncResult) -> dict[str, dict[tuple, dict]]:
    """Per stream, the rows a fresh full sync delivers as existing, by key."""
    keys = {m["stream"]: m["key_properties"] for m in result.messages if m["type"] == "SCHEMA"}
    truth: dict[str, dict[tuple, dict]] = {stream: {} for stream in keys}
    for stream in keys:
        for record in result.records(stream):
            if record.get("_sdc_deleted_at") is None:
                truth[stream][tuple(record[name] for name in keys[stream])] = record
    return truth


def _closed(result: SyncResult) -> set[str]:
    """Streams that can be closed by ACTIVATE_VERSION: all but those with a column named
    "version" (target-postgres cannot soft-delete in such a table)."""
    return {
        stream
        for stream, schema in result.schemas().items()
        if "version" not in schema["properties"]
    }


def _activated(result: SyncResult) -> set[str]:
    return {m["stream"] for m in result.messages if m["type"] == "ACTIVATE_VERSION"}


def _change_everything(sandbox: Sandbox) -> dict[str, list]:
    """Deletes for every kind of entity, merges, children taken off parents that stay."""
    data = sandbox.dataset

    def live(entity: str, skip: int = 0) -> t.Any:
        rows = [
            r for r in data[entity] if not r.get("is_deleted") and r.get("active_flag") is not False
        ]
        return rows[skip]["id"]

    deleted: dict[str, list] = {}
    for entity in (
        "persons",
        "organizations",
        "activities",
        "products",
        "notes",
        "leads",
        "files",
        "filters",
        "goals",
        "phases",
        "tasks",
        "lead_labels",
        "call_logs",
        "stages",
        "pipelines",
        "activity_types",
        "currencies",
        "users",
        "projects",
        "project_templates",
        "boards",
        "roles",
        "permission_sets",
        "organization_relationships",
    ):
        record_id = live(entity, 1)
        sandbox.delete_record(entity, record_id)
        deleted[entity] = [record_id]
    deals = [r["id"] for r in data["deals"] if r["status"] != "deleted"]
    sandbox.delete_record("deals", deals[0])
    deleted["deals"] = [deals[0]]
    # Merges: the merged-away record vanishes; whatever pointed at it moves.
    for entity in ("persons", "organizations"):
        gone, kept = live(entity, 3), live(entity, 4)
        sandbox.merge_records(entity, gone, kept)
        deleted[entity].append(gone)
    sandbox.merge_records("deals", deals[1], deals[2])
    deleted["deals"].append(deals[1])
    # Children taken off parents that stay (the parents' update_time does not move).
    for child in ("deal_products", "deal_followers", "deal_participants", "person_followers"):
        parent_entity = sandbox.world.children[child].child.parent
        parents = [r["id"] for r in data[parent_entity] if not r.get("is_deleted")]
        for parent_id in parents[5:]:
            pos = sandbox.world.tables[parent_entity].pos_of(parent_id)
            if sandbox.world.children[child].rows_for_pos(pos):
                sandbox.remove_child(child, parent_id)
                break
    # An option deleted from an enum field.
    field = next(f for f in sandbox.world.fields.custom("deal") if f.field_type == "enum")
    sandbox.delete_field_option("deal", field.code, field.options[0]["id"])
    return deleted


@pytest.fixture
def config(sandbox: Sandbox) -> dict:
    return {"api_token": sandbox.api_token, "api_url": sandbox.url}


def test_sweep_retires_exactly_what_is_gone(sandbox: Sandbox, config: dict) -> None:
    warehouse = Warehouse()
    first = run_tap(config)
    assert _activated(first) == _closed(first), "a first sync is a full read of all"
    assert {"webhooks", "mail_threads"} == set(first.schemas()) - _closed(first)
    warehouse.load(first)
    before = {stream: dict(warehouse.live(stream)) for stream in warehouse.tables}

    deleted = _change_everything(sandbox)

    # Between sweeps: incremental streams stay incremental and activate nothing.
    sandbox.clear_requests()
    between = run_tap(config, state=first.last_state)
    warehouse.load(between)
    incremental = _incremental(first)
    assert {"deals", "persons", "deal_products", "notes", "files"} <= incremental
    assert not _activated(between) & incremental
    assert _activated(between) == _closed(first) - incremental
    persons = [r for r in sandbox.requests if r.path.endswith("/v2/persons")]
    assert persons and all("updated_since" in r.query for r in persons)
    # Their rows carry the last sweep's version, so that the next sweep can retire them.
    swept = first.last_state["bookmarks"]["persons"]["swept_version"]
    persons_versions = {
        m["version"] for m in between.messages if m["type"] == "RECORD" and m["stream"] == "persons"
    }
    assert persons_versions == {swept}
    closed = _closed(first)
    assert all(
        m.get("version") is not None
        for m in (*first.messages, *between.messages)
        if m["type"] == "RECORD" and m["stream"] in closed
    )
    # A deal listed as deleted is retired at once, its last values kept.
    (deal,) = [r for k, r in warehouse.tables["deals"].items() if k == (deleted["deals"][0],)]
    assert deal.deleted_at is not None and deal.record["is_deleted"] is True

    sweep = run_tap({**config, "sweep_now": True}, state=between.last_state)
    warehouse.load(sweep)
    assert _activated(sweep) == _closed(sweep)

    truth = _truth(run_tap(config))
    for stream, rows in truth.items():
        live = warehouse.live(stream)
        assert set(live) == set(rows), (stream, set(live) ^ set(rows))
        changed = [key for key, record in rows.items() if live[key] != record]
        assert not changed, (stream, changed[:3])
    for entity, ids in deleted.items():
        assert {(record_id,) for record_id in ids} <= warehouse.retired(entity), entity
    # Rows retired are rows that existed and are gone now, nothing else.
    for stream, rows in before.items():
        assert warehouse.retired(stream) <= set(rows) | set(warehouse.tables[stream]), stream
    removed_children = {s: warehouse.retired(s) for s in ("deal_products", "deal_followers")}
    assert all(removed_children.values()), removed_children


def test_an_interrupted_sweep_resumes_with_its_version(sandbox: Sandbox, config: dict) -> None:
    first = run_tap(config, streams={"persons"})
    state = first.last_state
    state["bookmarks"]["persons"]["sweep_version"] = 1234
    resumed = run_tap(config, state=state, streams={"persons"})
    versions = {m.get("version") for m in resumed.messages if m["type"] == "RECORD"}
    assert versions <= {1234}
    activations = [m for m in resumed.messages if m["type"] == "ACTIVATE_VERSION"]
    assert [m["version"] for m in activations] == [1234]
    bookmark = resumed.last_state["bookmarks"]["persons"]
    assert "sweep_version" not in bookmark and bookmark["swept_at"] == "1970-01-01T00:00:01Z"
    assert bookmark["swept_version"] == 1234


def test_runs_sweep_again_after_the_interval(sandbox: Sandbox, config: dict) -> None:
    first = run_tap(config, streams={"persons"})
    state = first.last_state
    state["bookmarks"]["persons"]["swept_at"] = "2020-01-01T00:00:00Z"
    sandbox.clear_requests()
    later = run_tap(config, state=state, streams={"persons"})
    assert _activated(later) == {"persons"}
    assert len(later.records("persons")) == len(first.records("persons"))
    assert all("updated_since" not in r.query for r in sandbox.requests if "/persons" in r.path)


def test_a_refused_stream_retires_nothing(sandbox: Sandbox, config: dict) -> None:
    sandbox.faults.add("http_error", path=r"/api/v1/roles$", status=403, count=100)
    result = run_tap(config, streams={"roles", "role_assignments", "filters"})
    # Without the roles, their assignments were not read either: nothing is retired.
    assert _activated(result) == {"filters"}


def test_odd_sweep_state_means_a_sweep(sandbox: Sandbox, config: dict) -> None:
    first = run_tap(config, streams={"persons"})
    state = first.last_state
    state["bookmarks"]["persons"].update(
        swept_at="not a time", sweep_version="12", swept_version=[1]
    )
    again = run_tap(config, state=state, streams={"persons"})
    assert _activated(again) == {"persons"}
    assert len(again.records("persons")) == len(first.records("persons"))
