"""Field metadata: the ``*Fields`` endpoints, built-in and custom fields alike.

Each stream reads the endpoint that its field set's ``FieldSource`` describes
(``custom_fields/definitions.py``), the one the custom field catalogue reads too. When the
tap loaded that field set this run, the stream takes the catalogue's copy, so no endpoint
is read twice. ``read_field_definitions`` is the reader the tap gives the catalogue.
"""

from __future__ import annotations

import typing as t

from typing_extensions import override

from tap_pipedrive.custom_fields.definitions import (
    FIELD_SOURCES,
    FieldDefinitionsRefused,
    FieldSource,
)
from tap_pipedrive.errors import StreamUnavailable
from tap_pipedrive.http.client import RequestSpec
from tap_pipedrive.http.paging import (
    CursorPaginator,
    OffsetPaginator,
    PaginatorFactory,
    SinglePagePaginator,
)
from tap_pipedrive.sdk_private import tap_of
from tap_pipedrive.streams.base import PipedriveStream, V1Stream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_pipedrive.custom_fields.definitions import FieldCatalog
    from tap_pipedrive.run import Run


class FieldsStream(PipedriveStream):
    """One ``*Fields`` endpoint: path, API version, paging and optional parts from its source."""

    field_source: t.ClassVar[FieldSource]

    @override
    def __init_subclass__(cls, **kwargs: t.Any) -> None:
        super().__init_subclass__(**kwargs)
        source = cls.__dict__.get("field_source")
        if source is None:
            return
        if source.version != cls.api_version:
            msg = f"{cls.__name__} reads API {cls.api_version}, its field source {source.version}"
            raise TypeError(msg)
        cls.path = source.path
        cls.paged = source.paged
        cls.include_fields = source.include_fields

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        catalog: FieldCatalog | None = getattr(tap_of(self), "custom_field_catalog", None)
        entity = self.field_source.entity
        # A field set read from its fallback endpoint has items of the other API version's
        # shape: this stream then asks its own endpoint (and is skipped if that is refused).
        if catalog is not None and catalog.loaded(entity) and entity not in catalog.fallback_used:
            # The catalogue's items are shared: hand out copies.
            yield from (dict(item) for item in catalog.items(entity))
            return
        yield from super().get_records(context)


class V2FieldsStream(FieldsStream):
    primary_keys = ("field_code",)

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        options = row.get("options")
        if isinstance(options, list):
            row["options"] = [_option(option) for option in options]
        return super().post_process(row, context)


def _option(option: t.Any) -> t.Any:
    """Option ids are integers for custom fields and strings for built-in ones: strings here."""
    if not isinstance(option, dict):
        return option
    option = dict(option)
    if option.get("id") is not None and not isinstance(option["id"], str):
        option["id"] = str(option["id"])
    return option


class V1FieldsStream(FieldsStream, V1Stream):
    primary_keys = ("key",)


class DealFieldsStream(V2FieldsStream):
    name = "deal_fields"
    field_source = FIELD_SOURCES["deal"]


class PersonFieldsStream(V2FieldsStream):
    name = "person_fields"
    field_source = FIELD_SOURCES["person"]


class OrganizationFieldsStream(V2FieldsStream):
    name = "organization_fields"
    field_source = FIELD_SOURCES["organization"]


class ProductFieldsStream(V2FieldsStream):
    name = "product_fields"
    field_source = FIELD_SOURCES["product"]


class ActivityFieldsStream(V2FieldsStream):
    """v2 ``/activityFields`` accepts only the ``admin`` scope."""

    name = "activity_fields"
    field_source = FIELD_SOURCES["activity"]


class ProjectFieldsStream(V2FieldsStream):
    name = "project_fields"
    field_source = FIELD_SOURCES["project"]


class NoteFieldsStream(V1FieldsStream):
    name = "note_fields"
    field_source = FIELD_SOURCES["note"]


class LeadFieldsStream(V1FieldsStream):
    name = "lead_fields"
    field_source = FIELD_SOURCES["lead"]


FIELD_STREAMS: tuple[type[FieldsStream], ...] = (
    DealFieldsStream,
    PersonFieldsStream,
    OrganizationFieldsStream,
    ProductFieldsStream,
    ActivityFieldsStream,
    ProjectFieldsStream,
    NoteFieldsStream,
    LeadFieldsStream,
)


# --- the catalogue's reader -------------------------------------------------------------------


def read_field_definitions(run: Run, source: FieldSource, page_size: int) -> list[dict[str, t.Any]]:
    """Every item of one ``*Fields`` endpoint, all pages, through the run's client.

    The catalogue's reader. A refusal (402/403) is an error here, not a skipped stream:
    without the definitions the entity's columns would silently go missing.
    """
    client = run.client
    params = {"limit": str(page_size)} if source.paged else {}
    if source.include_fields:
        params["include_fields"] = ",".join(source.include_fields)
    paginator: PaginatorFactory = SinglePagePaginator
    if source.paged:
        paginator = CursorPaginator if source.version == "v2" else OffsetPaginator
    spec = RequestSpec(
        stream=f"{source.entity}_field_definitions",
        url=client.url(source.version, source.path),
        params=tuple(params.items()),
        paginator=paginator,
    )
    rows: list[dict[str, t.Any]] = []
    try:
        for page in client.pages(spec):
            rows.extend(page.rows())
    except StreamUnavailable as exc:
        raise FieldDefinitionsRefused(str(exc)) from None
    return rows
