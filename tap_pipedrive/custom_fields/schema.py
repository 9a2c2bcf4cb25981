"""The JSON Schema of custom columns.

* ``property_schema`` maps a Pipedrive field type to the JSON Schema of its column; the
  description names the label, the key and the type, for analysts.
* ``merged_schema`` puts the custom columns next to the stream's built-in properties, or
  inside one ``custom_fields`` object (``custom_fields_location``).
"""

from __future__ import annotations

import copy
import typing as t

from tap_pipedrive.custom_fields.naming import CONTAINER

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from tap_pipedrive.custom_fields.definitions import FieldDefinition

LOCATIONS = ("flattened", "nested")
ADDRESS_PARTS = (
    "value",
    "route",
    "street_number",
    "subpremise",
    "locality",
    "sublocality",
    "admin_area_level_1",
    "admin_area_level_2",
    "country",
    "postal_code",
    "formatted_address",
)


def describe(field: FieldDefinition) -> str:
    """The property description: the label, the key and the type, for analysts."""
    return f'Pipedrive custom field "{field.label}" (key {field.key}, type {field.field_type})'


def _nullable(json_type: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"type": [json_type, "null"], **extra}


def _object(parts: Mapping[str, dict[str, t.Any]]) -> dict[str, t.Any]:
    return {"type": ["object", "null"], "properties": dict(parts)}


_DATE = {"type": ["string", "null"], "format": "date"}
_STRING = {"type": ["string", "null"]}
_INTEGER = {"type": ["integer", "null"]}
_NUMBER = {"type": ["number", "null"]}
_TIME_PARTS = {"value": _STRING, "timezone_id": _INTEGER, "timezone_name": _STRING}

TEXT_TYPES = frozenset({"varchar", "varchar_auto", "varchar_options", "text", "phone"})
REFERENCE_TYPES = frozenset(
    {"user", "org", "people", "deal", "project", "stage", "activity", "visible_to"}
)
REFERENCE_LIST_TYPES = frozenset({"deals", "projects"})
TYPE_SCHEMAS: dict[str, dict[str, t.Any]] = {
    "double": _NUMBER,
    "int": _INTEGER,
    "boolean": _nullable("boolean"),
    "date": _DATE,
    "lead": _STRING,
    "monetary": _object({"value": _NUMBER, "currency": _STRING}),
    "daterange": _object({"value": _DATE, "until": _DATE}),
    "time": _object(_TIME_PARTS),
    "timerange": _object({"value": _STRING, "until": _STRING, **_TIME_PARTS}),
    "address": _object({part: _STRING for part in ADDRESS_PARTS}),
}


def property_schema(field: FieldDefinition, option_labels: bool = True) -> dict[str, t.Any]:
    """The JSON Schema of one custom field (always nullable: a value may be unset)."""
    kind = field.field_type
    schema: dict[str, t.Any]
    if kind in TEXT_TYPES:
        schema = dict(_STRING)
    elif kind == "enum":
        schema = dict(_STRING if option_labels else _INTEGER)
    elif kind == "set":
        item = {"type": "string"} if option_labels else {"type": "integer"}
        schema = {"type": ["array", "null"], "items": item}
    elif kind in REFERENCE_TYPES:
        schema = dict(_INTEGER)
    elif kind in REFERENCE_LIST_TYPES:
        schema = {"type": ["array", "null"], "items": {"type": "integer"}}
    elif kind in TYPE_SCHEMAS:
        schema = copy.deepcopy(TYPE_SCHEMAS[kind])
    else:
        # A type this tap does not know (Pipedrive adds some now and then): any JSON,
        # passed through untouched rather than dropped.
        schema = {}
    schema["description"] = describe(field)
    return schema


def merged_schema(
    static_schema: dict[str, t.Any],
    static_properties: dict[str, t.Any],
    custom: dict[str, dict[str, t.Any]],
    nested: bool,
) -> dict[str, t.Any]:
    """The stream's schema: its built-in properties and its custom columns."""
    properties = dict(static_properties)
    if nested:
        properties[CONTAINER] = {
            "type": ["object", "null"],
            "properties": custom,
            "description": "Pipedrive custom fields, by column name (see the custom_fields stream)",
        }
    else:
        properties.update(custom)
    return {**static_schema, "properties": properties}
