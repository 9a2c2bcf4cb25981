"""The core CRM entities: deals, persons, organizations, activities, products, pipelines,
stages, users, currencies and activity types."""

from __future__ import annotations

import typing as t

from typing_extensions import override

from tap_pipedrive.streams.base import (
    ArchivableMixin,
    IncrementalV2Stream,
    PipedriveStream,
    V1Stream,
)

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


class DealsStream(ArchivableMixin, IncrementalV2Stream):
    name = "deals"
    path = "/deals"
    custom_fields_entity = "deal"
    archived_path = "/deals/archived"
    # Without an explicit status Pipedrive hides deals deleted in the last 30 days.
    extra_params: t.ClassVar[dict[str, str]] = {"status": "open,won,lost,deleted"}
    lists_deleted_rows = True
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
    custom_fields_entity = "person"
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
    custom_fields_entity = "organization"
    include_fields = (*_ACTIVITY_LINKS, *_DEAL_COUNTS, "people_count", *_COUNTS, "smart_bcc_email")


class ActivitiesStream(IncrementalV2Stream):
    name = "activities"
    path = "/activities"
    custom_fields_entity = "activity"
    include_fields = ("attendees",)


class ProductsStream(IncrementalV2Stream):
    name = "products"
    path = "/products"
    custom_fields_entity = "product"


class PipelinesStream(PipedriveStream):
    name = "pipelines"
    path = "/pipelines"


class StagesStream(PipedriveStream):
    name = "stages"
    path = "/stages"


class UsersStream(V1Stream):
    """The company's users; their active ones are the seats of the daily token budget."""

    name = "users"
    paged = False
    path = "/users"

    @override
    def request_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        # Counted as the rows pass: the budget estimate needs no read of its own.
        seats = 0
        for row in super().request_records(context):
            seats += row.get("active_flag") is True
            yield row
        # Refused (no access to users): one seat, the smallest budget the plan allows.
        self.run.budget.set_seats(seats if not self.refused else 0)


class CurrenciesStream(V1Stream):
    name = "currencies"
    paged = False
    path = "/currencies"


class ActivityTypesStream(V1Stream):
    name = "activity_types"
    paged = False
    path = "/activityTypes"


CORE_STREAMS: tuple[type[PipedriveStream], ...] = (
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
