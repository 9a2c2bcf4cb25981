"""The sandbox's endpoint table: one declarative row per served list endpoint.

Adding an endpoint means appending a row here (and, when it serves a new entity, teaching
``data.py`` how to build that entity).  Token costs are the ``x-token-cost`` values of the
official specs; ``tests/test_sandbox.py`` re-checks them against the YAML when it is present.

Columns
-------
path       served path below the version root (``/api/v2`` or ``/v1`` / ``/api/v1``); ``{id}``
           is a parent record id.
version    ``"v1"`` or ``"v2"``.
entity     the dataset entity the rows come from (field items take the shape of ``version``).
paging     ``cursor`` (v2 / v1 changelog keyset cursor), ``offset`` (v1 start/limit) or ``none``.
envelope   how paging shows in ``additional_data``: ``cursor`` (``next_cursor``), ``nested``
           (``pagination`` with ``next_start``), ``nested_no_next`` (``pagination`` without it),
           ``flat`` (``start, limit, more_items_in_collection`` directly), ``none`` (nothing),
           ``object`` (``data`` is one object, not a list).
cost       tokens charged per call.
max_limit  largest page size; bigger requests are clamped.
filters    query filters honoured (names of functions in ``server.FILTERS``).
sort_by    v2 ``sort_by`` values (first one is the default).
v1_sort    fields allowed in the v1 ``sort`` parameter (``"update_time ASC, id DESC"``).
required   query parameters that must be present (400 otherwise).
view       which records of the entity are listed (see ``server.VIEWS``).
parent     entity whose id fills ``{id}`` in the path (404 when unknown).
spec_path  path in the official spec when it differs from ``path``.
data_path  keys below ``data`` that lead to the item list (``/goals/find`` nests ``goals``).
"""

from __future__ import annotations

from dataclasses import dataclass

V2_ACTIVITY_SORT = ("id", "update_time", "add_time")
LEAD_SORT = (
    "id",
    "title",
    "owner_id",
    "creator_id",
    "was_seen",
    "expected_close_date",
    "next_activity_id",
    "add_time",
    "update_time",
)
NOTE_SORT = (
    "id",
    "user_id",
    "deal_id",
    "person_id",
    "org_id",
    "content",
    "add_time",
    "update_time",
)
DEAL_FILTERS = (
    "updated_since",
    "updated_until",
    "deal_status",
    "ids",
    "owner_id",
    "person_id",
    "org_id",
    "pipeline_id",
    "stage_id",
)


@dataclass(frozen=True)
class Endpoint:
    path: str
    version: str
    entity: str
    paging: str
    envelope: str
    cost: int
    max_limit: int = 500
    filters: tuple[str, ...] = ()
    sort_by: tuple[str, ...] = ()
    v1_sort: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    view: str = "all"
    parent: str | None = None
    spec_path_override: str | None = None
    data_path: tuple[str, ...] = ()

    @property
    def spec_path(self) -> str:
        return self.spec_path_override or self.path

    @property
    def key(self) -> str:
        """Identifier used in ``shapes.json`` and in logs, e.g. ``"v2 /deals"``."""
        return f"{self.version} {self.spec_path}"


def _v2(path: str, entity: str, cost: int = 10, **kwargs: object) -> Endpoint:
    return Endpoint(path, "v2", entity, "cursor", "cursor", cost, **kwargs)  # type: ignore[arg-type]


def _v2_fields(path: str, entity: str) -> Endpoint:
    return _v2(path, entity, view="all")


def _v1(
    path: str, entity: str, paging: str, envelope: str, cost: int = 20, **kw: object
) -> Endpoint:
    return Endpoint(path, "v1", entity, paging, envelope, cost, **kw)  # type: ignore[arg-type]


ENDPOINTS: tuple[Endpoint, ...] = (
    # ---- v2 core entities -------------------------------------------------------
    _v2("/deals", "deals", filters=DEAL_FILTERS, sort_by=V2_ACTIVITY_SORT, view="not_archived"),
    _v2(
        "/deals/archived",
        "deals",
        20,
        filters=DEAL_FILTERS,
        sort_by=V2_ACTIVITY_SORT,
        view="archived",
    ),
    _v2(
        "/persons",
        "persons",
        filters=("updated_since", "updated_until", "ids", "owner_id", "org_id"),
        sort_by=V2_ACTIVITY_SORT,
        view="not_deleted",
    ),
    _v2(
        "/organizations",
        "organizations",
        filters=("updated_since", "updated_until", "ids", "owner_id"),
        sort_by=V2_ACTIVITY_SORT,
        view="not_deleted",
    ),
    _v2(
        "/activities",
        "activities",
        filters=(
            "updated_since",
            "updated_until",
            "ids",
            "owner_id",
            "deal_id",
            "person_id",
            "org_id",
            "done",
        ),
        sort_by=(*V2_ACTIVITY_SORT, "due_date"),
        view="not_deleted",
    ),
    _v2(
        "/products",
        "products",
        filters=("updated_since", "ids", "owner_id"),
        sort_by=("id", "name", "add_time", "update_time"),
        view="not_deleted",
    ),
    _v2("/pipelines", "pipelines", 5, sort_by=V2_ACTIVITY_SORT, view="not_deleted"),
    _v2(
        "/stages",
        "stages",
        5,
        filters=("pipeline_id",),
        sort_by=(*V2_ACTIVITY_SORT, "order_nr"),
        view="not_deleted",
    ),
    _v2_fields("/dealFields", "deal_fields"),
    _v2_fields("/personFields", "person_fields"),
    _v2_fields("/organizationFields", "organization_fields"),
    _v2_fields("/productFields", "product_fields"),
    _v2_fields("/activityFields", "activity_fields"),
    _v2_fields("/projectFields", "project_fields"),
    # ---- v1 basics ---------------------------------------------------------------------
    _v1("/users", "users", "none", "none"),
    _v1("/users/me", "users", "none", "object", 2, view="me"),
    _v1("/currencies", "currencies", "none", "none", filters=("term",)),
    _v1("/activityTypes", "activity_types", "none", "none"),
    _v1("/noteFields", "note_fields", "none", "none"),
    _v1("/leadFields", "lead_fields", "offset", "flat"),
    # The activity field set again, in v1 items: v2 /activityFields needs the admin scope,
    # this one activities:read. Same entity, so no stream and no count of its own.
    _v1("/activityFields", "activity_fields", "offset", "flat"),
    # ---- v1 secondary ---------------------------------------------------------------------
    _v1(
        "/leads",
        "leads",
        "offset",
        "flat",
        filters=("updated_since", "owner_id", "person_id", "organization_id"),
        v1_sort=LEAD_SORT,
        view="not_archived",
    ),
    _v1(
        "/leads/archived",
        "leads",
        "offset",
        "flat",
        40,
        filters=("owner_id", "person_id", "organization_id"),
        v1_sort=LEAD_SORT,
        view="archived",
    ),
    _v1("/leadLabels", "lead_labels", "none", "none", 10),
    _v1("/leadSources", "lead_sources", "none", "none", 2),
    _v1(
        "/notes",
        "notes",
        "offset",
        "nested",
        filters=(
            "updated_since",
            "start_date",
            "end_date",
            "user_id",
            "lead_id",
            "deal_id",
            "person_id",
            "org_id",
            "project_id",
        ),
        v1_sort=NOTE_SORT,
    ),
    _v1("/notes/{id}/comments", "note_comments", "offset", "nested", parent="notes"),
    _v1("/files", "files", "offset", "nested", max_limit=100, v1_sort=("id", "update_time")),
    _v1("/callLogs", "call_logs", "offset", "nested_no_next", max_limit=50),
    _v1(
        "/mailbox/mailThreads",
        "mail_threads",
        "offset",
        "none",
        filters=("folder",),
        required=("folder",),
    ),
    _v1(
        "/mailbox/mailThreads/{id}/mailMessages",
        "mail_messages",
        "none",
        "none",
        parent="mail_threads",
    ),
    _v1("/filters", "filters", "none", "none", filters=("filter_type",)),
    _v1(
        "/goals/find",
        "goals",
        "none",
        "none",
        filters=("goal_active",),
        data_path=("goals",),
    ),
    _v1("/roles", "roles", "offset", "nested_no_next"),
    _v1(
        "/roles/{id}/assignments",
        "role_assignments",
        "offset",
        "nested_no_next",
        10,
        parent="roles",
    ),
    _v1("/permissionSets", "permission_sets", "none", "none"),
    _v1(
        "/permissionSets/{id}/assignments",
        "permission_set_assignments",
        "offset",
        "none",
        parent="permission_sets",
    ),
    _v1("/webhooks", "webhooks", "none", "none", 10),
    _v1(
        "/organizationRelationships",
        "organization_relationships",
        "none",
        "flat",
        filters=("relationship_org_id",),
        required=("org_id",),
    ),
    _v1("/deals/{id}/flow", "deal_flow", "offset", "flat", 40, parent="deals"),
    _v1("/deals/{id}/changelog", "deal_changelog", "cursor", "cursor", parent="deals"),
    _v1(
        "/deals/{id}/participants",
        "deal_participants",
        "offset",
        "flat",
        10,
        parent="deals",
    ),
    _v1("/persons/{id}/flow", "person_flow", "offset", "flat", 40, parent="persons"),
    _v1("/persons/{id}/changelog", "person_changelog", "cursor", "cursor", parent="persons"),
    _v1(
        "/organizations/{id}/changelog",
        "organization_changelog",
        "cursor",
        "cursor",
        parent="organizations",
    ),
    _v1(
        "/organizations/{id}/flow",
        "organization_flow",
        "offset",
        "flat",
        40,
        parent="organizations",
    ),
    # ---- v2 secondary ---------------------------------------------------------------------
    _v2(
        "/deals/products",
        "deal_products",
        filters=("deal_ids",),
        required=("deal_ids",),
        sort_by=("id", "deal_id", "add_time", "update_time", "order_nr"),
    ),
    _v2(
        "/deals/installments",
        "deal_installments",
        filters=("deal_ids",),
        required=("deal_ids",),
        sort_by=("id", "billing_date", "deal_id"),
    ),
    _v2("/deals/{id}/followers", "deal_followers", parent="deals"),
    _v2("/persons/{id}/followers", "person_followers", parent="persons"),
    _v2("/organizations/{id}/followers", "organization_followers", parent="organizations"),
    _v2("/products/{id}/followers", "product_followers", parent="products"),
    _v2("/products/{id}/variations", "product_variations", parent="products"),
    _v2(
        "/projects",
        "projects",
        filters=("project_status", "phase_id"),
        view="not_archived",
    ),
    _v2(
        "/projects/archived",
        "projects",
        filters=("project_status", "phase_id"),
        view="archived",
    ),
    _v2("/tasks", "tasks", filters=("project_id", "is_done", "is_milestone")),
    Endpoint("/boards", "v2", "boards", "none", "none", 10),
    Endpoint(
        "/phases",
        "v2",
        "phases",
        "none",
        "none",
        10,
        filters=("board_id",),
        required=("board_id",),
    ),
    _v2("/projectTemplates", "project_templates"),
)
