"""Projects (open, archived and deleted), tasks, boards, phases and project templates (API v2).

None of these lists can filter by update time, so each run reads them whole; they are small
next to deals and cost 10 tokens a page.
"""

from __future__ import annotations

import typing as t

from typing_extensions import override

from tap_pipedrive.streams.base import ArchivableMixin, PipedriveStream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context


class ProjectsStream(ArchivableMixin, PipedriveStream):
    name = "projects"
    path = "/projects"
    archived_path = "/projects/archived"
    custom_fields_entity = "project"
    # Without an explicit status Pipedrive hides deleted projects.
    extra_params: t.ClassVar[dict[str, str]] = {"status": "open,completed,canceled,deleted"}
    lists_deleted_rows = True
    # One state entry for the stream, not one per list (there are no bookmarks).
    state_partitioning_keys: t.ClassVar[tuple[str, ...]] = ()


class TasksStream(PipedriveStream):
    name = "tasks"
    path = "/tasks"


class BoardsStream(PipedriveStream):
    name = "boards"
    path = "/boards"
    paged = False

    @override
    def get_child_context(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Context | None:
        return {"board_id": record["id"]}


class PhasesStream(PipedriveStream):
    """The phases of every board (``board_id`` is required; boards are few)."""

    name = "phases"
    path = "/phases"
    paged = False
    parent_stream_type = BoardsStream
    state_partitioning_keys: t.ClassVar[tuple[str, ...]] = ()

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        params = super().get_url_params(context, next_page_token)
        params["board_id"] = (context or {})["board_id"]
        return params


class ProjectTemplatesStream(PipedriveStream):
    name = "project_templates"
    path = "/projectTemplates"


PROJECT_STREAMS: tuple[type[PipedriveStream], ...] = (
    ProjectsStream,
    TasksStream,
    BoardsStream,
    PhasesStream,
    ProjectTemplatesStream,
)
