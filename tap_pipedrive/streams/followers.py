"""Children of persons, organizations and products: followers, relationships, variations,
and the updates feeds of persons and organizations.

Like the deal children, each stream reads only the parents created or updated since its own
bookmark, one request per parent.
"""

from __future__ import annotations

import typing as t
from functools import cached_property

from typing_extensions import override

from tap_pipedrive.streams.base import PipedriveStream, V1Stream
from tap_pipedrive.streams.bases import (
    ChangedParentsStream,
    ChangelogStream,
    FlowStream,
    ParentSource,
)

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context


# The same source object for every child of an entity, so they share one read of it.
PERSONS = ParentSource("/persons", counts=("followers_count",))
ORGANIZATIONS = ParentSource("/organizations", counts=("followers_count",))
PRODUCTS = ParentSource("/products")

_FLAG_TEXT = {"true": True, "1": True, "false": False, "0": False}


class PersonFollowersStream(ChangedParentsStream):
    name = "person_followers"
    path = "/persons/{id}/followers"
    primary_keys = ("person_id", "user_id")
    parent_count = "followers_count"
    skip_unchanged_counts = True
    parent_sources = (PERSONS,)
    parent_key = "person_id"
    replication_key = "person_update_time"


class OrganizationFollowersStream(ChangedParentsStream):
    name = "organization_followers"
    path = "/organizations/{id}/followers"
    primary_keys = ("organization_id", "user_id")
    parent_count = "followers_count"
    skip_unchanged_counts = True
    parent_sources = (ORGANIZATIONS,)
    parent_key = "organization_id"
    replication_key = "organization_update_time"


class ProductFollowersStream(ChangedParentsStream):
    name = "product_followers"
    path = "/products/{id}/followers"
    primary_keys = ("product_id", "user_id")
    parent_sources = (PRODUCTS,)
    parent_key = "product_id"
    replication_key = "product_update_time"


class ProductVariationsStream(ChangedParentsStream):
    name = "product_variations"
    path = "/products/{id}/variations"
    parent_sources = (PRODUCTS,)
    parent_key = "product_id"
    replication_key = "product_update_time"


class OrganizationRelationshipsStream(ChangedParentsStream, V1Stream):
    """Relationships of each changed organization (``org_id`` is required, one per request).

    A relationship links two organizations and is listed under both: its rows share the id.
    """

    name = "organization_relationships"
    path = "/organizationRelationships"
    paged = False
    parent_sources = (ORGANIZATIONS,)
    parent_id_param = "org_id"
    replication_key = "organization_update_time"

    @cached_property
    def _emitted_ids(self) -> set[t.Any]:
        return set()

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        # Each relationship once per run, although both of its organizations list it.
        if row.get("id") in self._emitted_ids:
            return None
        self._emitted_ids.add(row.get("id"))
        flag = row.get("active_flag")
        if isinstance(flag, str):
            # Sent as "true"/"false"; a string would pass for true either way.
            row["active_flag"] = _FLAG_TEXT.get(flag.strip().lower())
        return super().post_process(row, context)


class PersonChangelogStream(ChangelogStream):
    """Field-value history of each changed person (20 tokens a person)."""

    name = "person_changelog"
    path = "/persons/{id}/changelog"
    primary_keys = ("person_id", "field_key", "time")
    parent_sources = (PERSONS,)
    parent_key = "person_id"
    replication_key = "person_update_time"


class OrganizationChangelogStream(ChangelogStream):
    """Field-value history of each changed organization (20 tokens an organization)."""

    name = "organization_changelog"
    path = "/organizations/{id}/changelog"
    primary_keys = ("organization_id", "field_key", "time")
    parent_sources = (ORGANIZATIONS,)
    parent_key = "organization_id"
    replication_key = "organization_update_time"


class PersonFlowStream(FlowStream, V1Stream):
    """The updates feed of each changed person (40 tokens a person)."""

    name = "person_flow"
    path = "/persons/{id}/flow"
    primary_keys = ("person_id", "object", "id")
    parent_sources = (PERSONS,)
    parent_key = "person_id"
    replication_key = "person_update_time"


class OrganizationFlowStream(FlowStream, V1Stream):
    """The updates feed of each changed organization (40 tokens an organization)."""

    name = "organization_flow"
    path = "/organizations/{id}/flow"
    primary_keys = ("organization_id", "object", "id")
    parent_sources = (ORGANIZATIONS,)
    parent_key = "organization_id"
    replication_key = "organization_update_time"


FOLLOWER_STREAMS: tuple[type[PipedriveStream], ...] = (
    PersonFollowersStream,
    OrganizationFollowersStream,
    ProductFollowersStream,
    ProductVariationsStream,
    OrganizationRelationshipsStream,
    PersonChangelogStream,
    OrganizationChangelogStream,
    PersonFlowStream,
    OrganizationFlowStream,
)
