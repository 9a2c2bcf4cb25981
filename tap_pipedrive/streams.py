"""Stream declarations: one class per Pipedrive entity, saying only what differs."""

from __future__ import annotations

import typing as t

from tap_pipedrive.client import PipedriveStream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

_COUNTS = (
    "activities_count",
    "done_activities_count",
    "undone_activities_count",
    "email_messages_count",
    "files_count",
    "notes_count",
    "followers_count",
)
_ACTIVITY_LINKS = ("next_activity_id", "last_activity_id")
_MAIL_TIMES = ("last_incoming_mail_time", "last_outgoing_mail_time")
_DEAL_COUNTS = (
    "open_deals_count",
    "related_open_deals_count",
    "closed_deals_count",
    "related_closed_deals_count",
    "won_deals_count",
    "related_won_deals_count",
    "lost_deals_count",
    "related_lost_deals_count",
)


class V1Stream(PipedriveStream):
    """An API v1 endpoint (offset paging, or a single page)."""

    api_version = "v1"


class IncrementalV2Stream(PipedriveStream):
    """A v2 list that filters on ``updated_since`` and sorts by ``update_time``."""

    replication_key = "update_time"
    updated_since_param = "updated_since"
    sort_params: t.ClassVar[dict[str, str]] = {"sort_by": "update_time", "sort_direction": "asc"}


class ArchivableMixin(PipedriveStream):
    """Entities whose archived rows live behind a second endpoint with the same shape.

    Since 2025-07-15 Pipedrive's normal lists leave archived rows out. Both lists
    feed one stream; each is a partition with its own bookmark.
    """

    archived_path: t.ClassVar[str]

    @property
    def partitions(self) -> list[dict] | None:
        return [{"archived": False}, {"archived": True}]

    def get_url(self, context: Context | None) -> str:
        if context and context.get("archived"):
            return f"{self.url_base}{self.archived_path}"
        return super().get_url(context)

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        row.setdefault("is_archived", bool(context and context.get("archived")))
        return super().post_process(row, context)


class DealsStream(ArchivableMixin, IncrementalV2Stream):
    name = "deals"
    path = "/deals"
    archived_path = "/deals/archived"
    # Without an explicit status Pipedrive hides deals deleted in the last 30 days.
    extra_params: t.ClassVar[dict[str, str]] = {"status": "open,won,lost,deleted"}
    include_fields = (
        *_ACTIVITY_LINKS,
        "first_won_time",
        "products_count",
        *_COUNTS,
        "participants_count",
        *_MAIL_TIMES,
        "smart_bcc_email",
        "source_lead_id",
    )


class PersonsStream(IncrementalV2Stream):
    name = "persons"
    path = "/persons"
    include_fields = (
        *_ACTIVITY_LINKS,
        *_DEAL_COUNTS,
        "participant_open_deals_count",
        "participant_closed_deals_count",
        *_COUNTS,
        *_MAIL_TIMES,
        "marketing_status",
        "doi_status",
        "smart_bcc_email",
    )


class OrganizationsStream(IncrementalV2Stream):
    name = "organizations"
    path = "/organizations"
    include_fields = (*_ACTIVITY_LINKS, *_DEAL_COUNTS, "people_count", *_COUNTS, "smart_bcc_email")


class ActivitiesStream(IncrementalV2Stream):
    name = "activities"
    path = "/activities"
    include_fields = ("attendees",)


class ProductsStream(IncrementalV2Stream):
    name = "products"
    path = "/products"


class PipelinesStream(PipedriveStream):
    name = "pipelines"
    path = "/pipelines"


class StagesStream(PipedriveStream):
    name = "stages"
    path = "/stages"


class UsersStream(V1Stream):
    name = "users"
    paged = False
    path = "/users"


class CurrenciesStream(V1Stream):
    name = "currencies"
    paged = False
    path = "/currencies"


class ActivityTypesStream(V1Stream):
    name = "activity_types"
    paged = False
    path = "/activityTypes"


STREAM_TYPES: tuple[type[PipedriveStream], ...] = (
    DealsStream,
    PersonsStream,
    OrganizationsStream,
    ActivitiesStream,
    ProductsStream,
    PipelinesStream,
    StagesStream,
    UsersStream,
    CurrenciesStream,
    ActivityTypesStream,
)
