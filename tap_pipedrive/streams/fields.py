"""Field metadata: the ``*Fields`` endpoints, built-in and custom fields alike.

The custom-field support reads the same endpoints once per run to type the custom columns;
these streams take its copy when it has one, so no endpoint is read twice.
"""

from __future__ import annotations

import typing as t

from tap_pipedrive.errors import CredentialsRejected, DailyBudgetExhausted, PipedriveAPIError
from tap_pipedrive.streams.base import PipedriveStream, V1Stream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

_UI_PARTS = ("ui_visibility", "important_fields", "required_fields")


class FieldsStream(PipedriveStream):
    """One ``*Fields`` endpoint."""

    # Name of the field set in the tap's custom field catalog ("deal", "lead" ...).
    field_set: t.ClassVar[str]

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        catalog = getattr(self._tap, "custom_field_catalog", None)
        items = None
        # A field set read from its fallback endpoint has items of the other API
        # version's shape: this stream then asks its own endpoint (and is skipped if
        # that is refused).
        if catalog is not None and self.field_set not in catalog.fallback_used:
            try:
                items = catalog.items(self.field_set)
            except (DailyBudgetExhausted, CredentialsRejected):
                raise
            except PipedriveAPIError:
                items = None  # read it here, where a refusal only skips this stream
        if items is None:
            yield from super().get_records(context)
            return
        # The catalog's items are shared: hand out copies.
        yield from (dict(item) for item in items)


class V2FieldsStream(FieldsStream):
    primary_keys = ("field_code",)

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
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


class DealFieldsStream(V2FieldsStream):
    name = "deal_fields"
    path = "/dealFields"
    field_set = "deal"
    include_fields = _UI_PARTS


class PersonFieldsStream(V2FieldsStream):
    name = "person_fields"
    path = "/personFields"
    field_set = "person"
    include_fields = _UI_PARTS


class OrganizationFieldsStream(V2FieldsStream):
    name = "organization_fields"
    path = "/organizationFields"
    field_set = "organization"
    include_fields = _UI_PARTS


class ProductFieldsStream(V2FieldsStream):
    name = "product_fields"
    path = "/productFields"
    field_set = "product"
    include_fields = ("ui_visibility",)


class ActivityFieldsStream(V2FieldsStream):
    """v2 ``/activityFields`` accepts only the ``admin`` scope."""

    name = "activity_fields"
    path = "/activityFields"
    field_set = "activity"
    include_fields = ("ui_visibility",)


class ProjectFieldsStream(V2FieldsStream):
    name = "project_fields"
    path = "/projectFields"
    field_set = "project"


class NoteFieldsStream(FieldsStream, V1Stream):
    name = "note_fields"
    path = "/noteFields"
    field_set = "note"
    primary_keys = ("key",)
    paged = False


class LeadFieldsStream(FieldsStream, V1Stream):
    name = "lead_fields"
    path = "/leadFields"
    field_set = "lead"
    primary_keys = ("key",)


FIELD_STREAMS: tuple[type[PipedriveStream], ...] = (
    DealFieldsStream,
    PersonFieldsStream,
    OrganizationFieldsStream,
    ProductFieldsStream,
    ActivityFieldsStream,
    ProjectFieldsStream,
    NoteFieldsStream,
    LeadFieldsStream,
)
