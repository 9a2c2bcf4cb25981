"""The ``hostile`` fault: records altered the way real, messy API data can be."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LONG_STRING_SIZE = 1024 * 1024
NASTY_TEXT = "nul\u0000inside \U0001d518\U0001d52b\U0001d526 \U0001f600 \U00010348 end"
TEXT_FIELDS = ("title", "name", "subject", "content", "file_name", "field_name", "note")


@dataclass
class HostileContext:
    modes: set[str]


def _zero_dates(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _zero_dates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_zero_dates(item) for item in value]
    if isinstance(value, str):
        if _DATETIME.match(value):
            return "0000-00-00 00:00:00"
        if _DATE.match(value):
            return "0000-00-00"
    return value


def _text_field(record: dict[str, Any]) -> str | None:
    for name in TEXT_FIELDS:
        if isinstance(record.get(name), str):
            return name
    for name, value in record.items():
        if isinstance(value, str):
            return name
    return None


def apply_hostile(
    records: list[dict[str, Any]], previous: dict[str, Any] | None, ctx: HostileContext
) -> list[dict[str, Any]]:
    modes = ctx.modes
    result = [dict(record) for record in records]
    if "zero_dates" in modes:
        result = [_zero_dates(record) for record in result]
    if "null_objects" in modes:
        for record in result:
            for key, value in list(record.items()):
                if isinstance(value, dict) or (
                    isinstance(value, list) and value and isinstance(value[0], dict)
                ):
                    record[key] = None
    if "unknown_fields" in modes:
        for index, record in enumerate(result):
            record["sandbox_unknown_field"] = {"nested": [1, "two", None]}
            record["sandbox_unknown_number"] = index * 1.5
            if isinstance(record.get("custom_fields"), dict):
                record["custom_fields"] = {
                    **record["custom_fields"],
                    "ffffffffffffffffffffffffffffffffffffffff": "field not in *Fields",
                }
    if "long_strings" in modes and result:
        name = _text_field(result[0])
        if name is not None:
            result[0][name] = "L" * LONG_STRING_SIZE
    if "nul_chars" in modes:
        for record in result:
            name = _text_field(record)
            if name is not None:
                record[name] = NASTY_TEXT
    if "duplicate_ids" in modes and result:
        if previous is not None:
            result.insert(0, dict(previous))
        else:
            result.append(dict(result[0]))
    return result
