"""Record conformance compiled once per schema.

The SDK conforms every record by walking it against the schema (``TypeConformanceLevel``
RECURSIVE): for each property it re-reads the schema and tries a dozen conversions meant
for database sources (datetimes, bytes, Decimals, NaN). Records decoded from Pipedrive's
JSON hold only JSON types, so most of that work cannot change anything; it used to be the
largest single cost of a sync.

``Conformer`` keeps what can matter for JSON input, with the same outcome as the SDK:

- properties the schema does not declare are dropped (unless ``additionalProperties``),
  with one warning per property;
- values of properties typed only as boolean are made booleans (Pipedrive's v1 sends some
  flags as 0/1);
- both rules apply inside nested objects and arrays of objects too.

It works in place and only on the paths where one of the rules can apply.
"""

from __future__ import annotations

import logging
import typing as t

from tap_pipedrive.sdk_private import (
    is_exclusive_boolean_type,
    is_object_type,
    is_uniform_list,
)


class Conformer:
    """Conforms records of one (sub)schema in place."""

    def __init__(
        self,
        schema: dict[str, t.Any],
        # singer-sdk 0.55 hands streams a LoggerAdapter.
        logger: logging.Logger | logging.LoggerAdapter[t.Any],
        path: str = "",
    ) -> None:
        properties: dict[str, dict[str, t.Any]] = schema.get("properties") or {}
        self._logger = logger
        self._path = path
        self._allowed = frozenset(properties)
        self._keep_extra = bool(schema.get("additionalProperties"))
        self._warned: set[str] = set()
        self._booleans: list[str] = []
        self._boolean_lists: list[str] = []
        self._objects: list[tuple[str, Conformer]] = []
        self._object_lists: list[tuple[str, Conformer]] = []
        for name, prop in properties.items():
            where = f"{path}{name}"
            if is_exclusive_boolean_type(prop):
                self._booleans.append(name)
            elif is_uniform_list(prop):
                items = prop.get("items") or {}
                if is_object_type(items) and "properties" in items:
                    self._object_lists.append((name, Conformer(items, logger, f"{where}.")))
                elif is_exclusive_boolean_type(items):
                    self._boolean_lists.append(name)
            elif is_object_type(prop) and "properties" in prop:
                self._objects.append((name, Conformer(prop, logger, f"{where}.")))

    def __call__(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        if not self._keep_extra and not self._allowed.issuperset(record):
            self._drop(record, record.keys() - self._allowed)
        for name in self._booleans:
            value = record.get(name)
            if value is not None and value.__class__ is not bool:
                record[name] = value != 0
        for name in self._boolean_lists:
            values = record.get(name)
            if values.__class__ is list:
                record[name] = [v if v is None or v.__class__ is bool else v != 0 for v in values]
        for name, conform in self._objects:
            value = record.get(name)
            if value.__class__ is dict:
                conform(value)
        for name, conform in self._object_lists:
            values = record.get(name)
            if values.__class__ is list:
                for item in values:
                    if item.__class__ is dict:
                        conform(item)
        return record

    def _drop(self, record: dict[str, t.Any], extra: set[str]) -> None:
        for name in extra:
            del record[name]
        new = sorted(f"{self._path}{name}" for name in extra)
        new = [name for name in new if name not in self._warned]
        if new:
            self._warned.update(new)
            self._logger.warning(
                "Properties %s were present in the record but not in the schema; dropped.",
                new,
            )
