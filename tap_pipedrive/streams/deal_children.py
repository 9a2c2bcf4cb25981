"""What hangs off a deal: products, installments, followers, participants, change history.

Every stream here reads only the deals (open, won, lost and archived) created or updated
since its own bookmark. Products and installments take up to 100 deals per request; the
others cost one request per deal, so the first sync of a large account is the expensive one.
"""

from __future__ import annotations

from tap_pipedrive.streams.base import PipedriveStream, V1Stream
from tap_pipedrive.streams.bases import (
    ChangedParentsStream,
    ChangelogStream,
    FlowStream,
    ParentSource,
)

# Deals as the deals stream lists them, minus deleted ones (their children are gone).
# Their rows carry the counts that let a child stream skip deals with nothing to read.
DEAL_COUNTS = ("followers_count", "participants_count", "products_count")
CHANGED_DEALS = (
    ParentSource("/deals", counts=DEAL_COUNTS),
    ParentSource("/deals/archived", counts=DEAL_COUNTS),
)
# /deals/products and /deals/installments accept at most 100 deal ids per request.
MAX_DEAL_IDS = 100


class DealChildStream(ChangedParentsStream):
    parent_sources = CHANGED_DEALS
    parent_key = "deal_id"
    replication_key = "deal_update_time"


class DealProductsStream(DealChildStream):
    name = "deal_products"
    path = "/deals/products"
    parents_per_request = MAX_DEAL_IDS
    parent_count = "products_count"


class DealInstallmentsStream(DealChildStream):
    name = "deal_installments"
    path = "/deals/installments"
    parents_per_request = MAX_DEAL_IDS


class DealFollowersStream(DealChildStream):
    name = "deal_followers"
    path = "/deals/{id}/followers"
    primary_keys = ("deal_id", "user_id")
    parent_count = "followers_count"
    skip_unchanged_counts = True


class DealParticipantsStream(DealChildStream, V1Stream):
    name = "deal_participants"
    path = "/deals/{id}/participants"
    parent_count = "participants_count"
    skip_unchanged_counts = True


class DealChangelogStream(DealChildStream, ChangelogStream):
    """Field-value history of each changed deal."""

    name = "deal_changelog"
    path = "/deals/{id}/changelog"
    primary_keys = ("deal_id", "field_key", "time")


class DealFlowStream(DealChildStream, FlowStream, V1Stream):
    name = "deal_flow"
    path = "/deals/{id}/flow"
    primary_keys = ("deal_id", "object", "id")


DEAL_CHILD_STREAMS: tuple[type[PipedriveStream], ...] = (
    DealProductsStream,
    DealInstallmentsStream,
    DealFollowersStream,
    DealParticipantsStream,
    DealChangelogStream,
    DealFlowStream,
)
