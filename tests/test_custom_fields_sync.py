"""Custom fields against the sandbox: discovery, records, naming modes, requests, failures."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import jsonschema
import pytest
import requests

from pipedrive_sandbox import Sandbox
from tap_pipedrive.custom_fields.definitions import FIELD_SOURCES, FieldSetNotLoaded
from tap_pipedrive.custom_fields.layout import CustomFieldSchema
from tap_pipedrive.custom_fields.naming import FIELD_KEY_METADATA
from tap_pipedrive.errors import PipedriveAPIError, StreamUnavailable
from tap_pipedrive.streams.base import SCHEMA_SOURCE, V1Stream
from tap_pipedrive.streams.fields import read_field_definitions
from tap_pipedrive.tap import TapPipedrive
from tests.support.tap_runner import capture, run_cli, select, sync_tap

FORMAT_CHECKER = jsonschema.Draft7Validator.FORMAT_CHECKER
# The JSON type each Pipedrive custom field type must get (PIPEDRIVE_API.md §6).
EXPECTED_JSON_TYPE = {
    "varchar": "string",
    "varchar_auto": "string",
    "text": "string",
    "phone": "string",
    "double": "number",
    "int": "integer",
    "monetary": "object",
    "date": "string",
    "daterange": "object",
    "time": "object",
    "timerange": "object",
    "enum": "string",
    "set": "array",
    "address": "object",
    "user": "integer",
    "org": "integer",
    "people": "integer",
}
ENTITY_STREAMS = {
    "deal": "deals",
    "person": "persons",
    "organization": "organizations",
    "product": "products",
}
FIELDS_PATHS = (
    "/api/v2/dealFields",
    "/api/v2/personFields",
    "/api/v2/organizationFields",
    "/api/v2/productFields",
    "/api/v2/activityFields",
)


@pytest.fixture
def sb():
    with Sandbox(seed=1, scale=0.1) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def shared_sb():
    """For tests that only read: one sandbox for the module."""
    with Sandbox(seed=1, scale=0.1) as sandbox:
        yield sandbox


def config_for(sandbox: Sandbox, **extra) -> dict:
    return {"api_token": "sandbox-api-token", "api_url": sandbox.url, **extra}


def records(messages: list[dict], stream: str) -> list[dict]:
    return [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream]


def schema_of(catalog: dict, stream: str) -> dict:
    return next(e["schema"] for e in catalog["streams"] if e["tap_stream_id"] == stream)


def custom_columns(catalog: dict, stream: str) -> dict[str, str]:
    """Field key → column name, read from the stream's catalog metadata."""
    entry = next(e for e in catalog["streams"] if e["tap_stream_id"] == stream)
    return {
        item["metadata"][FIELD_KEY_METADATA]: item["breadcrumb"][-1]
        for item in entry["metadata"]
        if FIELD_KEY_METADATA in item["metadata"]
    }


def sandbox_fields(sandbox: Sandbox, entity: str):
    return sandbox.world.fields.custom(entity)


def fields_requests(sandbox: Sandbox) -> list[str]:
    return [r.path for r in sandbox.requests if r.path.endswith("Fields")]


def expected_value(definition, raw):
    """What the tap must emit for a sandbox value, with option labels on."""
    if raw is None:
        return None
    labels = {option["id"]: option["label"] for option in definition.options or ()}
    if definition.field_type == "enum":
        return labels[raw]
    if definition.field_type == "set":
        return [labels[item] for item in raw]
    return raw


# --- discovery -------------------------------------------------------------------------------------


def test_every_custom_field_type_is_a_typed_column_on_every_entity(shared_sb):
    catalog = TapPipedrive(config=config_for(shared_sb)).catalog_dict
    for entity, stream in ENTITY_STREAMS.items():
        schema = schema_of(catalog, stream)
        columns = custom_columns(catalog, stream)
        definitions = sandbox_fields(shared_sb, entity)
        assert {d.field_type for d in definitions} >= set(EXPECTED_JSON_TYPE), entity
        for definition in definitions:
            prop = schema["properties"][columns[definition.code]]
            assert prop["type"] == [EXPECTED_JSON_TYPE[definition.field_type], "null"], (
                entity,
                definition.name,
            )
            assert definition.name in prop["description"]
            if definition.field_type == "date":
                assert prop["format"] == "date"
        # The raw hash-keyed container gives way to the typed columns.
        assert "custom_fields" not in schema["properties"]


def test_deal_columns_have_readable_names_and_resolve_collisions(shared_sb):
    catalog = TapPipedrive(config=config_for(shared_sb)).catalog_dict
    columns = custom_columns(catalog, "deals")
    by_label = {d.name: columns[d.code] for d in sandbox_fields(shared_sb, "deal")}
    assert by_label["Renewal date"] == "renewal_date"
    assert by_label["Contract value"] == "contract_value"
    assert by_label["Région"] == "region"
    assert by_label["Discount %"] == "discount_pct"
    deal_score = {by_label["Deal Score"], by_label["deal-score"]}
    assert len(deal_score) == 2 and all(name.startswith("deal_score_") for name in deal_score)
    assert by_label["Title"].startswith("title_")  # the built-in title column stays the deal's
    for label in ("???", "🚀", "顧客ランク"):
        assert by_label[label].startswith("custom_field_")
    assert len(set(by_label.values())) == len(by_label)


def test_key_naming_and_nested_location_in_discovery(shared_sb):
    keyed = TapPipedrive(config=config_for(shared_sb, custom_field_naming="key")).catalog_dict
    codes = {d.code for d in sandbox_fields(shared_sb, "deal")}
    assert codes <= set(schema_of(keyed, "deals")["properties"])
    nested = TapPipedrive(
        config=config_for(shared_sb, custom_fields_location="nested")
    ).catalog_dict
    container = schema_of(nested, "deals")["properties"]["custom_fields"]
    assert set(custom_columns(nested, "deals")) == codes
    assert set(container["properties"]) == set(custom_columns(nested, "deals").values())
    assert "renewal_date" not in schema_of(nested, "deals")["properties"]


def test_invalid_settings_are_rejected_with_one_line(shared_sb, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(config_for(shared_sb, custom_field_naming="labels")))
    result = subprocess.run(
        [sys.executable, "-m", "tap_pipedrive", "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "custom_field_naming" in result.stderr
    assert "Traceback" not in result.stderr


# --- requests ----------------------------------------------------------------------------------------


def test_one_fields_request_per_endpoint_for_discovery_and_sync_together(sb):
    tap = TapPipedrive(config=config_for(sb))
    assert tap.catalog_dict["streams"]
    for stream in tap.streams.values():
        stream.schema  # noqa: B018  (reading schemas again must not ask again)
        # Sync a few streams only, to keep the test fast; discovery covered them all.
        stream.selected = stream.name in {"deals", "persons", "custom_fields"}
    messages = sync_tap(tap)
    assert records(messages, "deals") and records(messages, "persons")
    # custom_fields lists every stream's fields: it needs no further request either.
    assert {row["stream"] for row in records(messages, "custom_fields")} >= set(
        ENTITY_STREAMS.values()
    )
    requested = fields_requests(sb)
    assert set(FIELDS_PATHS) <= set(requested)
    assert len(requested) == len(set(requested)), requested


def test_a_sync_with_a_catalog_reads_only_the_fields_it_needs(sb):
    catalog = TapPipedrive(config=config_for(sb)).catalog_dict
    sb.clear_requests()
    sync_tap(TapPipedrive(config=config_for(sb), catalog=select(catalog, {"deals"})))
    assert fields_requests(sb) == ["/api/v2/dealFields"]
    sb.clear_requests()
    sync_tap(TapPipedrive(config=config_for(sb), catalog=select(catalog, {"pipelines"})))
    assert fields_requests(sb) == []


def test_reading_a_schema_never_sends_a_request(sb):
    catalog = select(TapPipedrive(config=config_for(sb)).catalog_dict, {"deals"})
    sb.clear_requests()
    tap = TapPipedrive(config=config_for(sb), catalog=catalog)
    # The tap loads the field definitions at the start of a sync; a schema only reads them.
    with pytest.raises(FieldSetNotLoaded, match="deal custom field definitions"):
        tap.streams["deals"].schema  # noqa: B018
    assert sb.requests == []
    assert records(sync_tap(tap), "deals")
    assert fields_requests(sb) == ["/api/v2/dealFields"]
    # A catalog without some streams: their metadata comes from their schemas, which
    # the tap loads the field sets for too.
    sb.clear_requests()
    only_deals = {**catalog, "streams": [e for e in catalog["streams"] if e["stream"] == "deals"]}
    assert records(sync_tap(TapPipedrive(config=config_for(sb), catalog=only_deals)), "deals")
    assert "/api/v2/personFields" in fields_requests(sb)


def test_fields_requests_go_through_the_shared_auth_and_paging(sb):
    assert TapPipedrive(config=config_for(sb, page_size=7)).catalog_dict["streams"]
    deal_pages = [r for r in sb.requests if r.path == "/api/v2/dealFields"]
    # 7 items a page: every page of the v2 cursor is followed, each exactly once.
    items = len(sb.dataset["deal_fields"])
    assert len(deal_pages) == -(-items // 7)
    assert len({r.query.get("cursor") for r in deal_pages}) == len(deal_pages)
    assert all(r.auth_kind == "api_token" and r.status == 200 for r in sb.requests)


# --- records ---------------------------------------------------------------------------------------


def test_records_carry_typed_labelled_values_that_validate(shared_sb):
    tap = TapPipedrive(config=config_for(shared_sb))
    catalog = select(tap.catalog_dict, {"deals", "persons", "organizations", "products"})
    messages = sync_tap(TapPipedrive(config=config_for(shared_sb), catalog=catalog))
    schemas = {m["stream"]: m["schema"] for m in messages if m["type"] == "SCHEMA"}
    for entity, stream in ENTITY_STREAMS.items():
        columns = custom_columns(catalog, stream)
        validator = jsonschema.Draft7Validator(schemas[stream], format_checker=FORMAT_CHECKER)
        source = {row["id"]: row for row in shared_sb.dataset[stream]}
        emitted = records(messages, stream)
        assert emitted
        seen_types = set()
        for record in emitted:
            errors = list(validator.iter_errors(record))
            assert not errors, f"{stream} {record['id']}: {errors[0].message}"
            raw = source[record["id"]]["custom_fields"]
            assert "custom_fields" not in record
            for definition in sandbox_fields(shared_sb, entity):
                column = columns[definition.code]
                if definition.code not in raw:
                    assert column not in record
                    continue
                assert record[column] == expected_value(definition, raw[definition.code]), (
                    stream,
                    definition.name,
                )
                if raw[definition.code] is not None:
                    seen_types.add(definition.field_type)
        assert seen_types == set(EXPECTED_JSON_TYPE), entity


def test_option_ids_key_names_and_nested_records(sb):
    priority = next(d for d in sandbox_fields(sb, "deal") if d.name == "Priority")
    deal = next(d for d in sb.dataset["deals"] if d["custom_fields"].get(priority.code))
    option_id = deal["custom_fields"][priority.code]
    label = next(o["label"] for o in priority.options if o["id"] == option_id)

    def first_deal(**settings):
        config = config_for(sb, **settings)
        catalog = select(TapPipedrive(config=config).catalog_dict, {"deals"})
        emitted = records(sync_tap(TapPipedrive(config=config, catalog=catalog)), "deals")
        return next(r for r in emitted if r["id"] == deal["id"])

    assert first_deal()["priority"] == label
    assert first_deal(custom_field_option_labels=False)["priority"] == option_id
    assert first_deal(custom_field_naming="key")[priority.code] == label
    nested = first_deal(custom_fields_location="nested")
    assert nested["custom_fields"]["priority"] == label
    assert "priority" not in nested


def test_custom_fields_stream_is_the_join_table(shared_sb):
    tap = TapPipedrive(config=config_for(shared_sb))
    catalog = tap.catalog_dict
    messages = sync_tap(
        TapPipedrive(config=config_for(shared_sb), catalog=select(catalog, {"custom_fields"}))
    )
    rows = records(messages, "custom_fields")
    for entity, stream in ENTITY_STREAMS.items():
        mine = {row["key"]: row for row in rows if row["stream"] == stream}
        definitions = sandbox_fields(shared_sb, entity)
        assert set(mine) == {d.code for d in definitions}
        columns = custom_columns(catalog, stream)
        for definition in definitions:
            row = mine[definition.code]
            assert row["entity"] == entity
            assert row["label"] == definition.name
            assert row["field_type"] == definition.field_type
            assert row["column"] == columns[definition.code]
            if definition.options:
                assert [(o["id"], o["label"]) for o in row["options"]] == [
                    (o["id"], o["label"]) for o in definition.options
                ]
    # The primary key (stream, key) is unique.
    assert len(rows) == len({(row["stream"], row["key"]) for row in rows})


def test_odd_values_are_kept_or_nulled_and_counted(sb, caplog):
    definitions = {d.name: d for d in sandbox_fields(sb, "deal")}
    date, text, enum = (
        definitions["Renewal date"],
        definitions["Reference code"],
        definitions["Priority"],
    )
    odd_ids = [deal["id"] for deal in sb.dataset["deals"][:3]]
    for deal_id in odd_ids:
        deal = next(d for d in sb.dataset["deals"] if d["id"] == deal_id)
        values = {
            **deal["custom_fields"],
            date.code: "0000-00-00",
            text.code: 12345,
            enum.code: 999999,
        }
        sb.update_record("deals", deal_id, custom_fields=values)
    config = config_for(sb)
    tap = TapPipedrive(
        config=config, catalog=select(TapPipedrive(config=config).catalog_dict, {"deals"})
    )
    with caplog.at_level("WARNING"):
        messages = sync_tap(tap)
    emitted = {r["id"]: r for r in records(messages, "deals")}
    for deal_id in odd_ids:
        assert emitted[deal_id]["renewal_date"] is None
        assert emitted[deal_id]["reference_code"] == "12345"
        assert emitted[deal_id]["priority"] is None
    counts = tap.streams["deals"].coercions.counts
    assert counts["renewal_date"] == counts["reference_code"] == counts["priority"] == 3
    summary = [r.getMessage() for r in caplog.records if "coerced in this run" in r.getMessage()]
    assert any("'renewal_date': 3" in line for line in summary)
    # The sync went on: every deal arrived.
    assert len(emitted) == sb.expected_counts()["deals"]


# --- failures ----------------------------------------------------------------------------------------


def test_a_failing_fields_endpoint_stops_discovery_with_one_line(sb, tmp_path):
    sb.faults.add("http_error", path=r"/api/v2/dealFields$", count=None, status=503)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(config_for(sb, max_retries=2, retry_base_seconds=0.01)))
    result = subprocess.run(
        [sys.executable, "-m", "tap_pipedrive", "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert "deal custom field definitions" in last_line
    assert "/api/v2/dealFields" in last_line and "503" in last_line
    assert '"streams"' not in result.stdout  # no catalog with the deal columns missing


def test_a_failing_fields_endpoint_stops_the_sync_before_any_record(sb):
    config = config_for(sb, max_retries=2, retry_base_seconds=0.01)
    catalog = select(TapPipedrive(config=config).catalog_dict, {"deals"})
    sb.faults.add("http_error", path=r"/api/v2/dealFields$", count=None, status=500)
    messages, error = capture(TapPipedrive(config=config, catalog=catalog))
    assert isinstance(error, PipedriveAPIError), error
    assert "dealFields" in str(error), error
    assert [m for m in messages if m["type"] == "RECORD"] == []


def test_a_refused_fields_endpoint_is_an_error_not_a_skipped_stream(sb):
    tap = TapPipedrive(config=config_for(sb))
    response = requests.Response()
    response.status_code = 403
    response._content = b'{"success":false,"error":"Scope deals:read missing","errorCode":403}'
    response.headers["content-type"] = "application/json"
    response.url = f"{sb.url}/api/v2/dealFields"
    response.request = requests.Request("GET", response.url).prepare()
    # Pipedrive's answer to an app without the scope, whatever was asked.
    tap.client.session.send = lambda prepared, **_: response  # type: ignore[method-assign]
    with pytest.raises(PipedriveAPIError, match="Scope deals:read missing") as refused:
        read_field_definitions(tap.run, FIELD_SOURCES["deal"], 500)
    assert not isinstance(refused.value, StreamUnavailable)


# --- changes between runs ------------------------------------------------------------------------------


def deals_bookmark(state: dict) -> str:
    partitions = state["bookmarks"]["deals"]["partitions"]
    return max(p["replication_key_value"] for p in partitions if "replication_key_value" in p)


def final_state(messages: list[dict]) -> dict:
    return [m["value"] for m in messages if m["type"] == "STATE"][-1]


def test_a_field_added_between_runs_appears_on_the_next_discovery_and_state_carries_on(sb):
    config = config_for(sb)
    first_catalog = select(TapPipedrive(config=config).catalog_dict, {"deals"})
    first = sync_tap(TapPipedrive(config=config, catalog=first_catalog))
    state = final_state(first)
    bookmark = deals_bookmark(state)

    added = sb.add_custom_field("deals", "Added later", "int")
    deal = sb.dataset["deals"][0]
    sb.update_record(
        "deals", deal["id"], custom_fields={**deal["custom_fields"], added["field_code"]: 42}
    )

    # Next discovery: the new column is there, typed.
    second_catalog = select(TapPipedrive(config=config).catalog_dict, {"deals"})
    assert schema_of(second_catalog, "deals")["properties"]["added_later"]["type"] == [
        "integer",
        "null",
    ]
    sb.clear_requests()
    second = sync_tap(
        TapPipedrive(config=config, catalog=second_catalog, state=copy.deepcopy(state))
    )
    # Incremental from the old bookmark; only the changed deal comes again, with the new value.
    deal_requests = [r for r in sb.requests if r.path == "/api/v2/deals"]
    assert deal_requests and all(
        r.query.get("updated_since") == bookmark[:19] + "Z" for r in deal_requests
    )
    emitted = records(second, "deals")
    assert [r["id"] for r in emitted] == [deal["id"]]
    assert emitted[0]["added_later"] == 42
    assert deals_bookmark(final_state(second)) > bookmark

    # A run still using the old catalog goes on too; the new column waits for discovery.
    third = sync_tap(TapPipedrive(config=config, catalog=first_catalog, state=copy.deepcopy(state)))
    assert "added_later" not in records(third, "deals")[0]


def test_a_renamed_label_keeps_the_catalog_column_until_the_next_discovery(sb):
    config = config_for(sb)
    catalog = select(TapPipedrive(config=config).catalog_dict, {"deals"})
    priority = next(d for d in sandbox_fields(sb, "deal") if d.name == "Priority")
    priority.name = "Urgency"  # renamed in Pipedrive between discovery and sync

    emitted = records(sync_tap(TapPipedrive(config=config, catalog=catalog)), "deals")
    with_value = [r for r in emitted if r.get("priority")]
    assert with_value and not any("urgency" in r for r in emitted)

    rediscovered_catalog = TapPipedrive(config=config).catalog_dict
    rediscovered = schema_of(rediscovered_catalog, "deals")
    assert "urgency" in rediscovered["properties"] and "priority" not in rediscovered["properties"]
    assert custom_columns(rediscovered_catalog, "deals")[priority.code] == "urgency"
    assert "Urgency" in rediscovered["properties"]["urgency"]["description"]


def test_a_catalog_file_keeps_the_column_of_a_renamed_label(sb, tmp_path):
    """The field keys travel in the catalog file's metadata, as Meltano passes it."""
    config = config_for(sb)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(select(TapPipedrive(config=config).catalog_dict, {"deals"})))
    priority = next(d for d in sandbox_fields(sb, "deal") if d.name == "Priority")
    priority.name = "Urgency"
    result = run_cli(config, "--catalog", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    emitted = result.records("deals")
    assert any(r.get("priority") for r in emitted)
    assert not any("urgency" in r for r in emitted)


def test_a_deleted_field_leaves_the_schema_and_its_stray_values_are_dropped(sb, caplog):
    registry = sb.world.fields.sets["deal"]
    seats = next(d for d in registry if d.name == "Seats")
    config = config_for(sb)
    catalog = select(TapPipedrive(config=config).catalog_dict, {"deals"})
    registry.remove(seats)  # deleted in Pipedrive; records built earlier still carry it
    schema = schema_of(TapPipedrive(config=config).catalog_dict, "deals")
    assert "seats" not in schema["properties"]
    with caplog.at_level("WARNING"):
        emitted = records(sync_tap(TapPipedrive(config=config, catalog=catalog)), "deals")
    assert emitted and not any("seats" in r for r in emitted)


# --- v1 flat records (leads) ----------------------------------------------------------------------


class LeadsProbe(V1Stream):
    """A leads stream declared only for this test: all it takes is the field set."""

    name = "leads_probe"
    path = "/leads"
    schema = CustomFieldSchema(SCHEMA_SOURCE, key="leads")
    custom_fields_entity = "lead"


class TapWithLeads(TapPipedrive):
    def discover_streams(self):
        return [*super().discover_streams(), LeadsProbe(tap=self)]


def test_v1_lead_records_gather_flat_parts_into_typed_columns(sb):
    config = config_for(sb)
    tap = TapWithLeads(config=config)
    catalog = select(tap.catalog_dict, {"leads_probe"})
    schema = schema_of(catalog, "leads_probe")
    columns = custom_columns(catalog, "leads_probe")
    definitions = sandbox_fields(sb, "lead")
    assert set(columns) == {d.code for d in definitions}
    assert (
        columns[next(d.code for d in definitions if d.name == "Contract value")] == "contract_value"
    )
    sb.clear_requests()
    messages = sync_tap(TapWithLeads(config=config, catalog=catalog))
    emitted = records(messages, "leads_probe")
    assert emitted
    validator = jsonschema.Draft7Validator(schema, format_checker=FORMAT_CHECKER)
    for record in emitted:
        assert not list(validator.iter_errors(record))
        assert not any(len(name) >= 40 and name[:40] in columns for name in record)
    raw = {lead["id"]: lead for lead in sb.dataset["leads"]}
    money = next(d for d in definitions if d.name == "Contract value")
    interests = next(d for d in definitions if d.name == "Interests")
    checked = 0
    for record in emitted:
        source = raw[record["id"]]
        if source.get(money.code) is not None:
            assert record["contract_value"] == {
                "value": source[money.code],
                "currency": source[f"{money.code}_currency"],
            }
            checked += 1
        if source.get(interests.code):
            labels = {o["id"]: o["label"] for o in interests.options}
            assert record["interests"] == [
                labels[int(i)] for i in source[interests.code].split(",")
            ]
    assert checked
    assert fields_requests(sb) == ["/api/v1/leadFields"]
