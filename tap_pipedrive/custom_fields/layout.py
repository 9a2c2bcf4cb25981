"""The custom columns of one stream, and the moments the tap reads field definitions.

* ``CustomFieldLayout`` (one per stream): the merged schema, the column names and a
  converter per field, built once, so the per-record work is a dictionary walk.
* ``CustomFieldSchema``: the stream's ``schema``: its JSON file plus the custom columns of
  its ``custom_fields_entity``. It reads the loaded catalogue only, never the API.
* ``prepare_discovery`` and ``prepare_sync``: the tap's two calls that load the catalogue
  (the only requests for field definitions), before any schema is read.
"""

from __future__ import annotations

import logging
import typing as t
from dataclasses import dataclass
from functools import cached_property

from singer_sdk import StreamSchema
from typing_extensions import override

from tap_pipedrive.custom_fields.conversion import V1_PARTS, Converter, ConverterFactory
from tap_pipedrive.custom_fields.naming import (
    CONTAINER,
    NAMING_MODES,
    column_names,
    record_field_keys,
    recorded_columns,
)
from tap_pipedrive.custom_fields.schema import LOCATIONS, merged_schema, property_schema
from tap_pipedrive.errors import ConfigError
from tap_pipedrive.sdk_private import input_schema, tap_of

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from singer_sdk.singerlib import Catalog
    from singer_sdk.streams import Stream

    from tap_pipedrive.custom_fields.definitions import FieldCatalog, FieldDefinition
    from tap_pipedrive.normalize import CoercionLog


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


_MISSING = object()


@dataclass(frozen=True)
class _Column:
    key: str
    name: str
    convert: Converter
    v1_parts: tuple[tuple[str, str], ...]  # (part, flat record key) for v1 composites


class CustomFieldLayout:
    """The custom columns of one stream: its schema and its record transformation.

    ``catalog_schema`` and ``catalog_metadata`` are the stream's entry in the catalog a
    sync was given: its columns limit the custom columns, and the field keys its metadata
    records pin their names (a label renamed since discovery keeps its catalog column).
    """

    def __init__(
        self,
        *,
        stream_name: str,
        static_schema: dict[str, t.Any],
        fields: tuple[FieldDefinition, ...],
        config: Mapping[str, t.Any],
        record_format: str,
        coercions: CoercionLog,
        logger: logging.Logger | logging.LoggerAdapter[t.Any],
        catalog_schema: dict[str, t.Any] | None = None,
        catalog_metadata: Mapping[tuple[str, ...], t.Any] | None = None,
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
        pinned = recorded_columns(catalog_metadata or {}, self.nested)
        in_catalog = _catalog_columns(catalog_schema, self.nested)
        self.names = column_names(fields, reserved, self.naming, pinned)
        self.properties = {
            self.names[field.key]: property_schema(field, self.option_labels) for field in fields
        }
        self.schema = merged_schema(static_schema, static_properties, self.properties, self.nested)
        factory = ConverterFactory(coercions, self.option_labels)
        self._columns: dict[str, _Column] = {}
        skipped = []
        for field in fields:
            name = self.names[field.key]
            if in_catalog is not None and name not in in_catalog:
                skipped.append(field)
                continue
            parts = V1_PARTS.get(field.field_type, ()) if record_format == "v1" else ()
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
        self.apply: Callable[[dict[str, t.Any]], None] = (
            self._apply_v2 if record_format == "v2" else self._apply_v1
        )

    def record_keys(self, metadata: dict[tuple[str, ...], t.Any]) -> None:
        """Write each custom column's field key into the stream's catalog metadata."""
        record_field_keys(metadata, self.names, self.nested)

    @cached_property
    def _by_key(self) -> dict[str, tuple[str, Converter]]:
        # Plain tuples: the per-value lookup in v2 records is the hot path.
        return {key: (column.name, column.convert) for key, column in self._columns.items()}

    def _apply_v2(self, row: dict[str, t.Any]) -> None:
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

    def _apply_v1(self, row: dict[str, t.Any]) -> None:
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


def _catalog_columns(catalog_schema: dict[str, t.Any] | None, nested: bool) -> set[str] | None:
    """All property names at the custom columns' level of a catalog's schema (None: no catalog).

    A sync given a catalog writes only columns that catalog (and so the target) has.
    """
    if catalog_schema is None:
        return None
    properties = catalog_schema.get("properties") or {}
    if nested:
        properties = (properties.get(CONTAINER) or {}).get("properties") or {}
    return set(properties)


# --- hook for streams -------------------------------------------------------------------------


class CustomFieldSchema(StreamSchema):
    """A stream's schema from its JSON file, plus its custom fields when it declares a field set.

    Streams set ``custom_fields_entity`` (``"deal"``, ``"person"`` ...); the field
    definitions come from the tap's catalogue, loaded before any schema is read.
    """

    @override
    def get_stream_schema(self, stream: t.Any, stream_class: t.Any) -> t.Any:
        static = super().get_stream_schema(stream, stream_class)
        if _field_set(stream) is None:
            return static
        return layout_for(stream, static).schema


class _FieldCatalogOwner(t.Protocol):
    """The tap, as the layouts see it: the owner of the run's field catalogue."""

    custom_field_catalog: FieldCatalog


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
    entity = t.cast("str", _field_set(stream))
    catalog = t.cast("_FieldCatalogOwner", tap_of(stream)).custom_field_catalog
    # The stream's entry in the catalog a sync was given (see sdk_private.input_schema).
    catalog_schema = input_schema(stream)
    layout = CustomFieldLayout(
        stream_name=stream.name,
        static_schema=static_schema,
        fields=catalog.definitions(entity),
        config=stream.config,
        record_format=getattr(stream, "custom_fields_format", None)
        or ("v2" if getattr(stream, "api_version", "v2") == "v2" else "v1"),
        coercions=stream.coercions,  # type: ignore[attr-defined]
        logger=stream.logger,
        catalog_schema=catalog_schema,
        # With a catalog entry, the metadata is that entry's (not built from the schema).
        catalog_metadata=stream.metadata if catalog_schema is not None else None,
    )
    stream.__dict__[_LAYOUT_ATTRIBUTE] = layout
    return layout


_LAYOUT_ATTRIBUTE = "_custom_field_layout"


# --- when the tap reads the field definitions -------------------------------------------------


def prepare_discovery(streams: Iterable[Stream], catalog: FieldCatalog) -> None:
    """Discovery: read the field sets of every stream, and record each column's key.

    The keys go into each stream's catalog metadata, so the catalog carries them.
    """
    with_fields = [stream for stream in streams if _field_set(stream) is not None]
    if not with_fields:
        return
    settings(with_fields[0].config)  # before any request
    catalog.load(t.cast("str", _field_set(stream)) for stream in with_fields)
    for stream in with_fields:
        layout_for(stream).record_keys(stream.metadata)


def prepare_sync(
    streams: Sequence[Stream], catalog: FieldCatalog, input_catalog: Catalog | None
) -> None:
    """The start of a sync: read the field sets of the streams whose schemas it needs.

    Those are the synced streams (selected, or the parent of a selected stream) and the
    streams the input catalog lacks (the SDK builds their metadata from their schema).
    The ``custom_fields`` stream lists every stream's fields. Without an input catalog
    the run discovers, and needs them all.
    """
    with_fields = [stream for stream in streams if _field_set(stream) is not None]
    if not with_fields:
        return
    settings(with_fields[0].config)  # before any request
    if input_catalog is not None and not any(
        getattr(stream, "lists_every_field_set", False) and stream.selected for stream in streams
    ):
        with_fields = [
            stream
            for stream in with_fields
            if input_catalog.get_stream(stream.tap_stream_id) is None
            or stream.selected
            or stream.has_selected_descendents
        ]
    catalog.load(t.cast("str", _field_set(stream)) for stream in with_fields)


def _field_set(stream: Stream) -> str | None:
    return getattr(stream, "custom_fields_entity", None)
