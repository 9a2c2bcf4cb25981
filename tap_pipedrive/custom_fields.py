"""Custom fields as typed, readably named columns.

Pipedrive keys custom fields by 40-character hashes that differ per company, and
describes them in the ``*Fields`` endpoints. This module turns those definitions into
JSON Schema properties and record values:

* ``FieldCatalog`` (one per tap) reads each field set once per run and caches it, so
  discovery and sync share one request per ``*Fields`` endpoint. A failed read ends
  the run with its cause: a smaller schema is never produced silently.
* ``FieldDefinition`` is one custom field, from either API version's item shape.
* ``column_names`` gives each field a stable snake_case column name (or its key).
* ``property_schema`` maps a field type to its JSON Schema.
* ``CustomFieldLayout`` (one per stream) holds the merged schema and a per-field
  converter built once, so the per-record work is a dictionary walk.

The stream side is a single class attribute: a stream that sets
``custom_fields_entity = "deal"`` gets the deal custom fields (see ``client.py``).
"""

from __future__ import annotations

import copy
import logging
import math
import re
import threading
import typing as t
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import cached_property

from singer_sdk import StreamSchema

from tap_pipedrive.errors import (
    ConfigError,
    CredentialsRejected,
    DailyBudgetExhausted,
    PipedriveAPIError,
    ServerUnreachable,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from singer_sdk.streams import Stream

    from tap_pipedrive.normalize import CoercionLog

Converter = t.Callable[[t.Any], t.Any]

NAMING_MODES = ("name", "key")
LOCATIONS = ("flattened", "nested")
# The record property holding custom values in API v2, and in "nested" mode.
CONTAINER = "custom_fields"
# Room for a "_" plus a 16-character key suffix inside PostgreSQL's 63-byte identifiers.
MAX_NAME_LENGTH = 46
EMPTY_NAME_STEM = "custom_field"
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


@dataclass(frozen=True)
class FieldSource:
    """Where a field set's definitions are read from."""

    entity: str
    version: str
    path: str
    paged: bool = True
    # Optional parts of the v2 items (free of charge; the allowed values differ per
    # endpoint): asked for so that the cached items are complete for any other reader.
    include_fields: tuple[str, ...] = ()
    # Read instead when the token may not read this endpoint (see FieldCatalog._read).
    fallback: FieldSource | None = None


_UI_PARTS = ("ui_visibility", "important_fields", "required_fields")

FIELD_SOURCES: dict[str, FieldSource] = {
    source.entity: source
    for source in (
        FieldSource("deal", "v2", "/dealFields", include_fields=_UI_PARTS),
        FieldSource("person", "v2", "/personFields", include_fields=_UI_PARTS),
        FieldSource("organization", "v2", "/organizationFields", include_fields=_UI_PARTS),
        FieldSource("product", "v2", "/productFields", include_fields=_UI_PARTS[:1]),
        # v2 /activityFields accepts only the admin scope; v1 takes activities:read.
        FieldSource(
            "activity",
            "v2",
            "/activityFields",
            include_fields=_UI_PARTS[:1],
            fallback=FieldSource("activity", "v1", "/activityFields"),
        ),
        FieldSource("project", "v2", "/projectFields"),
        # Leads have no field set of their own: /leadFields lists the deal custom
        # fields under the same keys, plus the deleted options old lead values still use.
        FieldSource("lead", "v1", "/leadFields"),
        FieldSource("note", "v1", "/noteFields", paged=False),
    )
}


class FieldDefinitionsError(PipedriveAPIError):
    """A ``*Fields`` endpoint could not be read; the run stops rather than drop columns."""


class FieldDefinitionsRefused(FieldDefinitionsError):
    """The token's scopes or the plan do not allow a ``*Fields`` endpoint (402/403)."""


def settings(config: Mapping[str, t.Any]) -> tuple[str, str, bool]:
    """(naming, location, option labels) from the config; a bad value is a one-line error.

    Checked here as well as by the config schema, because the SDK does not validate
    the config on ``--discover``.
    """
    naming = config.get("custom_field_naming") or "name"
    location = config.get("custom_fields_location") or "flattened"
    labels = config.get("custom_field_option_labels", True)
    for setting, value, allowed in (
        ("custom_field_naming", naming, NAMING_MODES),
        ("custom_fields_location", location, LOCATIONS),
    ):
        if value not in allowed:
            msg = f"{setting} must be one of {', '.join(allowed)}; got {str(value)[:40]!r}"
            raise ConfigError(msg)
    if labels is None:
        labels = True
    if not isinstance(labels, bool):
        msg = f"custom_field_option_labels must be true or false; got {str(labels)[:40]!r}"
        raise ConfigError(msg)
    return str(naming), str(location), labels


# --- definitions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldOption:
    id: int | str
    label: str
    deleted: bool = False


@dataclass(frozen=True)
class FieldDefinition:
    """One custom field, in terms common to both API versions."""

    entity: str
    key: str
    label: str
    field_type: str
    options: tuple[FieldOption, ...] = ()
    description: str = ""

    @classmethod
    def from_item(cls, entity: str, item: Mapping[str, t.Any]) -> FieldDefinition | None:
        """Read a v2 (``field_code``) or v1 (``key``) item; None when it is no custom field."""
        if "field_code" in item:
            if not item.get("is_custom_field"):
                return None
            key, label = item.get("field_code"), item.get("field_name")
            deleted: Iterable[Mapping[str, t.Any]] = ()
        else:
            if not item.get("edit_flag") or item.get("is_subfield"):
                return None
            if item.get("active_flag") is False:
                return None
            key, label = item.get("key"), item.get("name")
            deleted = item.get("options_deleted") or ()
        if not isinstance(key, str) or not key:
            return None
        options = [
            FieldOption(_option_id(option.get("id")), str(option.get("label") or ""))
            for option in item.get("options") or ()
            if isinstance(option, dict) and option.get("id") is not None
        ]
        live = {option.id for option in options}
        options += [
            FieldOption(_option_id(option.get("id")), str(option.get("label") or ""), True)
            for option in deleted
            if isinstance(option, dict)
            and option.get("id") is not None
            and _option_id(option.get("id")) not in live
        ]
        return cls(
            entity=entity,
            key=key,
            label=str(label or ""),
            field_type=str(item.get("field_type") or ""),
            options=tuple(options),
            description=str(item.get("description") or ""),
        )


def _option_id(value: t.Any) -> int | str:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value if isinstance(value, int) else str(value)


# --- the per-run cache ------------------------------------------------------------------------


class FieldCatalog:
    """The ``*Fields`` items of each field set, read at most once per tap instance.

    ``fetch`` reads every page of one endpoint through the tap's shared session,
    authenticator, rate limiter and error handling (see ``streams/custom_fields.py``).
    """

    def __init__(self, fetch: Callable[[FieldSource], list[dict]]) -> None:
        self._fetch = fetch
        self._items: dict[str, list[dict]] = {}
        self._definitions: dict[str, tuple[FieldDefinition, ...]] = {}
        self._lock = threading.Lock()
        # Field sets read from their fallback endpoint, whose items have the other shape.
        self.fallback_used: set[str] = set()

    def items(self, entity: str) -> list[dict]:
        """The raw ``*Fields`` items of a field set (built-in and custom fields)."""
        source = FIELD_SOURCES.get(entity)
        if source is None:
            msg = f"Unknown custom field set {entity!r} (known: {', '.join(FIELD_SOURCES)})"
            raise ValueError(msg)
        with self._lock:
            if entity not in self._items:
                self._items[entity] = self._read(source)
            return self._items[entity]

    def definitions(self, entity: str) -> tuple[FieldDefinition, ...]:
        """The custom fields of a field set, in key order."""
        if entity not in self._definitions:
            found = (FieldDefinition.from_item(entity, item) for item in self.items(entity))
            unique = {field.key: field for field in found if field is not None}
            self._definitions[entity] = tuple(unique[key] for key in sorted(unique))
        return self._definitions[entity]

    def _read(self, source: FieldSource) -> list[dict]:
        try:
            items = self._fetch(source)
        except FieldDefinitionsRefused as exc:
            if source.fallback is None:
                raise FieldDefinitionsError(_failure(source, exc)) from None
            logging.getLogger(__name__).warning(
                "%s custom field definitions: GET /api/%s%s was refused (%s); reading "
                "GET /api/%s%s instead",
                source.entity.title(),
                source.version,
                source.path,
                exc,
                source.fallback.version,
                source.fallback.path,
            )
            self.fallback_used.add(source.entity)
            return self._read(source.fallback)
        except DailyBudgetExhausted as exc:
            raise DailyBudgetExhausted(_failure(source, exc)) from None
        except (CredentialsRejected, ServerUnreachable):
            raise  # the cause is the token or the host, whichever request met it first
        except PipedriveAPIError as exc:
            raise FieldDefinitionsError(_failure(source, exc)) from None
        return [item for item in items if isinstance(item, dict)]


def _failure(source: FieldSource, exc: Exception) -> str:
    return (
        f"Could not read the {source.entity} custom field definitions "
        f"(GET /api/{source.version}{source.path}), so the {source.entity} columns are "
        f"unknown and the run stops: {exc}"
    )


# --- naming -----------------------------------------------------------------------------------

_TRANSLITERATIONS = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "þ": "th",
        "Þ": "TH",
        "%": " pct ",
        "&": " and ",
        "#": " num ",
        "+": " plus ",
        "@": " at ",
    }
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def snake_case(label: str) -> str:
    """A lowercase ASCII identifier from a field label; "" when nothing usable is left.

    Accents are stripped (``Région`` → ``region``), a few symbols are spelled out
    (``Discount %`` → ``discount_pct``), camel case is split, and names starting with
    a digit get a ``field_`` prefix, which most warehouses require.
    """
    text = unicodedata.normalize("NFKD", label.translate(_TRANSLITERATIONS))
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = _CAMEL_BOUNDARY.sub("_", text).lower()
    text = _NOT_WORD.sub("_", text).strip("_")
    if text[:1].isdigit():
        text = f"field_{text}"
    return text[:MAX_NAME_LENGTH].rstrip("_")


def column_names(
    fields: Iterable[FieldDefinition],
    reserved: Iterable[str],
    naming: str = "name",
    pinned: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map each field key to its column name; the result depends on the set of fields only.

    Under ``name`` naming a field gets the snake_case of its label when that is
    unique among the fields and no built-in property (``reserved``) has it. Otherwise
    every field sharing the name gets a suffix of its key (``deal_score_1f3a9c0d``),
    so no column is favoured by the API's ordering and no value overwrites another.
    A label with nothing usable becomes ``custom_field_<key prefix>``.
    ``pinned`` (key → name, from the catalog of a previous discovery) wins over all.
    """
    fields = sorted(fields, key=lambda field: field.key)
    if naming == "key":
        return {field.key: field.key for field in fields}
    taken = set(reserved)
    names: dict[str, str] = {}
    for field in fields:
        name = (pinned or {}).get(field.key)
        if name and name not in taken:
            names[field.key] = name
            taken.add(name)
    pending = [field for field in fields if field.key not in names]
    bases = {field.key: snake_case(field.label) for field in pending}
    counts: dict[str, int] = {}
    for base in bases.values():
        counts[base] = counts.get(base, 0) + 1
    suffixed = []
    for field in pending:
        base = bases[field.key]
        if base and counts[base] == 1 and base not in taken:
            names[field.key] = base
            taken.add(base)
        else:
            suffixed.append(field)
    for field in suffixed:
        stem = bases[field.key] or EMPTY_NAME_STEM
        token = _NOT_WORD.sub("", field.key.lower()) or "x"
        for length in (8, 12, 16, len(token)):
            name = f"{stem}_{token[:length]}"
            if name not in taken:
                break
        else:
            number = 2
            while f"{name}_{number}" in taken:
                number += 1
            name = f"{name}_{number}"
        names[field.key] = name
        taken.add(name)
    return names


def describe(field: FieldDefinition) -> str:
    """The property description: the label, the key and the type, for analysts."""
    return f'Pipedrive custom field "{field.label}" (key {field.key}, type {field.field_type})'


_DESCRIBED_KEY = re.compile(r"\(key (\S+), type [^)]*\)$")


def described_key(prop: Mapping[str, t.Any]) -> str | None:
    """The field key recorded in a property description written by ``describe``."""
    match = _DESCRIBED_KEY.search(str(prop.get("description") or ""))
    return match.group(1) if match else None


# --- schemas ----------------------------------------------------------------------------------


def _nullable(json_type: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"type": [json_type, "null"], **extra}


def _object(parts: Mapping[str, dict[str, t.Any]]) -> dict[str, t.Any]:
    return {"type": ["object", "null"], "properties": dict(parts)}


_DATE = {"type": ["string", "null"], "format": "date"}
_STRING = {"type": ["string", "null"]}
_INTEGER = {"type": ["integer", "null"]}
_NUMBER = {"type": ["number", "null"]}
_TIME_PARTS = {"value": _STRING, "timezone_id": _INTEGER, "timezone_name": _STRING}

_TEXT_TYPES = frozenset({"varchar", "varchar_auto", "varchar_options", "text", "phone"})
_REFERENCE_TYPES = frozenset(
    {"user", "org", "people", "deal", "project", "stage", "activity", "visible_to"}
)
_REFERENCE_LIST_TYPES = frozenset({"deals", "projects"})
_SCHEMAS: dict[str, dict[str, t.Any]] = {
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
    if kind in _TEXT_TYPES:
        schema = dict(_STRING)
    elif kind == "enum":
        schema = dict(_STRING if option_labels else _INTEGER)
    elif kind == "set":
        item = {"type": "string"} if option_labels else {"type": "integer"}
        schema = {"type": ["array", "null"], "items": item}
    elif kind in _REFERENCE_TYPES:
        schema = dict(_INTEGER)
    elif kind in _REFERENCE_LIST_TYPES:
        schema = {"type": ["array", "null"], "items": {"type": "integer"}}
    elif kind in _SCHEMAS:
        schema = copy.deepcopy(_SCHEMAS[kind])
    else:
        # A type this tap does not know (Pipedrive adds some now and then): any JSON,
        # passed through untouched rather than dropped.
        schema = {}
    schema["description"] = describe(field)
    return schema


# --- values -----------------------------------------------------------------------------------

_DATE_SHAPE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
# Distinct valid date strings remembered per date converter.
MEMO_SIZE = 20_000
# Classes that parts of composite values may have as they are, by converter name:
# strings stay strings and integers stay integers, without a call.
_FAST_CLASSES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int,)}
_MISSING = object()


class ConverterFactory:
    """Builds one converter per field; converters take a non-null raw value.

    Fast paths come first (a value already of the right type is returned as-is);
    anything else is coerced where that loses nothing, or becomes null, and is counted
    per column in the stream's ``CoercionLog``.
    """

    def __init__(self, coercions: CoercionLog, option_labels: bool) -> None:
        self.coercions = coercions
        self.option_labels = option_labels

    def build(self, field: FieldDefinition, column: str) -> Converter:
        kind = field.field_type
        if kind in _TEXT_TYPES or kind == "lead":
            return self._string(column)
        if kind == "double":
            return self._number(column)
        if kind in ("int", *_REFERENCE_TYPES):
            return self._integer(column)
        if kind in _REFERENCE_LIST_TYPES:
            return self._integer_list(column)
        if kind == "boolean":
            return self._boolean(column)
        if kind == "date":
            return self._date(column)
        if kind == "enum":
            return self._enum(field, column)
        if kind == "set":
            return self._set(field, column)
        if kind in ("monetary", "daterange", "time", "timerange", "address"):
            return self._object(kind, column)
        return _identity

    # scalars ----------------------------------------------------------------------------------
    def _string(self, column: str) -> Converter:
        coerced = self.coercions.coerced

        def string(value: t.Any) -> t.Any:
            if value.__class__ is str:
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                # A number typed into a text field: text holds it without loss.
                coerced(column, value, "text")
                return str(value)
            coerced(column, value)
            return None

        return string

    def _number(self, column: str) -> Converter:
        coerced = self.coercions.coerced

        def number(value: t.Any) -> t.Any:
            if value.__class__ is float or value.__class__ is int:
                if value.__class__ is float and not math.isfinite(value):
                    coerced(column, value)
                    return None
                return value
            parsed = _parse_number(value)
            if parsed is None:
                coerced(column, value)
            return parsed

        return number

    def _integer(self, column: str) -> Converter:
        coerced = self.coercions.coerced

        def integer(value: t.Any) -> t.Any:
            if value.__class__ is int:
                return value
            if isinstance(value, dict):
                # v1 reference fields may come as {"value": id, "name": ...} or {"id": ...}.
                value = value.get("value", value.get("id"))
                if value is None:
                    return None
                if value.__class__ is int:
                    return value
            parsed = _parse_number(value)
            if parsed is not None and float(parsed).is_integer():
                return int(parsed)
            coerced(column, value)
            return None

        return integer

    def _integer_list(self, column: str) -> Converter:
        to_integer = self._integer(column)

        def convert(value: t.Any) -> t.Any:
            items = _split(value)
            converted = [to_integer(item) for item in items if item is not None]
            return [item for item in converted if item is not None]

        return convert

    def _boolean(self, column: str) -> Converter:
        coerced = self.coercions.coerced
        known = {"true": True, "1": True, "false": False, "0": False, 1: True, 0: False}

        def convert(value: t.Any) -> t.Any:
            if value.__class__ is bool:
                return value
            result = known.get(value.lower() if isinstance(value, str) else value)
            if result is None:
                coerced(column, value)
            return result

        return convert

    def _date(self, column: str) -> Converter:
        coerced = self.coercions.coerced
        match = _DATE_SHAPE.fullmatch
        # Values seen valid: an account's dates repeat a lot, and a lookup is cheaper
        # than checking the text again. Bounded, so memory stays flat on any data.
        valid: dict[str, str] = {}

        def convert(value: t.Any) -> t.Any:
            if value.__class__ is str:
                known = valid.get(value)
                if known is not None:
                    return known
                head = value[:10]
                if match(head) and (len(value) == 10 or value[10] in " T"):
                    try:
                        date.fromisoformat(head)  # rejects 2024-02-30
                    except ValueError:
                        pass
                    else:
                        if len(valid) < MEMO_SIZE:
                            valid[value] = head
                        return head
            # 0000-00-00, a timestamp-looking string, a number: no real date.
            coerced(column, value)
            return None

        return convert

    # options ------------------------------------------------------------------------------------
    def _lookup(self, field: FieldDefinition) -> dict[t.Any, t.Any]:
        """Option id (as int and as str) → what to emit: the label, or the id itself."""
        lookup: dict[t.Any, t.Any] = {}
        for option in field.options:
            emitted = option.label if self.option_labels else option.id
            lookup[option.id] = emitted
            lookup[str(option.id)] = emitted
        return lookup

    def _option(self, field: FieldDefinition, column: str) -> Converter:
        """One option reference (int, numeric string or {id, label}) → label or id."""
        lookup = self._lookup(field)
        coerced = self.coercions.coerced
        labels = self.option_labels

        def convert(value: t.Any) -> t.Any:
            try:
                return lookup[value]
            except (KeyError, TypeError):
                pass
            if isinstance(value, dict):
                return convert(value.get("id")) if value.get("id") is not None else None
            if value.__class__ is bool:
                coerced(column, value)
                return None
            option_id = _parse_number(value)
            if option_id is not None and float(option_id).is_integer():
                if int(option_id) in lookup:
                    return lookup[int(option_id)]
                if not labels:
                    # An option deleted since: the id is kept, and counted.
                    coerced(column, value, "the unknown option id")
                    return int(option_id)
            coerced(column, value)
            return None

        return convert

    def _enum(self, field: FieldDefinition, column: str) -> Converter:
        return self._option(field, column)

    def _set(self, field: FieldDefinition, column: str) -> Converter:
        option = self._option(field, column)
        lookup = self._lookup(field)

        def convert(value: t.Any) -> t.Any:
            if value.__class__ is list:
                try:
                    return [lookup[item] for item in value]  # the usual v2 case
                except (KeyError, TypeError):
                    pass
            converted = [option(item) for item in _split(value) if item is not None]
            return [item for item in converted if item is not None]

        return convert

    # objects ------------------------------------------------------------------------------------
    def _object(self, kind: str, column: str) -> Converter:
        parts = tuple(_SCHEMAS[kind]["properties"])
        part_converters: dict[str, Converter] = {}
        for part, part_schema in _SCHEMAS[kind]["properties"].items():
            if part_schema.get("format") == "date":
                part_converters[part] = self._date(column)
            elif "number" in part_schema["type"]:
                part_converters[part] = self._number(column)
            elif "integer" in part_schema["type"]:
                part_converters[part] = self._integer(column)
            else:
                part_converters[part] = self._string(column)
        coerced = self.coercions.coerced
        # Per part: the classes accepted as they are (no call), and the converter for
        # anything else. Dates are always checked.
        items = tuple(
            (part, _FAST_CLASSES.get(part_convert.__name__, ()), part_convert)
            for part, part_convert in part_converters.items()
        )

        def convert(value: t.Any) -> t.Any:
            if value.__class__ is not dict:
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    # A bare scalar where an object is due: it is the object's main part.
                    value = {"value": value}
                    coerced(column, value["value"], "an object")
                else:
                    coerced(column, value)
                    return None
            get = value.get
            result = {}
            for part, fast, part_convert in items:
                raw = get(part)
                result[part] = raw if raw is None or raw.__class__ in fast else part_convert(raw)
            return result

        convert.parts = parts  # type: ignore[attr-defined]
        return convert


def _identity(value: t.Any) -> t.Any:
    return value


def _parse_number(value: t.Any) -> int | float | None:
    if value.__class__ is int or value.__class__ is float:
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _split(value: t.Any) -> list[t.Any]:
    """A set's value: a list (v2), a comma-separated string (v1) or a single id."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return [value]


# --- v1 flat keys -----------------------------------------------------------------------------

# In API v1 records the parts of a composite value sit in sibling keys: <key>, <key>_<part>.
_V1_PARTS: dict[str, tuple[str, ...]] = {
    "monetary": ("currency",),
    "daterange": ("until",),
    "time": ("timezone_id", "timezone_name"),
    "timerange": ("until", "timezone_id", "timezone_name"),
    "address": ADDRESS_PARTS[1:],
}


# --- per stream -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    key: str
    name: str
    convert: Converter
    v1_parts: tuple[tuple[str, str], ...]  # (part, flat record key) for v1 composites


class CustomFieldLayout:
    """The custom columns of one stream: its schema and its record transformation."""

    def __init__(
        self,
        *,
        stream_name: str,
        static_schema: dict[str, t.Any],
        fields: tuple[FieldDefinition, ...],
        config: Mapping[str, t.Any],
        record_format: str,
        coercions: CoercionLog,
        logger: logging.Logger,
        catalog_schema: dict[str, t.Any] | None = None,
    ) -> None:
        self.stream_name = stream_name
        self.fields = fields
        self.naming, location, self.option_labels = settings(config)
        self.nested = location == "nested"
        self.record_format = record_format
        self._logger = logger
        static_properties = dict(static_schema.get("properties") or {})
        static_properties.pop(CONTAINER, None)
        reserved = set(static_properties) | {CONTAINER}
        pinned, in_catalog = _catalog_columns(catalog_schema, self.nested)
        self.names = column_names(fields, reserved, self.naming, pinned)
        self.properties = {
            self.names[field.key]: property_schema(field, self.option_labels) for field in fields
        }
        self.schema = _merged_schema(static_schema, static_properties, self.properties, self.nested)
        factory = ConverterFactory(coercions, self.option_labels)
        self._columns: dict[str, _Column] = {}
        skipped = []
        for field in fields:
            name = self.names[field.key]
            if in_catalog is not None and name not in in_catalog:
                skipped.append(field)
                continue
            parts = _V1_PARTS.get(field.field_type, ()) if record_format == "v1" else ()
            self._columns[field.key] = _Column(
                field.key,
                name,
                factory.build(field, name),
                tuple((part, f"{field.key}_{part}") for part in parts),
            )
        if skipped:
            logger.warning(
                "Stream %s: %d custom field(s) are newer than the catalog and are left out "
                "until the next discovery: %s",
                stream_name,
                len(skipped),
                ", ".join(f'"{field.label}" ({field.key})' for field in skipped),
            )
        self._unknown_keys: set[str] = set()
        self.apply: Callable[[dict], None] = (
            self._apply_v2 if record_format == "v2" else self._apply_v1
        )

    @cached_property
    def _by_key(self) -> dict[str, tuple[str, Converter]]:
        # Plain tuples: the per-value lookup in v2 records is the hot path.
        return {key: (column.name, column.convert) for key, column in self._columns.items()}

    def _apply_v2(self, row: dict) -> None:
        raw = row.pop(CONTAINER, None)
        target: dict[str, t.Any] = row
        if self.nested:
            if raw is None:
                row[CONTAINER] = None
                return
            row[CONTAINER] = target = {}
        if not raw:
            return
        by_key = self._by_key
        for key, value in raw.items():
            try:
                name, convert = by_key[key]
            except KeyError:
                self._unknown(key)
                continue
            target[name] = None if value is None else convert(value)

    def _apply_v1(self, row: dict) -> None:
        target: dict[str, t.Any] = {} if self.nested else row
        pop = row.pop
        for column in self._columns.values():
            value = pop(column.key, _MISSING)
            if column.v1_parts:
                parts = {part: pop(flat_key, None) for part, flat_key in column.v1_parts}
                if value is _MISSING and not any(part is not None for part in parts.values()):
                    continue
                if isinstance(value, dict):
                    # Some v1 endpoints already send the composite as one object.
                    parts = {**parts, **value}
                else:
                    parts["value"] = None if value is _MISSING else value
                if all(part is None for part in parts.values()):
                    target[column.name] = None
                    continue
                target[column.name] = column.convert(parts)
            elif value is not _MISSING:
                target[column.name] = None if value is None else column.convert(value)
        if self.nested:
            row[CONTAINER] = target

    def _unknown(self, key: str) -> None:
        if key not in self._unknown_keys:
            self._unknown_keys.add(key)
            self._logger.warning(
                "Stream %s: custom field %s is not among the field definitions read at the "
                "start of the run (created since?); its values are left out until the next run",
                self.stream_name,
                key,
            )


def _merged_schema(
    static_schema: dict[str, t.Any],
    static_properties: dict[str, t.Any],
    custom: dict[str, dict[str, t.Any]],
    nested: bool,
) -> dict[str, t.Any]:
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


def _catalog_columns(
    catalog_schema: dict[str, t.Any] | None, nested: bool
) -> tuple[dict[str, str], set[str] | None]:
    """From an input catalog: key → column name of the custom columns, and all column names.

    A sync given a catalog keeps that catalog's names, so a label renamed since the
    discovery cannot send values to a column the catalog (and the target) lacks.
    """
    if catalog_schema is None:
        return {}, None
    properties = catalog_schema.get("properties") or {}
    if nested:
        properties = (properties.get(CONTAINER) or {}).get("properties") or {}
    pinned = {}
    for name, prop in properties.items():
        key = described_key(prop) if isinstance(prop, dict) else None
        if key:
            pinned[key] = name
    return pinned, set(properties)


# --- hook for streams -------------------------------------------------------------------------


class CustomFieldSchema(StreamSchema):
    """A stream's schema from its JSON file, plus its custom fields when it declares a field set.

    Streams set ``custom_fields_entity`` (``"deal"``, ``"person"`` ...); the field
    definitions are read the first time the schema is needed, never at construction.
    """

    def get_stream_schema(self, stream: t.Any, stream_class: t.Any) -> t.Any:
        static = super().get_stream_schema(stream, stream_class)
        if getattr(stream, "custom_fields_entity", None) is None:
            return static
        return layout_for(stream, static).schema


def layout_for(stream: Stream, static_schema: dict[str, t.Any] | None = None) -> CustomFieldLayout:
    """The stream's custom field layout, built once per stream instance."""
    layout = stream.__dict__.get(_LAYOUT_ATTRIBUTE)
    if layout is not None:
        return t.cast("CustomFieldLayout", layout)
    if static_schema is None:
        # Reading the schema builds the layout when the stream's schema is a
        # CustomFieldSchema; any other schema is taken as the static part.
        schema = stream.schema
        layout = stream.__dict__.get(_LAYOUT_ATTRIBUTE)
        if layout is not None:
            return t.cast("CustomFieldLayout", layout)
        static_schema = schema
    settings(stream.config)  # before any request
    entity = t.cast("str", stream.custom_fields_entity)  # type: ignore[attr-defined]
    catalog: FieldCatalog = stream._tap.custom_field_catalog  # type: ignore[attr-defined]
    layout = CustomFieldLayout(
        stream_name=stream.name,
        static_schema=static_schema,
        fields=catalog.definitions(entity),
        config=stream.config,
        record_format=getattr(stream, "custom_fields_format", None)
        or ("v2" if getattr(stream, "api_version", "v2") == "v2" else "v1"),
        coercions=stream.coercions,  # type: ignore[attr-defined]
        logger=stream.logger,
        catalog_schema=stream._input_schema,
    )
    stream.__dict__[_LAYOUT_ATTRIBUTE] = layout
    return layout


_LAYOUT_ATTRIBUTE = "_custom_field_layout"
