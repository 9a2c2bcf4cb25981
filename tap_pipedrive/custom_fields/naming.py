"""Column names of custom fields, and the column → field key record in the catalog.

* ``column_names`` gives each field a stable snake_case column name (or its key).
* Each custom column's breadcrumb in its stream's catalog metadata carries the field's
  key (``pipedrive-field-key``): a later sync with that catalog finds every field's
  column by key, whatever the label has become since.
"""

from __future__ import annotations

import re
import typing as t
import unicodedata
from dataclasses import dataclass

from singer_sdk.singerlib import Catalog, Metadata

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from tap_pipedrive.custom_fields.definitions import FieldDefinition

NAMING_MODES = ("name", "key")
# The record property holding custom values in API v2, and in "nested" mode.
CONTAINER = "custom_fields"
# Room for a "_" plus a 16-character key suffix inside PostgreSQL's 63-byte identifiers.
MAX_NAME_LENGTH = 46
EMPTY_NAME_STEM = "custom_field"

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


# --- the column → key record in catalog metadata ----------------------------------------------

# The metadata entry, on a custom column's breadcrumb, naming the Pipedrive field key.
FIELD_KEY_METADATA = "pipedrive-field-key"


@dataclass(slots=True)
class FieldKeyMetadata(Metadata):
    """A custom column's metadata: the Singer entries, plus the field key it holds.

    The SDK writes a metadata entry's dataclass fields, dashed; ``read_catalog`` reads
    them back, which the SDK's own catalog parsing does not.
    """

    pipedrive_field_key: str | None = None


Breadcrumb = tuple[str, ...]


def column_breadcrumb(column: str, nested: bool) -> Breadcrumb:
    """Where a custom column sits in its stream's schema, as a metadata breadcrumb."""
    return ("properties", CONTAINER, "properties", column) if nested else ("properties", column)


def record_field_keys(
    metadata: dict[Breadcrumb, t.Any], names: Mapping[str, str], nested: bool
) -> None:
    """Write each column's field key into its breadcrumb's metadata (key → column in ``names``).

    The breadcrumb's Singer entries (inclusion, selection) are kept as they are.
    """
    for key, column in names.items():
        breadcrumb = column_breadcrumb(column, nested)
        entry = metadata.get(breadcrumb)
        metadata[breadcrumb] = FieldKeyMetadata(
            inclusion=entry.inclusion if entry is not None else Metadata.InclusionType.AVAILABLE,
            selected=entry.selected if entry is not None else None,
            selected_by_default=entry.selected_by_default if entry is not None else None,
            pipedrive_field_key=key,
        )


def recorded_columns(metadata: Mapping[Breadcrumb, t.Any], nested: bool) -> dict[str, str]:
    """Field key → column name, as the metadata of a stream's catalog entry records them."""
    parent = column_breadcrumb("", nested)[:-1]
    found = {}
    for breadcrumb, entry in metadata.items():
        key = getattr(entry, "pipedrive_field_key", None)
        if isinstance(key, str) and key and breadcrumb[:-1] == parent:
            found[key] = breadcrumb[-1]
    return found


def read_catalog(raw: Mapping[str, t.Any]) -> Catalog:
    """A Singer catalog, parsed by the SDK, with the field keys of the custom columns kept.

    The SDK's parser keeps only the metadata entries it knows: the field keys are put
    back on their breadcrumbs here.
    """
    catalog = Catalog.from_dict(dict(raw))
    for stream in raw.get("streams") or ():
        if not isinstance(stream, dict):
            continue
        entry = catalog.get_stream(str(stream.get("tap_stream_id")))
        if entry is None:
            continue
        for item in stream.get("metadata") or ():
            values = item.get("metadata") if isinstance(item, dict) else None
            breadcrumb = item.get("breadcrumb") if isinstance(item, dict) else None
            if (
                isinstance(values, dict)
                and isinstance(values.get(FIELD_KEY_METADATA), str)
                and isinstance(breadcrumb, list)
                and breadcrumb
            ):
                entry.metadata[tuple(breadcrumb)] = FieldKeyMetadata.from_dict(values)
    return catalog
