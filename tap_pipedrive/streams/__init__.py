"""All streams of the tap, grouped by domain in the modules of this package."""

from __future__ import annotations

import typing as t

from tap_pipedrive.streams.config import CONFIG_STREAMS
from tap_pipedrive.streams.core import CORE_STREAMS
from tap_pipedrive.streams.custom_fields import CustomFieldsStream
from tap_pipedrive.streams.deal_children import DEAL_CHILD_STREAMS
from tap_pipedrive.streams.fields import FIELD_STREAMS
from tap_pipedrive.streams.followers import FOLLOWER_STREAMS
from tap_pipedrive.streams.leads import LEAD_STREAMS
from tap_pipedrive.streams.mail import MAIL_CHILD_STREAMS, MAIL_STREAMS
from tap_pipedrive.streams.notes import NOTE_CHILD_STREAMS, NOTE_STREAMS
from tap_pipedrive.streams.projects import PROJECT_STREAMS

if t.TYPE_CHECKING:
    from tap_pipedrive.streams.base import PipedriveStream

STREAM_TYPES: tuple[type[PipedriveStream], ...] = (
    *CORE_STREAMS,
    *LEAD_STREAMS,
    *NOTE_STREAMS,
    *MAIL_STREAMS,
    *PROJECT_STREAMS,
    *CONFIG_STREAMS,
    *FIELD_STREAMS,
    CustomFieldsStream,
    # Streams that cost a request per changed parent come last, so that a spent daily
    # budget stops the sync after everything cheaper has been read.
    *DEAL_CHILD_STREAMS,
    *FOLLOWER_STREAMS,
    *NOTE_CHILD_STREAMS,
    *MAIL_CHILD_STREAMS,
)
