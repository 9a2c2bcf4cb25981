"""Custom field values: from what Pipedrive sends to what the column's schema allows.

``ConverterFactory`` builds one converter per field, once per stream; the per-record work
is then a dictionary walk (see ``layout.py``).
"""

from __future__ import annotations

import math
import re
import typing as t
from datetime import date

from tap_pipedrive.custom_fields.schema import (
    ADDRESS_PARTS,
    REFERENCE_LIST_TYPES,
    REFERENCE_TYPES,
    TEXT_TYPES,
    TYPE_SCHEMAS,
)

if t.TYPE_CHECKING:
    from tap_pipedrive.custom_fields.definitions import FieldDefinition
    from tap_pipedrive.normalize import CoercionLog

Converter = t.Callable[[t.Any], t.Any]

_DATE_SHAPE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
# Distinct valid date strings remembered per date converter.
MEMO_SIZE = 20_000
# Classes that parts of composite values may have as they are, by converter name:
# strings stay strings and integers stay integers, without a call.
_FAST_CLASSES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int,)}


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
        if kind in TEXT_TYPES or kind == "lead":
            return self._string(column)
        if kind == "double":
            return self._number(column)
        if kind in ("int", *REFERENCE_TYPES):
            return self._integer(column)
        if kind in REFERENCE_LIST_TYPES:
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
        parts = tuple(TYPE_SCHEMAS[kind]["properties"])
        part_converters: dict[str, Converter] = {}
        for part, part_schema in TYPE_SCHEMAS[kind]["properties"].items():
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
V1_PARTS: dict[str, tuple[str, ...]] = {
    "monetary": ("currency",),
    "daterange": ("until",),
    "time": ("timezone_id", "timezone_name"),
    "timerange": ("until", "timezone_id", "timezone_name"),
    "address": ADDRESS_PARTS[1:],
}
