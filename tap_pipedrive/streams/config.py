"""Company configuration: filters, goals, roles, permission sets and webhooks (API v1).

Roles, permission sets and their assignments mostly need the ``admin`` scope; without it
those streams are skipped with a warning.
"""

from __future__ import annotations

import typing as t

from typing_extensions import override

from tap_pipedrive.http.paging import PaginatorFactory, UntilEmptyOffsetPaginator
from tap_pipedrive.streams.base import PipedriveStream, V1Stream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_pipedrive.http.pages import Page


class FiltersStream(V1Stream):
    name = "filters"
    path = "/filters"
    paged = False


class GoalsStream(V1Stream):
    """Active and inactive goals: ``/goals/find`` returns only active ones unless asked."""

    name = "goals"
    path = "/goals/find"
    paged = False
    state_partitioning_keys: t.ClassVar[tuple[str, ...]] = ()

    @override
    @property
    def partitions(self) -> list[dict[str, t.Any]] | None:
        return [{"is_active": "true"}, {"is_active": "false"}]

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        params = super().get_url_params(context, next_page_token)
        params["is_active"] = (context or {})["is_active"]
        return params

    @override
    def parse_page(self, page: Page) -> t.Iterable[dict[str, t.Any]]:
        # The rows are one level down: {"data": {"goals": [...]}}.
        data = page.data() or {}
        goals = data.get("goals") if isinstance(data, dict) else data
        yield from page.rows(goals)


class RolesStream(V1Stream):
    name = "roles"
    path = "/roles"

    @override
    def get_child_context(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Context | None:
        return {"id": record["id"]}


class RoleAssignmentsStream(V1Stream):
    """The users of every role (one request per role; roles are few)."""

    name = "role_assignments"
    path = "/roles/{id}/assignments"
    parent_stream_type = RolesStream
    primary_keys = ("role_id", "user_id")
    # One state entry for the stream, not one per role.
    state_partitioning_keys: t.ClassVar[tuple[str, ...]] = ()

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        if row.get("role_id") is None:
            row["role_id"] = (context or {}).get("id")
        return super().post_process(row, context)


class PermissionSetsStream(V1Stream):
    name = "permission_sets"
    path = "/permissionSets"
    paged = False

    @override
    def get_child_context(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Context | None:
        return {"id": record["id"]}


class PermissionSetAssignmentsStream(V1Stream):
    """The users of every permission set (one request per set; sets are few)."""

    name = "permission_set_assignments"
    path = "/permissionSets/{id}/assignments"
    parent_stream_type = PermissionSetsStream
    primary_keys = ("permission_set_id", "user_id")
    state_partitioning_keys: t.ClassVar[tuple[str, ...]] = ()

    @override
    def paginator_type(self) -> PaginatorFactory:
        return UntilEmptyOffsetPaginator

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        if row.get("permission_set_id") is None:
            row["permission_set_id"] = (context or {}).get("id")
        return super().post_process(row, context)


class WebhooksStream(V1Stream):
    name = "webhooks"
    path = "/webhooks"
    paged = False

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        # The basic-auth password Pipedrive sends with each webhook is a secret of the
        # account: it never leaves the tap, whatever the catalog says.
        row.pop("http_auth_password", None)
        return super().post_process(row, context)


CONFIG_STREAMS: tuple[type[PipedriveStream], ...] = (
    FiltersStream,
    GoalsStream,
    RolesStream,
    RoleAssignmentsStream,
    PermissionSetsStream,
    PermissionSetAssignmentsStream,
    WebhooksStream,
)
