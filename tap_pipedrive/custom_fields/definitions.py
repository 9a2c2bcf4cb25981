"""Where custom fields are defined, and the definitions one run has read.

* ``FIELD_SOURCES``: the one description of each field set's ``*Fields`` endpoint. The
  catalogue reads it, and the ``*_fields`` streams (``streams/fields.py``) take their
  path, API version and optional parts from it.
* ``FieldDefinition``: one custom field, from either API version's item shape.
* ``FieldCatalog``: the items of each field set, read once per run when the tap loads
  them (at discovery, and at the start of a sync). Reading a schema only looks here.
"""

from __future__ import annotations

import logging
import threading
import typing as t
from dataclasses import dataclass

from tap_pipedrive.errors import (
    CredentialsRejected,
    DailyBudgetExhausted,
    PipedriveAPIError,
    ServerUnreachable,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


@dataclass(frozen=True)
class FieldSource:
    """Where a field set's definitions are read from."""

    entity: str
    version: str
    path: str
    paged: bool = True
    # Optional parts of the v2 items (free of charge; the allowed values differ per
    # endpoint): asked for so that the items are complete for the ``*_fields`` streams.
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

# Reads every item of one ``*Fields`` endpoint (all pages); raises FieldDefinitionsRefused
# on a refusal (402/403). The tap supplies it, so this layer makes no request of its own.
ReadDefinitions = t.Callable[[FieldSource], list[dict[str, t.Any]]]


class FieldDefinitionsError(PipedriveAPIError):
    """A ``*Fields`` endpoint could not be read; the run stops rather than drop columns."""


class FieldDefinitionsRefused(FieldDefinitionsError):
    """The token's scopes or the plan do not allow a ``*Fields`` endpoint (402/403)."""


class FieldSetNotLoaded(RuntimeError):
    """A field set was needed before the tap loaded it: a missing ``FieldCatalog.load``."""


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


# --- the per-run catalogue --------------------------------------------------------------------


class FieldCatalog:
    """The ``*Fields`` items of each field set, read at most once per tap instance.

    ``load`` is the only method that makes requests (through ``read_definitions``, which
    shares the tap's session, authenticator, rate limiter and error handling); the tap
    calls it before any schema is read. Everything else reads what was loaded.
    """

    def __init__(self, read_definitions: ReadDefinitions) -> None:
        self._read_definitions = read_definitions
        self._items: dict[str, list[dict[str, t.Any]]] = {}
        self._definitions: dict[str, tuple[FieldDefinition, ...]] = {}
        self._lock = threading.Lock()
        # Field sets read from their fallback endpoint, whose items have the other shape.
        self.fallback_used: set[str] = set()

    def load(self, entities: Iterable[str]) -> None:
        """Read each field set not read yet, in the order given."""
        for entity in entities:
            source = _source(entity)
            with self._lock:
                if entity not in self._items:
                    self._items[entity] = self._read(source)

    def loaded(self, entity: str) -> bool:
        return entity in self._items

    def items(self, entity: str) -> list[dict[str, t.Any]]:
        """The raw ``*Fields`` items of a loaded field set (built-in and custom fields)."""
        _source(entity)
        try:
            return self._items[entity]
        except KeyError:
            msg = f"The {entity} custom field definitions were needed before they were loaded"
            raise FieldSetNotLoaded(msg) from None

    def definitions(self, entity: str) -> tuple[FieldDefinition, ...]:
        """The custom fields of a loaded field set, in key order."""
        if entity not in self._definitions:
            found = (FieldDefinition.from_item(entity, item) for item in self.items(entity))
            unique = {field.key: field for field in found if field is not None}
            self._definitions[entity] = tuple(unique[key] for key in sorted(unique))
        return self._definitions[entity]

    def _read(self, source: FieldSource) -> list[dict[str, t.Any]]:
        try:
            items = self._read_definitions(source)
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


def _source(entity: str) -> FieldSource:
    source = FIELD_SOURCES.get(entity)
    if source is None:
        msg = f"Unknown custom field set {entity!r} (known: {', '.join(FIELD_SOURCES)})"
        raise ValueError(msg)
    return source


def _failure(source: FieldSource, exc: Exception) -> str:
    return (
        f"Could not read the {source.entity} custom field definitions "
        f"(GET /api/{source.version}{source.path}), so the {source.entity} columns are "
        f"unknown and the run stops: {exc}"
    )
