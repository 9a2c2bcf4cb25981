"""The ``custom_fields`` stream: every stream's custom columns, keys, labels and options.

``custom_fields`` lists, for every stream with custom columns, each field's key,
label, column name, type and options: the join table from Pipedrive's hash keys and
option ids to what the tap emits.
"""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from tap_pipedrive.custom_fields.layout import layout_for
from tap_pipedrive.custom_fields.naming import CONTAINER
from tap_pipedrive.sdk_private import tap_of
from tap_pipedrive.streams.base import PipedriveStream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context


def _schema_type(schema: dict[str, t.Any]) -> str:
    types = schema.get("type") or []
    if isinstance(types, str):
        types = [types]
    kind = next((name for name in types if name != "null"), "any")
    if schema.get("format"):
        return f"{kind} ({schema['format']})"
    if kind == "array":
        return f"array of {_schema_type(schema.get('items') or {})}"
    return str(kind)


class CustomFieldsStream(PipedriveStream):
    """One row per custom field per stream: key, label, column, type and options."""

    name = "custom_fields"
    primary_keys = ("stream", "key")
    # Its rows come from every stream's field set: a sync of it loads them all.
    lists_every_field_set = True
    schema: t.ClassVar[dict[str, t.Any]] = th.PropertiesList(  # type: ignore[misc]
        th.Property("stream", th.StringType, required=True, description="Stream carrying it"),
        th.Property("entity", th.StringType, description="Pipedrive field set, e.g. deal"),
        th.Property("key", th.StringType, required=True, description="Pipedrive field key"),
        th.Property("label", th.StringType, description="Field name shown in Pipedrive"),
        th.Property("column", th.StringType, description="Property name the tap emits"),
        th.Property(
            "column_path",
            th.StringType,
            description="Where the value sits in a record: the column, or custom_fields.<column>",
        ),
        th.Property("field_type", th.StringType, description="Pipedrive field type"),
        th.Property("column_type", th.StringType, description="JSON type of the column"),
        th.Property("description", th.StringType, description="Description set in Pipedrive"),
        th.Property(
            "options",
            th.ArrayType(
                th.ObjectType(
                    th.Property("id", th.IntegerType),
                    th.Property("label", th.StringType),
                    th.Property("deleted", th.BooleanType),
                )
            ),
            description="Options of enum and set fields (deleted ones, where Pipedrive lists them)",
        ),
    ).to_dict()

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        for stream in tap_of(self).streams.values():
            entity = getattr(stream, "custom_fields_entity", None)
            if entity is None:
                continue
            layout = layout_for(stream)
            for field in layout.fields:
                column = layout.names[field.key]
                yield {
                    "stream": stream.name,
                    "entity": entity,
                    "key": field.key,
                    "label": field.label,
                    "column": column,
                    "column_path": f"{CONTAINER}.{column}" if layout.nested else column,
                    "field_type": field.field_type,
                    "column_type": _schema_type(layout.properties[column]),
                    "description": field.description or None,
                    "options": [
                        {
                            "id": option.id if isinstance(option.id, int) else None,
                            "label": option.label,
                            "deleted": option.deleted,
                        }
                        for option in field.options
                    ]
                    or None,
                }
