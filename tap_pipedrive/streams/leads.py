"""Leads (open and archived), lead labels and lead sources (API v1 only)."""

from __future__ import annotations

import typing as t

from typing_extensions import override

from tap_pipedrive.streams.base import ArchivableMixin, PipedriveStream, V1Stream
from tap_pipedrive.streams.bases import NewestFirstStream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context


class LeadsStream(ArchivableMixin, NewestFirstStream, V1Stream):
    """Open leads filter on ``updated_since``; archived ones are read newest first.

    ``/leads/archived`` has no ``updated_since``, but it sorts: after the first sync a run
    reads it only down to the bookmark (it costs 40 tokens a page).
    """

    name = "leads"
    path = "/leads"
    archived_path = "/leads/archived"
    # Leads use the deal custom fields, flat on the record in the v1 format (/leadFields).
    custom_fields_entity = "lead"
    updated_since_param = "updated_since"
    sort_params: t.ClassVar[dict[str, str]] = {"sort": "update_time ASC"}

    @override
    def reads_newest_first(self, context: Context | None) -> bool:
        return bool(context and context.get("is_archived"))


class LeadLabelsStream(V1Stream):
    name = "lead_labels"
    path = "/leadLabels"
    paged = False


class LeadSourcesStream(V1Stream):
    name = "lead_sources"
    path = "/leadSources"
    paged = False
    primary_keys = ("name",)


LEAD_STREAMS: tuple[type[PipedriveStream], ...] = (
    LeadsStream,
    LeadLabelsStream,
    LeadSourcesStream,
)
