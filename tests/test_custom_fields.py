"""Custom fields without a server: naming, schemas, value conversion, record layouts."""

from __future__ import annotations

import logging
import random

import jsonschema
import pytest
from singer_sdk.singerlib import Catalog, Metadata

from pipedrive_sandbox.fields import SUBFIELDS
from tap_pipedrive.custom_fields.conversion import ConverterFactory
from tap_pipedrive.custom_fields.definitions import (
    FIELD_SOURCES,
    FieldCatalog,
    FieldDefinition,
    FieldDefinitionsError,
    FieldOption,
    FieldSetNotLoaded,
)
from tap_pipedrive.custom_fields.layout import CustomFieldLayout
from tap_pipedrive.custom_fields.naming import (
    FIELD_KEY_METADATA,
    column_names,
    read_catalog,
    recorded_columns,
    snake_case,
)
from tap_pipedrive.custom_fields.schema import ADDRESS_PARTS, property_schema
from tap_pipedrive.errors import DailyBudgetExhausted, PipedriveAPIError
from tap_pipedrive.normalize import CoercionLog
from tap_pipedrive.streams.fields import FIELD_STREAMS, V2FieldsStream

FORMAT_CHECKER = jsonschema.Draft7Validator.FORMAT_CHECKER


def key(n: int) -> str:
    return f"{n:040x}"[::-1]  # 40 hex characters, distinct prefixes


def field(n: int, label: str, kind: str, options: tuple[FieldOption, ...] = ()) -> FieldDefinition:
    return FieldDefinition("deal", key(n), label, kind, options)


PRIORITY = field(
    1,
    "Priority",
    "enum",
    (FieldOption(11, "Low"), FieldOption(12, "High"), FieldOption(13, "Gone", True)),
)
TAGS = field(2, "Tags", "set", (FieldOption(21, "A"), FieldOption(22, "B")))


def coercions() -> CoercionLog:
    return CoercionLog(logging.getLogger("test-custom-fields"))


def converter(definition: FieldDefinition, labels: bool = True) -> tuple:
    log = coercions()
    return ConverterFactory(log, labels).build(definition, "col"), log


# --- naming -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Deal Score", "deal_score"),
        ("deal-score", "deal_score"),
        ("Région", "region"),
        ("Straße Nr.", "strasse_nr"),
        ("Discount %", "discount_pct"),
        ("Budget (€)", "budget"),
        ("dealScoreV2", "deal_score_v2"),
        ("ARRGrowth", "arr_growth"),
        ("2nd contact", "field_2nd_contact"),
        ("  __Trim me__  ", "trim_me"),
        ("???", ""),
        ("🚀", ""),
        ("顧客ランク", ""),
        ("x" * 80, "x" * 46),
    ],
)
def test_snake_case(label, expected):
    assert snake_case(label) == expected


def test_colliding_labels_get_key_suffixes_and_unique_names_stay_plain():
    fields = [
        field(1, "Deal Score", "double"),
        field(2, "deal-score", "int"),
        field(3, "Title", "varchar"),
        field(4, "???", "varchar"),
        field(5, "🚀", "text"),
        field(6, "Renewal date", "date"),
    ]
    names = column_names(fields, reserved={"title", "id", "value"})
    assert names[key(6)] == "renewal_date"
    assert names[key(1)] == f"deal_score_{key(1)[:8]}"
    assert names[key(2)] == f"deal_score_{key(2)[:8]}"
    assert names[key(3)] == f"title_{key(3)[:8]}"  # never overwrites the built-in title
    assert names[key(4)] == f"custom_field_{key(4)[:8]}"
    assert names[key(5)] == f"custom_field_{key(5)[:8]}"
    assert len(set(names.values())) == len(fields)


def test_names_do_not_depend_on_the_order_the_api_lists_fields():
    fields = [field(n, label, "varchar") for n, label in enumerate(["A", "a", "B", "b!", "C", "?"])]
    expected = column_names(fields, reserved={"c"})
    for seed in range(20):
        shuffled = fields[:]
        random.Random(seed).shuffle(shuffled)
        assert column_names(shuffled, reserved={"c"}) == expected


def test_suffixes_never_collide_with_other_labels():
    a, b = field(1, "Score", "int"), field(2, "Score", "int")
    # A third field whose label is exactly what the first suffix would be.
    c = field(3, f"score_{key(1)[:8]}", "int")
    names = column_names([a, b, c], reserved=set())
    assert names[key(3)] == f"score_{key(1)[:8]}"
    assert names[key(1)] == f"score_{key(1)[:12]}"
    assert len(set(names.values())) == 3


def test_keys_whose_prefixes_agree_still_get_distinct_names():
    a = FieldDefinition("deal", "abcdefgh" + "0" * 32, "Score", "int")
    b = FieldDefinition("deal", "abcdefgh" + "1" * 32, "Score", "int")
    names = column_names([a, b], reserved=set())
    assert names[a.key] != names[b.key]


def test_key_naming_uses_the_hash_keys():
    fields = [field(1, "Deal Score", "double"), field(2, "Title", "varchar")]
    assert column_names(fields, reserved={"title"}, naming="key") == {
        key(1): key(1),
        key(2): key(2),
    }


def test_pinned_names_win_unless_they_became_built_in():
    fields = [field(1, "New label", "int"), field(2, "Other", "int")]
    names = column_names(fields, reserved={"id"}, pinned={key(1): "old_label", key(2): "id"})
    assert names == {key(1): "old_label", key(2): "other"}


def test_description_carries_label_key_and_type():
    definition = field(1, 'Odd "label" (key x, type y)', "monetary")
    schema = property_schema(definition)
    assert definition.label in schema["description"]
    assert definition.key in schema["description"]
    assert "monetary" in schema["description"]


# --- definitions ----------------------------------------------------------------------------------


def test_v2_items_give_custom_fields_only():
    custom = {
        "field_code": key(1),
        "field_name": "Priority",
        "field_type": "enum",
        "is_custom_field": True,
        "options": [{"id": 1, "label": "Low"}, {"id": 2, "label": "High"}],
        "description": "How urgent",
    }
    built_in = {
        "field_code": "title",
        "field_name": "Title",
        "field_type": "varchar",
        "is_custom_field": False,
    }
    assert FieldDefinition.from_item("deal", built_in) is None
    definition = FieldDefinition.from_item("deal", custom)
    assert definition == FieldDefinition(
        "deal",
        key(1),
        "Priority",
        "enum",
        (FieldOption(1, "Low"), FieldOption(2, "High")),
        "How urgent",
    )


def test_v1_items_include_deleted_options_and_skip_inactive_fields():
    item = {
        "key": key(1),
        "name": "Priority",
        "field_type": "enum",
        "edit_flag": True,
        "active_flag": True,
        "options": [{"id": 1, "label": "Low"}],
        "options_deleted": [{"id": 9, "label": "Retired"}],
    }
    definition = FieldDefinition.from_item("lead", item)
    assert definition is not None
    assert definition.options == (FieldOption(1, "Low"), FieldOption(9, "Retired", True))
    assert FieldDefinition.from_item("lead", {**item, "active_flag": False}) is None
    assert FieldDefinition.from_item("lead", {**item, "edit_flag": False}) is None


def test_catalog_reads_each_field_set_once_and_keeps_the_items():
    calls = []

    def fetch(source):
        calls.append(source.path)
        return [
            {"field_code": key(1), "field_name": "X", "field_type": "int", "is_custom_field": True}
        ]

    catalog = FieldCatalog(fetch)
    for _ in range(3):
        catalog.load(["deal"])
        assert [d.key for d in catalog.definitions("deal")] == [key(1)]
        assert catalog.items("deal")[0]["field_name"] == "X"
    assert calls == ["/dealFields"]
    with pytest.raises(ValueError, match="Unknown custom field set"):
        catalog.items("nope")


def test_a_failed_fields_read_fails_loudly_with_its_cause():
    def refused(source):
        raise PipedriveAPIError("403 from Pipedrive for GET /api/v2/dealFields: scope missing")

    with pytest.raises(FieldDefinitionsError) as failure:
        FieldCatalog(refused).load(["deal"])
    message = str(failure.value)
    assert "/api/v2/dealFields" in message
    assert "scope missing" in message
    assert "\n" not in message

    def budget(source):
        raise DailyBudgetExhausted("budget used up")

    with pytest.raises(DailyBudgetExhausted, match=r"/api/v1/leadFields.*budget used up"):
        FieldCatalog(budget).load(["lead"])


def test_the_catalog_reads_only_when_loaded():
    calls = []

    def fetch(source):
        calls.append(source.path)
        return []

    catalog = FieldCatalog(fetch)
    with pytest.raises(FieldSetNotLoaded, match="deal custom field definitions"):
        catalog.definitions("deal")
    with pytest.raises(FieldSetNotLoaded):
        catalog.items("deal")
    assert calls == []
    catalog.load(["deal", "lead", "deal"])
    assert calls == ["/dealFields", "/leadFields"]
    assert catalog.loaded("deal") and not catalog.loaded("person")
    assert catalog.definitions("lead") == ()


def test_the_fields_streams_read_what_the_field_sources_describe():
    by_entity = {stream.field_source.entity: stream for stream in FIELD_STREAMS}
    assert set(by_entity) == set(FIELD_SOURCES)
    for entity, stream in by_entity.items():
        source = FIELD_SOURCES[entity]
        assert (stream.path, stream.api_version, stream.paged, stream.include_fields) == (
            source.path,
            source.version,
            source.paged,
            source.include_fields,
        )
    with pytest.raises(TypeError, match="reads API v2, its field source v1"):

        class LeadFieldsOverV2(V2FieldsStream):
            name = "lead_fields_v2"
            field_source = FIELD_SOURCES["lead"]


def test_every_custom_entity_has_a_fields_source():
    assert {
        "deal",
        "person",
        "organization",
        "product",
        "activity",
        "project",
        "lead",
        "note",
    } <= set(FIELD_SOURCES)
    assert FIELD_SOURCES["lead"].version == "v1"
    assert FIELD_SOURCES["note"].version == "v1"
    assert FIELD_SOURCES["deal"].version == "v2"


# --- types and values -----------------------------------------------------------------------------

ADDRESS = {
    "value": "Main St 1, Tallinn",
    "route": "Main St",
    "street_number": "1",
    "subpremise": None,
    "locality": "Tallinn",
    "sublocality": None,
    "admin_area_level_1": "Harju",
    "admin_area_level_2": None,
    "country": "EE",
    "postal_code": "10111",
    "formatted_address": "Main St 1, 10111 Tallinn, EE",
}
# (field type, a v2 value, the emitted value with option labels)
ROUND_TRIPS = [
    ("varchar", "REF-1", "REF-1"),
    ("varchar_auto", "東京", "東京"),
    ("text", "Multi\nline 🎉", "Multi\nline 🎉"),
    ("phone", "+372 5555", "+372 5555"),
    ("double", 12.5, 12.5),
    ("int", -7, -7),
    ("monetary", {"value": 10.5, "currency": "EUR"}, {"value": 10.5, "currency": "EUR"}),
    ("date", "2024-02-29", "2024-02-29"),
    (
        "daterange",
        {"value": "2024-01-01", "until": "2024-03-31"},
        {"value": "2024-01-01", "until": "2024-03-31"},
    ),
    (
        "time",
        {"value": "09:30:00", "timezone_id": 7, "timezone_name": "Europe/Tallinn"},
        {"value": "09:30:00", "timezone_id": 7, "timezone_name": "Europe/Tallinn"},
    ),
    (
        "timerange",
        {
            "value": "09:00:00",
            "until": "17:00:00",
            "timezone_id": 7,
            "timezone_name": "Europe/Tallinn",
        },
        {
            "value": "09:00:00",
            "until": "17:00:00",
            "timezone_id": 7,
            "timezone_name": "Europe/Tallinn",
        },
    ),
    ("address", ADDRESS, ADDRESS),
    ("user", 5, 5),
    ("org", 77, 77),
    ("people", 154, 154),
    ("enum", 12, "High"),
    ("set", [11, 12], ["Low", "High"]),
]
OPTIONS = (FieldOption(11, "Low"), FieldOption(12, "High"))


@pytest.mark.parametrize(
    ("kind", "value", "expected"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS]
)
def test_each_type_round_trips_into_its_json_type(kind, value, expected):
    definition = field(1, "F", kind, OPTIONS)
    convert, log = converter(definition)
    result = convert(value)
    assert result == expected
    schema = property_schema(definition)
    jsonschema.validate(result, schema, format_checker=FORMAT_CHECKER)
    jsonschema.validate(None, schema)  # every custom column is nullable
    assert not log.counts


@pytest.mark.parametrize(
    ("kind", "json_type"),
    [
        ("varchar", "string"),
        ("double", "number"),
        ("int", "integer"),
        ("user", "integer"),
        ("org", "integer"),
        ("people", "integer"),
        ("monetary", "object"),
        ("daterange", "object"),
        ("time", "object"),
        ("timerange", "object"),
        ("address", "object"),
        ("set", "array"),
        ("enum", "string"),
    ],
)
def test_schema_types(kind, json_type):
    assert property_schema(field(1, "F", kind))["type"] == [json_type, "null"]


def test_dates_are_dates_not_date_times():
    assert property_schema(field(1, "F", "date"))["format"] == "date"
    parts = property_schema(field(1, "F", "daterange"))["properties"]
    assert parts["value"]["format"] == parts["until"]["format"] == "date"
    assert set(property_schema(field(1, "F", "monetary"))["properties"]) == {"value", "currency"}
    assert len(property_schema(field(1, "F", "address"))["properties"]) == 11


def test_option_ids_mode():
    assert property_schema(PRIORITY, option_labels=False)["type"] == ["integer", "null"]
    assert property_schema(TAGS, option_labels=False)["items"] == {"type": "integer"}
    convert, _ = converter(PRIORITY, labels=False)
    assert convert(12) == 12
    assert convert("12") == 12
    convert_set, _ = converter(TAGS, labels=False)
    assert convert_set([21, 22]) == [21, 22]
    assert convert_set("21,22") == [21, 22]


def test_option_labels_in_every_shape_pipedrive_sends():
    convert, log = converter(PRIORITY)
    assert convert(11) == "Low"
    assert convert("11") == "Low"  # v1
    assert convert({"id": 12, "label": "High"}) == "High"  # v2 include_option_labels
    assert convert(13) == "Gone"  # a deleted option that v1 still lists
    convert_set, _ = converter(TAGS)
    assert convert_set([21, 22]) == ["A", "B"]
    assert convert_set("21,22") == ["A", "B"]  # v1
    assert convert_set([{"id": 22, "label": "B"}]) == ["B"]
    assert convert_set(21) == ["A"]
    assert not log.counts


def test_unknown_option_ids_are_kept_where_the_type_allows_and_counted():
    labels, log = converter(PRIORITY)
    assert labels(999) is None  # a label column cannot hold an id
    assert log.counts["col"] == 1
    ids, log = converter(PRIORITY, labels=False)
    assert ids(999) == 999  # an id column can
    assert log.counts["col"] == 1
    set_labels, log = converter(TAGS)
    assert set_labels([21, 999, 22]) == ["A", "B"]
    assert log.counts["col"] == 1


def test_zero_dates_become_null_and_are_counted():
    convert, log = converter(field(1, "F", "date"))
    assert convert("0000-00-00") is None
    assert convert("2024-02-30") is None
    assert convert("yesterday") is None
    assert convert("2024-05-01 00:00:00") == "2024-05-01"
    assert log.counts["col"] == 3
    rng, log = converter(field(1, "F", "daterange"))
    assert rng({"value": "0000-00-00", "until": "2024-01-31"}) == {
        "value": None,
        "until": "2024-01-31",
    }
    assert log.counts["col"] == 1


def test_numbers_in_text_fields_are_kept_as_text_and_counted():
    convert, log = converter(field(1, "F", "varchar"))
    assert convert(42) == "42"
    assert convert(2.5) == "2.5"
    assert convert({"a": 1}) is None
    assert log.counts["col"] == 3


def test_numbers_from_strings_and_garbage_in_number_fields():
    number, log = converter(field(1, "F", "double"))
    assert number("12.5") == 12.5
    assert number("abc") is None
    assert number(float("nan")) is None
    assert number(True) is None
    assert log.counts["col"] == 3
    integer, log = converter(field(1, "F", "int"))
    assert integer("7") == 7
    assert integer(7.0) == 7
    assert integer(7.5) is None  # an integer column cannot hold it
    assert log.counts["col"] == 1
    reference, log = converter(field(1, "F", "org"))
    assert reference({"value": 5, "name": "Acme"}) == 5  # v1 reference objects
    assert reference("5") == 5
    assert not log.counts


def test_a_scalar_where_an_object_is_due_becomes_its_main_part():
    convert, log = converter(field(1, "F", "monetary"))
    assert convert(99) == {"value": 99, "currency": None}
    assert convert([1]) is None
    assert log.counts["col"] == 2


def test_unknown_types_pass_through():
    definition = field(1, "F", "some_future_type")
    convert, _ = converter(definition)
    assert convert({"x": [1]}) == {"x": [1]}
    assert "type" not in property_schema(definition)


def test_coercion_warnings_are_logged_once_per_field_and_summed_up(caplog):
    convert, log = converter(field(1, "F", "date"))
    with caplog.at_level(logging.WARNING, logger="test-custom-fields"):
        for _ in range(5):
            convert("0000-00-00")
        log.summary()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unusable value" in m for m in messages) == 1
    assert any("'col': 5 value(s) coerced" in m for m in messages)


# --- layouts ------------------------------------------------------------------------------------

STATIC = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "title": {"type": ["string", "null"]},
        "custom_fields": {"type": ["object", "null"], "additionalProperties": True},
    },
}
MONEY = field(3, "Contract value", "monetary")
TITLE = field(4, "Title", "varchar")
FIELDS = (PRIORITY, TAGS, MONEY, TITLE)


def layout(record_format="v2", catalog_schema=None, **config):
    return CustomFieldLayout(
        stream_name="deals",
        static_schema=STATIC,
        fields=tuple(sorted(FIELDS, key=lambda f: f.key)),
        config=config,
        record_format=record_format,
        coercions=coercions(),
        logger=logging.getLogger("test-custom-fields"),
        catalog_schema=catalog_schema,
    )


def test_flattened_v2_records():
    deals = layout()
    assert "custom_fields" not in deals.schema["properties"]
    assert STATIC["properties"]["custom_fields"]  # the shared static schema is untouched
    title = f"title_{TITLE.key[:8]}"
    row = {
        "id": 1,
        "title": "Built-in",
        "custom_fields": {PRIORITY.key: 11, TAGS.key: [22], MONEY.key: None, TITLE.key: "Custom"},
    }
    deals.apply(row)
    assert row == {
        "id": 1,
        "title": "Built-in",
        "priority": "Low",
        "tags": ["B"],
        "contract_value": None,
        title: "Custom",
    }
    jsonschema.validate(row, deals.schema, format_checker=FORMAT_CHECKER)


def test_nested_v2_records():
    deals = layout(custom_fields_location="nested")
    nested = deals.schema["properties"]["custom_fields"]
    assert set(nested["properties"]) == {
        "priority",
        "tags",
        "contract_value",
        f"title_{TITLE.key[:8]}",
    }
    row = {"id": 1, "custom_fields": {PRIORITY.key: 12}}
    deals.apply(row)
    assert row == {"id": 1, "custom_fields": {"priority": "High"}}
    empty = {"id": 2, "custom_fields": None}
    deals.apply(empty)
    assert empty == {"id": 2, "custom_fields": None}
    jsonschema.validate(row, deals.schema)


def test_key_naming_records():
    deals = layout(custom_field_naming="key", custom_field_option_labels=False)
    row = {"id": 1, "custom_fields": {PRIORITY.key: 12, TAGS.key: [21]}}
    deals.apply(row)
    assert row == {"id": 1, PRIORITY.key: 12, TAGS.key: [21]}


def test_v1_flat_records_gather_their_parts():
    leads = layout(record_format="v1")
    row = {
        "id": "a-uuid",
        "title": "Lead",
        PRIORITY.key: "13",  # deleted option, still labelled
        TAGS.key: "21,22",
        MONEY.key: 100,
        f"{MONEY.key}_currency": "EUR",
    }
    leads.apply(row)
    assert row == {
        "id": "a-uuid",
        "title": "Lead",
        "priority": "Gone",
        "tags": ["A", "B"],
        "contract_value": {"value": 100, "currency": "EUR"},
    }
    unset = {"id": "b", f"{MONEY.key}": None, f"{MONEY.key}_currency": None}
    leads.apply(unset)
    assert unset == {"id": "b", "contract_value": None}
    nested = layout(record_format="v1", custom_fields_location="nested")
    row = {"id": "c", MONEY.key: 5, f"{MONEY.key}_currency": "USD"}
    nested.apply(row)
    assert row == {"id": "c", "custom_fields": {"contract_value": {"value": 5, "currency": "USD"}}}


def test_keys_missing_from_the_definitions_are_left_out_with_one_warning(caplog):
    deals = layout()
    with caplog.at_level(logging.WARNING, logger="test-custom-fields"):
        for _ in range(3):
            row = {"id": 1, "custom_fields": {"f" * 40: "x", PRIORITY.key: 11}}
            deals.apply(row)
            assert row == {"id": 1, "priority": "Low"}
    assert sum("f" * 40 in r.getMessage() for r in caplog.records) == 1


def test_a_catalog_pins_column_names_and_limits_columns_to_it():
    discovered_layout = layout()
    discovered = discovered_layout.schema
    catalog_metadata: dict = {}
    discovered_layout.record_keys(catalog_metadata)
    renamed = tuple(
        FieldDefinition(f.entity, f.key, "Urgency", f.field_type, f.options) if f is PRIORITY else f
        for f in FIELDS
    )
    catalog_schema = {
        **discovered,
        "properties": {k: v for k, v in discovered["properties"].items() if k != "tags"},
    }
    deals = CustomFieldLayout(
        stream_name="deals",
        static_schema=STATIC,
        fields=renamed,
        config={},
        record_format="v2",
        coercions=coercions(),
        logger=logging.getLogger("test-custom-fields"),
        catalog_schema=catalog_schema,
        catalog_metadata=catalog_metadata,
    )
    assert deals.names[PRIORITY.key] == "priority"  # pinned by the catalog, not "urgency"
    row = {"id": 1, "custom_fields": {PRIORITY.key: 11, TAGS.key: [21]}}
    deals.apply(row)
    assert row == {"id": 1, "priority": "Low"}  # tags is not in the catalog
    # Without a catalog (a new discovery) the column follows the label.
    fresh = CustomFieldLayout(
        stream_name="deals",
        static_schema=STATIC,
        fields=renamed,
        config={},
        record_format="v2",
        coercions=coercions(),
        logger=logging.getLogger("test-custom-fields"),
    )
    assert fresh.names[PRIORITY.key] == "urgency"


@pytest.mark.parametrize("location", ["flattened", "nested"])
def test_column_keys_travel_in_the_catalog_metadata(location):
    deals = layout(custom_fields_location=location)
    nested = location == "nested"
    built_in = Metadata(inclusion=Metadata.InclusionType.AUTOMATIC)
    metadata: dict = {("properties", "id"): built_in}
    deals.record_keys(metadata)
    assert recorded_columns(metadata, nested) == deals.names
    assert recorded_columns(metadata, not nested) == {}
    assert metadata[("properties", "id")] is built_in
    # Through the catalog's JSON, as a later sync is given it.
    raw = {
        "streams": [
            {
                "tap_stream_id": "deals",
                "stream": "deals",
                "schema": deals.schema,
                "metadata": [
                    {"breadcrumb": list(breadcrumb), "metadata": entry.to_dict()}
                    for breadcrumb, entry in metadata.items()
                ],
            }
        ]
    }
    column = deals.names[PRIORITY.key]
    where = (
        ["properties", "custom_fields", "properties", column] if nested else ["properties", column]
    )
    entry = next(item for item in raw["streams"][0]["metadata"] if item["breadcrumb"] == where)
    assert entry["metadata"] == {"inclusion": "available", FIELD_KEY_METADATA: PRIORITY.key}
    parsed = read_catalog(raw).get_stream("deals")
    assert parsed is not None
    assert recorded_columns(parsed.metadata, nested) == deals.names
    # The SDK's own parser drops the entry: the reason read_catalog exists.
    plain = Catalog.from_dict(raw).get_stream("deals")
    assert plain is not None and recorded_columns(plain.metadata, nested) == {}


def test_the_sandbox_sends_the_address_parts_the_tap_types():
    """The two lists are kept apart (the sandbox never imports the tap); they must agree."""
    assert tuple(part for part, _, _ in SUBFIELDS["address"]) == ADDRESS_PARTS
