"""All streams of the tap, grouped by domain in the modules of this package."""

from __future__ import annotations

import typing as t

from tap_pipedrive.streams.core import CORE_STREAMS
from tap_pipedrive.streams.custom_fields import CustomFieldsStream

if t.TYPE_CHECKING:
    from tap_pipedrive.client import PipedriveStream

STREAM_TYPES: tuple[type[PipedriveStream], ...] = (*CORE_STREAMS, CustomFieldsStream)
