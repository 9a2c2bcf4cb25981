"""Notes, their comments, and files (API v1 only)."""

from __future__ import annotations

import typing as t

from tap_pipedrive.streams.base import PipedriveStream, V1Stream
from tap_pipedrive.streams.bases import ChangedParentsStream, NewestFirstStream, ParentSource


class NotesStream(V1Stream):
    name = "notes"
    path = "/notes"
    custom_fields_entity = "note"
    replication_key = "update_time"
    updated_since_param = "updated_since"
    sort_params: t.ClassVar[dict[str, str]] = {"sort": "update_time ASC"}


class NoteCommentsStream(ChangedParentsStream, V1Stream):
    """Comments of the notes created or updated since the last run (20 tokens per note)."""

    name = "note_comments"
    path = "/notes/{id}/comments"
    primary_keys = ("uuid",)
    replication_key = "note_update_time"
    parent_key = "note_id"
    parent_sources = (ParentSource("/notes", "v1"),)


class FilesStream(NewestFirstStream, V1Stream):
    """Files sort by update time but cannot filter by it: read newest first, to the bookmark."""

    name = "files"
    path = "/files"
    max_page_size = 100


NOTE_STREAMS: tuple[type[PipedriveStream], ...] = (NotesStream, FilesStream)
NOTE_CHILD_STREAMS: tuple[type[PipedriveStream], ...] = (NoteCommentsStream,)
