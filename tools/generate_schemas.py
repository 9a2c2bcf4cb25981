"""Generate the tap's stream schemas from Pipedrive's official OpenAPI specs.

Usage::

    python tools/generate_schemas.py [--spec-dir ../shared/pipedrive-openapi] [--check]

For every stream in ``STREAMS`` this reads the list endpoint's 200 response, takes the item
schema of ``data`` (resolving ``$ref``, ``allOf``, ``oneOf`` and ``anyOf``) and writes a
Singer-friendly JSON Schema to ``tap_pipedrive/schemas/<stream>.json``: property names and
types only, every property nullable except the primary keys, timestamps marked with
``format``. It also writes ``tap_pipedrive/schemas/_endpoints.json`` with the request facts the
tap and the README need (token cost, OAuth scopes, allowed query parameters, sort and
``include_fields`` enums).

Nothing descriptive is copied from the specs. Response examples are read only to learn field
names the schemas forget and whether a string holds a date or a timestamp.

The output is deterministic (sorted keys, two-space indent, trailing newline) so that
``tests/test_spec_conformance.py`` can regenerate it in memory and compare byte for byte.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC_DIR = REPO_ROOT.parent / "shared" / "pipedrive-openapi"
SCHEMA_DIR = REPO_ROOT / "tap_pipedrive" / "schemas"
ENDPOINTS_FILE = "_endpoints.json"
SPEC_VERSIONS = ("v1", "v2")

JsonSchema = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Stream table
# --------------------------------------------------------------------------------------------

_INTEGER: JsonSchema = {"type": "integer"}
_STRING: JsonSchema = {"type": "string"}
_TIMESTAMP: JsonSchema = {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class StreamSpec:
    """One tap stream: where its rows come from and what the tap adds to them."""

    name: str
    version: str
    paths: tuple[str, ...]
    primary_keys: tuple[str, ...]
    # Properties the tap itself puts on each row (parent ids, merged-endpoint markers).
    # Values are non-null type fragments; the generator makes them nullable unless they are
    # primary keys.
    added_properties: Mapping[str, JsonSchema] = field(default_factory=dict)
    # Other endpoints answering with the same kind of row, whose properties the schema also
    # takes (the spec describes the v2 field metadata of each entity a little differently).
    shape_paths: tuple[str, ...] = ()


# Singer's soft-delete column, set by the tap on the rows a list returns as deleted (deals and
# projects asked for status=deleted): targets retire those rows.
_RETIRED: dict[str, JsonSchema] = {"_sdc_deleted_at": _TIMESTAMP}


def _parent_time(parent: str) -> dict[str, JsonSchema]:
    """The parent's update_time, which child streams carry as their replication key.

    Children are read only for parents changed since the stream's bookmark; the parent time
    on each row also tells current children from ones removed since (older parent time).
    """
    return {f"{parent}_update_time": _TIMESTAMP}


def _followers(parent: str, path: str) -> StreamSpec:
    return StreamSpec(
        f"{parent}_followers",
        "v2",
        (path,),
        (f"{parent}_id", "user_id"),
        {f"{parent}_id": _INTEGER, **_parent_time(parent)},
    )


V2_FIELD_PATHS = (
    "/dealFields",
    "/personFields",
    "/organizationFields",
    "/productFields",
    "/activityFields",
    "/projectFields",
)


def _v2_fields(stream: str, path: str) -> StreamSpec:
    others = tuple(other for other in V2_FIELD_PATHS if other != path)
    return StreamSpec(stream, "v2", (path,), ("field_code",), shape_paths=others)


FOUNDATION_STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        "deals",
        "v2",
        ("/deals", "/deals/archived"),
        ("id",),
        # Archived deals come from their own endpoint but land in the same stream.
        {"is_archived": {"type": "boolean"}, **_RETIRED},
    ),
    StreamSpec("persons", "v2", ("/persons",), ("id",)),
    StreamSpec("organizations", "v2", ("/organizations",), ("id",)),
    StreamSpec("activities", "v2", ("/activities",), ("id",)),
    StreamSpec("products", "v2", ("/products",), ("id",)),
    StreamSpec("pipelines", "v2", ("/pipelines",), ("id",)),
    StreamSpec("stages", "v2", ("/stages",), ("id",)),
    StreamSpec("users", "v1", ("/users",), ("id",)),
    StreamSpec("currencies", "v1", ("/currencies",), ("id",)),
    StreamSpec("activity_types", "v1", ("/activityTypes",), ("id",)),
)

COVERAGE_STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        "leads",
        "v1",
        ("/leads", "/leads/archived"),
        ("id",),
        {"is_archived": {"type": "boolean"}},
    ),
    StreamSpec("lead_labels", "v1", ("/leadLabels",), ("id",)),
    StreamSpec("lead_sources", "v1", ("/leadSources",), ("name",)),
    StreamSpec("notes", "v1", ("/notes",), ("id",)),
    StreamSpec(
        "note_comments",
        "v1",
        ("/notes/{id}/comments",),
        ("uuid",),
        {"note_id": _INTEGER, **_parent_time("note")},
    ),
    StreamSpec("files", "v1", ("/files",), ("id",)),
    StreamSpec("call_logs", "v1", ("/callLogs",), ("id",)),
    StreamSpec(
        "mail_threads",
        "v1",
        ("/mailbox/mailThreads",),
        ("id",),
        # The endpoint needs one folder per call; the tap records which folder it read.
        {"folder": _STRING},
    ),
    StreamSpec(
        "mail_messages",
        "v1",
        ("/mailbox/mailThreads/{id}/mailMessages",),
        ("id",),
        _parent_time("mail_thread"),
    ),
    StreamSpec("filters", "v1", ("/filters",), ("id",)),
    StreamSpec("goals", "v1", ("/goals/find",), ("id",)),
    StreamSpec("roles", "v1", ("/roles",), ("id",)),
    StreamSpec("role_assignments", "v1", ("/roles/{id}/assignments",), ("role_id", "user_id")),
    StreamSpec("permission_sets", "v1", ("/permissionSets",), ("id",)),
    StreamSpec(
        "permission_set_assignments",
        "v1",
        ("/permissionSets/{id}/assignments",),
        ("permission_set_id", "user_id"),
    ),
    StreamSpec("webhooks", "v1", ("/webhooks",), ("id",)),
    _v2_fields("deal_fields", "/dealFields"),
    _v2_fields("person_fields", "/personFields"),
    _v2_fields("organization_fields", "/organizationFields"),
    _v2_fields("product_fields", "/productFields"),
    _v2_fields("activity_fields", "/activityFields"),
    _v2_fields("project_fields", "/projectFields"),
    StreamSpec("note_fields", "v1", ("/noteFields",), ("key",)),
    StreamSpec("lead_fields", "v1", ("/leadFields",), ("key",)),
    StreamSpec("deal_products", "v2", ("/deals/products",), ("id",), _parent_time("deal")),
    StreamSpec("deal_installments", "v2", ("/deals/installments",), ("id",), _parent_time("deal")),
    _followers("deal", "/deals/{id}/followers"),
    _followers("person", "/persons/{id}/followers"),
    _followers("organization", "/organizations/{id}/followers"),
    _followers("product", "/products/{id}/followers"),
    StreamSpec(
        "deal_participants",
        "v1",
        ("/deals/{id}/participants",),
        ("id",),
        {"deal_id": _INTEGER, **_parent_time("deal")},
    ),
    # Changelog rows have no id of their own; one field of one deal changes at most once at
    # a given second, so (deal, field, time) identifies a row.
    StreamSpec(
        "deal_changelog",
        "v1",
        ("/deals/{id}/changelog",),
        ("deal_id", "field_key", "time"),
        {"deal_id": _INTEGER, **_parent_time("deal")},
    ),
    # The field histories of persons and organizations, keyed like deal_changelog.
    StreamSpec(
        "person_changelog",
        "v1",
        ("/persons/{id}/changelog",),
        ("person_id", "field_key", "time"),
        {"person_id": _INTEGER, **_parent_time("person")},
    ),
    StreamSpec(
        "organization_changelog",
        "v1",
        ("/organizations/{id}/changelog",),
        ("organization_id", "field_key", "time"),
        {"organization_id": _INTEGER, **_parent_time("organization")},
    ),
    # Flow rows wrap another object (`object` names its kind, `data` holds it). The tap lifts
    # `data.id` to `id`; ids are unique per kind, the deal id keeps keys unique across deals.
    StreamSpec(
        "deal_flow",
        "v1",
        ("/deals/{id}/flow",),
        ("deal_id", "object", "id"),
        {"deal_id": _INTEGER, "id": _INTEGER, **_parent_time("deal")},
    ),
    # The updates feeds of persons and organizations, keyed like deal_flow.
    StreamSpec(
        "person_flow",
        "v1",
        ("/persons/{id}/flow",),
        ("person_id", "object", "id"),
        {"person_id": _INTEGER, "id": _INTEGER, **_parent_time("person")},
    ),
    StreamSpec(
        "organization_flow",
        "v1",
        ("/organizations/{id}/flow",),
        ("organization_id", "object", "id"),
        {"organization_id": _INTEGER, "id": _INTEGER, **_parent_time("organization")},
    ),
    StreamSpec(
        "product_variations",
        "v2",
        ("/products/{id}/variations",),
        ("id",),
        _parent_time("product"),
    ),
    StreamSpec(
        "projects",
        "v2",
        ("/projects", "/projects/archived"),
        ("id",),
        # Archived projects come from their own endpoint but land in the same stream.
        {"is_archived": {"type": "boolean"}, **_RETIRED},
    ),
    StreamSpec("tasks", "v2", ("/tasks",), ("id",)),
    StreamSpec("boards", "v2", ("/boards",), ("id",)),
    StreamSpec("phases", "v2", ("/phases",), ("id",)),
    StreamSpec("project_templates", "v2", ("/projectTemplates",), ("id",)),
    StreamSpec(
        "organization_relationships",
        "v1",
        ("/organizationRelationships",),
        ("id",),
        _parent_time("organization"),
    ),
)

STREAMS: tuple[StreamSpec, ...] = FOUNDATION_STREAMS + COVERAGE_STREAMS


# --------------------------------------------------------------------------------------------
# Deliberate departures from the spec
# --------------------------------------------------------------------------------------------

# Replacement schemas (non-null form) keyed by stream, then by dotted property path. Each one
# is the type the tap emits after light coercion where the spec and the live API disagree.
OVERRIDES: dict[str, dict[str, JsonSchema]] = {
    # v2 declares `visible_to` of products as a number; it is always one of 1, 3, 5, 7 and
    # every other v2 entity declares it as an integer.
    "products": {"visible_to": {"type": "integer"}},
    # The spec declares this flag as a string and its example sends "true"; the tap turns it
    # into a boolean like every other v1 `active_flag`.
    "organization_relationships": {"active_flag": {"type": "boolean"}},
    # The spec wraps the user in a whole response envelope; the API sends a user summary.
    "deal_participants": {
        "added_by_user_id": {
            "type": "object",
            "properties": {
                "active_flag": {"type": "boolean"},
                "email": {"type": "string"},
                "has_pic": {"type": "integer"},
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "pic_hash": {"type": "string"},
                "value": {"type": "integer"},
            },
        },
    },
}

# Properties real accounts send that the spec does not declare (seen in recordings of real
# accounts), keyed by stream, then by dotted property path (non-null form). Without them the
# tap would drop the values with a warning. A path the spec starts declaring is an error here,
# so the table shrinks as the spec catches up.
UNDECLARED_PROPERTIES: dict[str, dict[str, JsonSchema]] = {
    # is_admin comes as 0/1; the tap coerces it like every other flag.
    "users": {"is_admin": {"type": "boolean"}, "signup_flow_variation": _STRING},
    "roles": {"description": _STRING},
    # Without it a `sum` goal's target has no currency.
    "goals": {"expected_outcome.currency_id": _INTEGER},
    # Only on the rows of /leads/archived: when the lead was archived.
    "leads": {"archive_time": _TIMESTAMP},
    # The lead a note is attached to, summarised like the note's `deal`.
    "notes": {"lead": {"type": "object", "properties": {"title": _STRING}}},
    "files": {"people_name": _STRING},
}

# Spec properties that never leave the tap: they hold secrets of the Pipedrive account.
EXCLUDED_PROPERTIES: dict[str, frozenset[str]] = {
    "webhooks": frozenset({"http_auth_password"}),
}

# Besides the tables above, three rules apply everywhere:
# * Flags declared as numbers restricted to 0/1 (v1 mailbox `*_flag`, webhook `is_active`)
#   become booleans; the tap coerces 0/1.
# * Values declared as "integer or string" (v2 field `options[].id`: integer for custom
#   fields, string for built-in ones) become strings; the tap stringifies integers.
# * v1 `visible_to` stays a string ("3") and v2 `visible_to` an integer, as declared.


# --------------------------------------------------------------------------------------------
# Formats of string properties
# --------------------------------------------------------------------------------------------

_DATE_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP_VALUE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_CLOCK_VALUE = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")

# Names that end like a timestamp but hold a clock time ("HH:MM") or a duration.
PLAIN_STRING_NAMES = frozenset({"due_time", "next_activity_time", "duration"})
# Names whose shape says nothing but that always hold timestamps.
TIMESTAMP_NAMES = frozenset({"created", "modified", "last_login", "time", "timestamp"})
# Names whose shape says nothing but that always hold calendar dates (goal periods).
DATE_NAMES = frozenset({"birthday", "start", "end"})


def string_format(name: str, declared: str | None, examples: Iterable[Any]) -> str | None:
    """Return "date-time", "date" or None for a string property.

    Evidence in order of trust: the spec's own ``format``; the response examples (when every
    non-empty example agrees); then the name. Names ending in ``_time``/``_timestamp`` or
    listed in TIMESTAMP_NAMES are timestamps, names ending in ``_date`` or listed in
    DATE_NAMES are dates, PLAIN_STRING_NAMES stay plain strings whatever their examples say.
    v1 timestamps come as "YYYY-MM-DD HH:MM:SS" (UTC); the tap rewrites them to RFC 3339.
    """
    if name in PLAIN_STRING_NAMES:
        return None
    if declared in ("date-time", "date"):
        return declared
    if declared not in (None, ""):
        return None
    values = [value for value in examples if isinstance(value, str) and value]
    if values:
        if all(_DATE_VALUE.match(value) for value in values):
            return "date"
        if all(_TIMESTAMP_VALUE.match(value) for value in values):
            return "date-time"
        if any(_CLOCK_VALUE.match(value) for value in values):
            return None
    if name.endswith(("_time", "_timestamp")) or name in TIMESTAMP_NAMES:
        return "date-time"
    if name.endswith("_date") or name in DATE_NAMES:
        return "date"
    return None


# --------------------------------------------------------------------------------------------
# Spec reading
# --------------------------------------------------------------------------------------------


def load_specs(spec_dir: Path) -> dict[str, dict[str, Any]]:
    """Parse v1.yaml and v2.yaml (C loader when available: v1 is large)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    specs: dict[str, dict[str, Any]] = {}
    for version in SPEC_VERSIONS:
        with (spec_dir / f"{version}.yaml").open(encoding="utf-8") as handle:
            specs[version] = yaml.load(handle, Loader=loader)
    return specs


def list_operation(spec: Mapping[str, Any], path: str) -> dict[str, Any]:
    try:
        return dict(spec["paths"][path]["get"])
    except KeyError:
        raise SystemExit(f"spec has no GET {path}") from None


def resolve(spec: Mapping[str, Any], node: Any) -> Any:
    """Follow local ``$ref`` chains."""
    seen: set[str] = set()
    while isinstance(node, Mapping) and "$ref" in node:
        reference = node["$ref"]
        if reference in seen or not reference.startswith("#/"):
            raise SystemExit(f"unresolvable $ref {reference!r}")
        seen.add(reference)
        target: Any = spec
        for part in reference[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def flatten(spec: Mapping[str, Any], node: Any) -> dict[str, Any]:
    """Resolve refs and fold ``allOf``/``oneOf``/``anyOf`` into one plain schema.

    ``allOf`` parts and object alternatives merge their properties. Scalar alternatives of
    different types collapse to string (the tap stringifies the odd one out).
    """
    node = resolve(spec, node)
    if not isinstance(node, Mapping):
        return {}
    merged: dict[str, Any] = {
        key: value
        for key, value in node.items()
        if key not in ("allOf", "oneOf", "anyOf", "properties")
    }
    if "properties" in node:
        merged["properties"] = dict(node["properties"])
    for part in node.get("allOf", ()):
        merged = _merge(merged, flatten(spec, part))
    alternatives = [
        flatten(spec, part) for part in (*node.get("oneOf", ()), *node.get("anyOf", ()))
    ]
    if alternatives:
        scalar_types = {
            part.get("type")
            for part in alternatives
            if part.get("type") not in ("object", "array", None)
        }
        if len(scalar_types) > 1:
            merged = _merge(merged, {"type": "string"})
        else:
            for part in alternatives:
                merged = _merge(merged, part)
    return merged


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in extra.items():
        if key == "properties":
            properties = dict(result.get("properties", {}))
            for name, schema in value.items():
                properties[name] = (
                    {"allOf": [properties[name], schema]} if name in properties else schema
                )
            result["properties"] = properties
        elif key == "type":
            # The first part that names a type wins; untyped parts only add properties.
            if result.get("type") is None:
                result["type"] = value
        elif key not in result:
            result[key] = value
    if "properties" in result and result.get("type") is None:
        result["type"] = "object"
    return result


def response_item_schema(spec: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Flattened schema of one row of ``data`` in the GET response of ``path``."""
    operation = list_operation(spec, path)
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    data = flatten(spec, flatten(spec, body).get("properties", {}).get("data"))
    return _rows_of(spec, data, path)


def _rows_of(spec: Mapping[str, Any], data: dict[str, Any], path: str) -> dict[str, Any]:
    if data.get("type") == "array":
        return flatten(spec, data.get("items"))
    # /goals/find wraps its list: {"data": {"goals": [...]}}.
    arrays = [
        flatten(spec, schema)
        for schema in data.get("properties", {}).values()
        if flatten(spec, schema).get("type") == "array"
    ]
    if data.get("type") == "object" and len(arrays) == 1:
        return flatten(spec, arrays[0].get("items"))
    raise SystemExit(f"GET {path}: cannot find the row schema under `data`")


def response_example_rows(spec: Mapping[str, Any], path: str) -> list[Any]:
    """Rows of ``data`` in the 200 response examples of ``path`` (may be empty)."""
    content = list_operation(spec, path)["responses"]["200"]["content"]["application/json"]
    examples = []
    if "example" in content:
        examples.append(content["example"])
    for named in (content.get("examples") or {}).values():
        named = resolve(spec, named)
        if isinstance(named, Mapping) and "value" in named:
            examples.append(named["value"])
    rows: list[Any] = []
    for example in examples:
        data = example.get("data") if isinstance(example, Mapping) else None
        if isinstance(data, Mapping):
            lists = [value for value in data.values() if isinstance(value, list)]
            data = lists[0] if len(lists) == 1 else None
        if isinstance(data, list):
            rows.extend(row for row in data if isinstance(row, Mapping))
    return rows


def query_parameters(spec: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
    operation = list_operation(spec, path)
    path_item = spec["paths"][path]
    parameters = [
        resolve(spec, parameter)
        for parameter in (*path_item.get("parameters", ()), *operation.get("parameters", ()))
    ]
    return [parameter for parameter in parameters if parameter.get("in") == "query"]


# --------------------------------------------------------------------------------------------
# Conversion to Singer JSON Schema
# --------------------------------------------------------------------------------------------


def _example_values(rows: Iterable[Any], name: str) -> list[Any]:
    return [row[name] for row in rows if isinstance(row, Mapping) and name in row]


def _nested_rows(values: Iterable[Any]) -> list[Any]:
    """Objects found in example values, looking through arrays."""
    found: list[Any] = []
    for value in values:
        if isinstance(value, Mapping):
            found.append(value)
        elif isinstance(value, list):
            found.extend(_nested_rows(value))
    return found


def _scalar_type(spec_node: Mapping[str, Any]) -> str | None:
    declared = spec_node.get("type")
    enum = spec_node.get("enum")
    if declared in ("number", "integer") and enum and set(enum) <= {0, 1}:
        return "boolean"
    if declared == "number" and enum and all(isinstance(item, int) for item in enum):
        return "integer"
    return declared if isinstance(declared, str) else None


def _type_from_examples(name: str, values: list[Any]) -> str | None:
    kinds = {type(value) for value in values if value is not None}
    if not kinds:
        if name.endswith(("_id", "_count")):
            return "integer"
        if name.endswith(("_flag",)):
            return "boolean"
        if name.endswith(("_time", "_date", "_email", "_status", "_name")):
            return "string"
        return None
    if kinds == {bool} or (name.endswith("_flag") and set(values) <= {0, 1}):
        return "boolean"
    if kinds == {int}:
        return "integer"
    if kinds <= {int, float}:
        return "number"
    if kinds == {str}:
        return "string"
    if kinds == {list}:
        return "array"
    if kinds <= {dict}:
        return "object"
    return "string"


def convert(
    spec: Mapping[str, Any],
    node: Any,
    name: str,
    examples: list[Any],
    *,
    in_array: bool = False,
) -> JsonSchema:
    """Turn one flattened spec property into a nullable Singer schema."""
    flat = flatten(spec, node)
    kind = _scalar_type(flat) or ("object" if "properties" in flat else None)
    if kind is None:
        kind = _type_from_examples(name, examples) or "string"
    if kind == "object":
        return _object_schema(spec, flat, examples, in_array=in_array)
    if kind == "array":
        items = flat.get("items")
        item_examples = [item for value in examples if isinstance(value, list) for item in value]
        if items is None and not item_examples:
            return {"type": ["array", "null"]}
        return {
            "type": ["array", "null"],
            "items": convert(spec, items or {}, name, item_examples, in_array=True),
        }
    result: JsonSchema = {"type": [kind, "null"]}
    if kind == "string":
        declared = flat.get("format")
        value_format = string_format(name, declared, examples)
        if value_format:
            result["format"] = value_format
    return result


def _object_schema(
    spec: Mapping[str, Any],
    flat: Mapping[str, Any],
    examples: list[Any],
    *,
    in_array: bool = False,
) -> JsonSchema:
    declared = flat.get("properties") or {}
    rows = _nested_rows(examples)
    result: JsonSchema = {"type": ["object", "null"]}
    extra = flat.get("additionalProperties")
    if not declared:
        # Open-ended maps (custom fields, flow payloads): keep whatever the API sends.
        if isinstance(extra, Mapping) and extra:
            result["additionalProperties"] = convert(spec, extra, "", [])
        else:
            result["additionalProperties"] = True
        if in_array:
            # singer-sdk's record conformer reads `properties` of every object inside a list.
            result["properties"] = {}
        return result
    properties = {
        prop: convert(spec, schema, prop, _example_values(rows, prop))
        for prop, schema in declared.items()
    }
    # Examples routinely show fields the schema forgot (deals' creator_user_id, ...).
    for row in rows:
        for prop in row:
            if prop not in properties:
                values = _example_values(rows, prop)
                properties[prop] = convert(spec, {}, prop, values)
    result["properties"] = properties
    if isinstance(extra, Mapping) and extra:
        result["additionalProperties"] = convert(spec, extra, "", [])
    elif extra is True:
        result["additionalProperties"] = True
    return result


def _nullable(schema: JsonSchema) -> JsonSchema:
    """Nullable copy of a non-null type fragment (used for overrides and added properties)."""
    result = copy.deepcopy(schema)
    if isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
    for name, prop in result.get("properties", {}).items():
        result["properties"][name] = _nullable(prop)
    if isinstance(result.get("items"), Mapping):
        result["items"] = _nullable(result["items"])
    return result


def _non_null(schema: JsonSchema) -> JsonSchema:
    result = dict(schema)
    types = result.get("type")
    if isinstance(types, list):
        remaining = [kind for kind in types if kind != "null"]
        result["type"] = remaining[0] if len(remaining) == 1 else remaining
    return result


def _include_field_type(name: str) -> JsonSchema:
    """Type of an opt-in v2 field (``include_fields``) the item schema does not declare."""
    if name.endswith(("_id", "_count")):
        return {"type": ["integer", "null"]}
    schema: JsonSchema = {"type": ["string", "null"]}
    value_format = string_format(name, None, ())
    if value_format:
        schema["format"] = value_format
    return schema


def include_fields_enum(spec: Mapping[str, Any], path: str) -> list[str]:
    for parameter in query_parameters(spec, path):
        if parameter.get("name") == "include_fields":
            return [str(value) for value in flatten(spec, parameter.get("schema")).get("enum", [])]
    return []


def stream_schema(specs: Mapping[str, Mapping[str, Any]], stream: StreamSpec) -> JsonSchema:
    spec = specs[stream.version]
    properties: dict[str, JsonSchema] = {}
    for path in (*stream.paths, *stream.shape_paths):
        item = response_item_schema(spec, path)
        rows = response_example_rows(spec, path)
        converted = _object_schema(spec, item, rows)
        for name, schema in converted.get("properties", {}).items():
            properties[name] = _union(properties[name], schema) if name in properties else schema
        # Optional v2 fields listed in `include_fields` are only partly declared.
        for option in include_fields_enum(spec, path):
            for name in option.split(","):
                if "." not in name:
                    properties.setdefault(name, _include_field_type(name))
    for name in EXCLUDED_PROPERTIES.get(stream.name, ()):
        properties.pop(name, None)
    for name, schema in stream.added_properties.items():
        properties.setdefault(name, _nullable(schema))
    for dotted, replacement in OVERRIDES.get(stream.name, {}).items():
        _replace(properties, dotted.split("."), _nullable(replacement), stream.name)
    for dotted, addition in UNDECLARED_PROPERTIES.get(stream.name, {}).items():
        _add_undeclared(properties, dotted.split("."), _nullable(addition), stream.name)
    for key in stream.primary_keys:
        if key not in properties:
            raise SystemExit(f"{stream.name}: primary key {key!r} is not a property")
        properties[key] = _non_null(properties[key])
    return {
        "type": "object",
        "properties": properties,
        "required": list(stream.primary_keys),
    }


def _union(first: JsonSchema, second: JsonSchema) -> JsonSchema:
    """``first`` with the nested properties only ``second`` has (the first type wins)."""
    if "properties" not in first or "properties" not in second:
        if "items" in first and "items" in second:
            return {**first, "items": _union(first["items"], second["items"])}
        return first
    merged = dict(first["properties"])
    for name, schema in second["properties"].items():
        merged[name] = _union(merged[name], schema) if name in merged else schema
    return {**first, "properties": merged}


def _replace(
    properties: dict[str, JsonSchema], parts: list[str], new: JsonSchema, stream: str
) -> None:
    head, *rest = parts
    if head not in properties:
        raise SystemExit(f"{stream}: override path {'.'.join(parts)!r} matches no property")
    if not rest:
        properties[head] = new
        return
    target = properties[head]
    while "items" in target:
        target = target["items"]
    _replace(target["properties"], rest, new, stream)


def _add_undeclared(
    properties: dict[str, JsonSchema], parts: list[str], new: JsonSchema, stream: str
) -> None:
    head, *rest = parts
    if not rest:
        if head in properties:
            dotted = ".".join(parts)
            raise SystemExit(f"{stream}: {dotted!r} is declared now; drop it from the table")
        properties[head] = new
        return
    if head not in properties:
        raise SystemExit(f"{stream}: no object {head!r} to add {'.'.join(rest)!r} to")
    target = properties[head]
    while "items" in target:
        target = target["items"]
    _add_undeclared(target.setdefault("properties", {}), rest, new, stream)


# --------------------------------------------------------------------------------------------
# Endpoint facts
# --------------------------------------------------------------------------------------------


def endpoint_facts(spec: Mapping[str, Any], path: str) -> dict[str, Any]:
    operation = list_operation(spec, path)
    parameters = query_parameters(spec, path)
    by_name = {
        parameter["name"]: flatten(spec, parameter.get("schema")) for parameter in parameters
    }
    scopes = sorted(
        {
            scope
            for requirement in operation.get("security", spec.get("security") or [])
            for scope in requirement.get("oauth2", [])
        }
    )
    limit = by_name.get("limit", {})
    sort_enum = by_name.get("sort_by", {}).get("enum") or by_name.get("sort", {}).get("enum")
    return {
        "include_fields": include_fields_enum(spec, path) or None,
        "max_limit": limit.get("maximum"),
        "query_params": sorted(by_name),
        "scopes": scopes,
        "sort_by": list(sort_enum) if sort_enum else None,
        "token_cost": operation.get("x-token-cost"),
    }


def endpoints_entry(specs: Mapping[str, Mapping[str, Any]], stream: StreamSpec) -> dict[str, Any]:
    """Facts of the stream's first path at top level; every path's facts under ``by_path``."""
    spec = specs[stream.version]
    by_path = {path: endpoint_facts(spec, path) for path in stream.paths}
    return {
        "stream": stream.name,
        "version": stream.version,
        "paths": list(stream.paths),
        "primary_keys": list(stream.primary_keys),
        **by_path[stream.paths[0]],
        "by_path": by_path,
    }


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def render(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_outputs(
    specs: Mapping[str, Mapping[str, Any]],
    streams: Iterable[StreamSpec] = STREAMS,
) -> dict[str, str]:
    """File name → file text for every schema file and ``_endpoints.json``."""
    streams = tuple(streams)
    outputs = {f"{stream.name}.json": render(stream_schema(specs, stream)) for stream in streams}
    outputs[ENDPOINTS_FILE] = render([endpoints_entry(specs, stream) for stream in streams])
    return outputs


def iter_stale(outputs: Mapping[str, str], schema_dir: Path) -> Iterator[str]:
    for name, text in sorted(outputs.items()):
        target = schema_dir / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            yield name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--spec-dir", type=Path, default=DEFAULT_SPEC_DIR)
    parser.add_argument("--out-dir", type=Path, default=SCHEMA_DIR)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if any committed file is out of date"
    )
    args = parser.parse_args(argv)
    if not (args.spec_dir / "v1.yaml").is_file() or not (args.spec_dir / "v2.yaml").is_file():
        print(f"--spec-dir {args.spec_dir}: v1.yaml and v2.yaml not found", file=sys.stderr)
        return 2
    outputs = build_outputs(load_specs(args.spec_dir))
    stale = list(iter_stale(outputs, args.out_dir))
    if args.check:
        for name in stale:
            print(f"out of date: {name}", file=sys.stderr)
        return 1 if stale else 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out_dir / name).write_text(outputs[name], encoding="utf-8")
    print(f"{len(outputs)} files, {len(stale)} rewritten in {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
