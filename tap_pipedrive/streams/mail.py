"""Call logs, mail threads, and mail messages (the last only when the setting allows)."""

from __future__ import annotations

import typing as t

from typing_extensions import override

from tap_pipedrive.http.paging import PaginatorFactory, UntilEmptyOffsetPaginator
from tap_pipedrive.streams.base import PipedriveStream, V1Stream
from tap_pipedrive.streams.bases import (
    ChangedParentsStream,
    ParentSource,
)

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

# /mailbox/mailThreads answers one folder per request.
MAIL_FOLDERS = ("inbox", "drafts", "sent", "archive")


class CallLogsStream(V1Stream):
    name = "call_logs"
    path = "/callLogs"
    max_page_size = 50


class MailThreadsStream(V1Stream):
    """Threads of every folder; each row says which folder it was read from.

    A thread sits in more than one folder when it holds both sent and received mail; its
    rows share the id, so the last folder read wins.
    """

    name = "mail_threads"
    path = "/mailbox/mailThreads"
    # One state entry for the stream, not one per folder (there are no bookmarks).
    state_partitioning_keys: t.ClassVar[tuple[str, ...]] = ()

    @override
    @property
    def partitions(self) -> list[dict[str, t.Any]] | None:
        return [{"folder": folder} for folder in MAIL_FOLDERS]

    @override
    def paginator_type(self) -> PaginatorFactory:
        return UntilEmptyOffsetPaginator

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        params = super().get_url_params(context, next_page_token)
        params["folder"] = (context or {})["folder"]
        return params

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        row["folder"] = (context or {}).get("folder")
        return super().post_process(row, context)


class MailMessagesStream(ChangedParentsStream, V1Stream):
    """Messages of the threads updated since the last run, if ``include_mail_messages`` is on.

    Mail is personal: without the setting the stream does not exist (it is not discovered).
    """

    name = "mail_messages"
    path = "/mailbox/mailThreads/{id}/mailMessages"
    paged = False
    replication_key = "mail_thread_update_time"
    parent_key = "mail_thread_id"
    parent_sources = tuple(
        ParentSource(
            "/mailbox/mailThreads",
            "v1",
            (("folder", folder),),
            filtered=False,
            paginator=UntilEmptyOffsetPaginator,
        )
        for folder in MAIL_FOLDERS
    )

    @override
    @classmethod
    def enabled(cls, config: t.Mapping[str, t.Any]) -> bool:
        return bool(config.get("include_mail_messages"))


MAIL_STREAMS: tuple[type[PipedriveStream], ...] = (CallLogsStream, MailThreadsStream)
MAIL_CHILD_STREAMS: tuple[type[PipedriveStream], ...] = (MailMessagesStream,)
