"""List endpoints: filtering, sorting, paging, envelopes and record rendering."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipedrive_sandbox import builders
from pipedrive_sandbox.data import SHAPES, Table, World, optional_fields
from pipedrive_sandbox.endpoints import Endpoint
from pipedrive_sandbox.hostile import HostileContext, apply_hostile
from pipedrive_sandbox.util import parse_timestamp

if TYPE_CHECKING:
    from collections.abc import Iterable

IndexPred = Callable[[int], bool]
SELECTION_CACHE_SIZE = 16
RecordPred = Callable[[dict[str, Any]], bool]


class ApiError(Exception):
    """An error answer: HTTP status plus Pipedrive's error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "success": False,
            "error": self.message,
            "errorCode": self.status,
            "error_info": "Please check developers.pipedrive.com for more information about "
            "Pipedrive API.",
            "data": None,
            "additional_data": None,
        }


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("utf-8")


# ---- query parameter parsing -------------------------------------------------------------------


def _int_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(
            400, f"Invalid value for parameter {name}: {raw!r} (integer expected)"
        ) from None


def _bool_param(query: dict[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiError(400, f"Invalid value for parameter {name}: {raw!r} (boolean expected)")


def _time_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    parsed = parse_timestamp(raw)
    if parsed is None or "T" not in raw:
        raise ApiError(400, f"Invalid value for parameter {name}: {raw!r} (RFC 3339 expected)")
    return parsed


def _date_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise ApiError(400, f"Invalid value for parameter {name}: {raw!r} (YYYY-MM-DD expected)")
    parsed = parse_timestamp(raw)
    if parsed is None:
        raise ApiError(400, f"Invalid value for parameter {name}: {raw!r} (YYYY-MM-DD expected)")
    return parsed


def _id_list(query: dict[str, str], name: str, limit: int | None = None) -> list[int] | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ApiError(400, f"Invalid value for parameter {name}: {raw!r}") from None
    if limit is not None and len(values) > limit:
        raise ApiError(400, f"Parameter {name} accepts at most {limit} ids, got {len(values)}")
    return values


# ---- filters -----------------------------------------------------------------------------------


@dataclass
class Selection:
    index: list[IndexPred] = field(default_factory=list)
    record: list[RecordPred] = field(default_factory=list)
    signature: list[tuple[str, Any]] = field(default_factory=list)


def _eq_filter(param: str, record_field: str, kind: str = "int") -> Callable[..., None]:
    def apply(query: dict[str, str], table: Table | None, sel: Selection) -> None:
        if kind == "int":
            value: Any = _int_param(query, param)
        else:
            value = query.get(param) or None
        if value is None:
            return
        sel.signature.append((param, value))
        sel.record.append(lambda rec: rec.get(record_field) == value)

    return apply


def _bool_filter(param: str, record_field: str) -> Callable[..., None]:
    def apply(query: dict[str, str], table: Table | None, sel: Selection) -> None:
        value = _bool_param(query, param)
        if value is None:
            return
        sel.signature.append((param, value))
        sel.record.append(lambda rec: bool(rec.get(record_field)) == value)

    return apply


def _updated_since(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    since = _time_param(query, "updated_since")
    if since is None:
        return
    sel.signature.append(("updated_since", since))
    if table is not None:
        upd = table.upd_ts
        sel.index.append(lambda pos: upd[pos] >= since)


def _updated_until(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    until = _time_param(query, "updated_until")
    if until is None:
        return
    sel.signature.append(("updated_until", until))
    if table is not None:
        upd = table.upd_ts
        sel.index.append(lambda pos: upd[pos] < until)


def _status_filter(allowed: tuple[str, ...], deleted_value: str) -> Callable[..., None]:
    def apply(query: dict[str, str], table: Table | None, sel: Selection) -> None:
        raw = query.get("status")
        if raw:
            wanted = [part.strip() for part in raw.split(",") if part.strip()]
            unknown = [part for part in wanted if part not in allowed]
            if unknown:
                raise ApiError(
                    400,
                    f"Invalid value for parameter status: {','.join(unknown)} "
                    f"(allowed: {','.join(allowed)})",
                )
        else:
            wanted = [value for value in allowed if value != deleted_value]
        codes = bytes(sorted(allowed.index(value) for value in set(wanted)))
        sel.signature.append(("status", codes))
        if table is not None:
            status = table.status
            sel.index.append(lambda pos: status[pos] in codes)

    return apply


def _ids(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    values = _id_list(query, "ids", 100)
    if values is None:
        return
    wanted = set(values)
    sel.signature.append(("ids", tuple(sorted(wanted))))
    if table is not None:
        ids = table.ids
        sel.index.append(lambda pos: ids[pos] in wanted)


def _date_range(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    start = _date_param(query, "start_date")
    end = _date_param(query, "end_date")
    if start is None and end is None:
        return
    sel.signature.append(("dates", (start, end)))
    if table is not None:
        add = table.add_ts
        low = start if start is not None else 0
        high = end + 86400 if end is not None else 1 << 62
        sel.index.append(lambda pos: low <= add[pos] < high)


def _term(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    term = (query.get("term") or "").lower()
    if not term:
        return
    sel.signature.append(("term", term))
    sel.record.append(
        lambda rec: (
            term in str(rec.get("name", "")).lower() or term in str(rec.get("code", "")).lower()
        )
    )


def _folder(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    folder = query.get("folder", "")
    allowed = ("inbox", "drafts", "sent", "archive")
    if folder not in allowed:
        raise ApiError(
            400, f"Invalid value for parameter folder: {folder!r} (allowed: {', '.join(allowed)})"
        )
    sel.signature.append(("folder", folder))
    sel.record.append(lambda rec: folder in (rec.get("folders") or []))


def _filter_type(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    wanted = query.get("type")
    if not wanted:
        return
    sel.signature.append(("type", wanted))
    sel.record.append(lambda rec: rec.get("type") == wanted)


def _relationship_org(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    org_id = _int_param(query, "org_id")
    if org_id is None:
        return
    sel.signature.append(("org_id", org_id))
    sel.record.append(
        lambda rec: (
            org_id in (rec["rel_owner_org_id"].get("value"), rec["rel_linked_org_id"].get("value"))
        )
    )


def _noop(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    return None


def _goal_active(query: dict[str, str], table: Table | None, sel: Selection) -> None:
    # /goals/find lists active goals only, unless asked for is_active=false (default true).
    value = _bool_param(query, "is_active")
    wanted = True if value is None else value
    sel.signature.append(("is_active", wanted))
    sel.record.append(lambda rec: bool(rec.get("is_active")) == wanted)


FILTERS: dict[str, Callable[[dict[str, str], Table | None, Selection], None]] = {
    "updated_since": _updated_since,
    "updated_until": _updated_until,
    "deal_status": _status_filter(("open", "won", "lost", "deleted"), "deleted"),
    "project_status": _status_filter(("open", "completed", "canceled", "deleted"), "deleted"),
    "ids": _ids,
    "owner_id": _eq_filter("owner_id", "owner_id"),
    "person_id": _eq_filter("person_id", "person_id"),
    "org_id": _eq_filter("org_id", "org_id"),
    "organization_id": _eq_filter("organization_id", "organization_id"),
    "pipeline_id": _eq_filter("pipeline_id", "pipeline_id"),
    "stage_id": _eq_filter("stage_id", "stage_id"),
    "deal_id": _eq_filter("deal_id", "deal_id"),
    "user_id": _eq_filter("user_id", "user_id"),
    "project_id": _eq_filter("project_id", "project_id"),
    "phase_id": _eq_filter("phase_id", "phase_id"),
    "board_id": _eq_filter("board_id", "board_id"),
    "lead_id": _eq_filter("lead_id", "lead_id", kind="str"),
    "done": _bool_filter("done", "done"),
    "is_done": _bool_filter("is_done", "is_done"),
    "is_milestone": _bool_filter("is_milestone", "is_milestone"),
    "start_date": _date_range,
    "end_date": _noop,  # handled together with start_date
    "term": _term,
    "folder": _folder,
    "goal_active": _goal_active,
    "filter_type": _filter_type,
    "relationship_org_id": _relationship_org,
    "deal_ids": _noop,  # batch endpoints select their parents directly
}


def _live(table: Table) -> IndexPred | None:
    """Deleted rows vanish from lists, except where a status filter governs them (deals);
    merged-away rows vanish from every list."""
    if table.entity.deleted_status is not None:
        gone = table.gone
        return (lambda pos: pos not in gone) if gone else None
    deleted = table.deleted
    return lambda pos: not deleted[pos]


def _archived(wanted: bool) -> Callable[[Table], IndexPred | None]:
    def view(table: Table) -> IndexPred | None:
        live = _live(table)
        archived = table.archived
        if live is None:
            return lambda pos: bool(archived[pos]) == wanted
        return lambda pos: bool(archived[pos]) == wanted and live(pos)

    return view


# Which records of an entity an endpoint lists, from the index columns alone.
VIEWS: dict[str, Callable[[Table], IndexPred | None]] = {
    "all": _live,
    "me": _live,
    "not_deleted": _live,
    "not_archived": _archived(False),
    "archived": _archived(True),
}


# ---- sorting -----------------------------------------------------------------------------------


class _Desc:
    """Inverts comparisons so that bisect works on descending lists."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _Desc) -> bool:
        return other.key < self.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and other.key == self.key

    __hash__ = None  # type: ignore[assignment]


def _norm(value: Any) -> tuple[int, Any]:
    # None sorts first; mixed types never meet within one field.
    return (0, 0) if value is None else (1, value)


def table_key(table: Table, sort_field: str) -> Callable[[int], tuple[Any, ...]]:
    ids = table.ids
    if sort_field == "id":
        return lambda pos: ((1, ids[pos]), ids[pos])
    if sort_field == "update_time":
        upd = table.upd_ts
        return lambda pos: ((1, upd[pos]), ids[pos])
    if sort_field == "add_time":
        add = table.add_ts
        return lambda pos: ((1, add[pos]), ids[pos])
    record = table.record
    return lambda pos: (_norm(record(pos).get(sort_field)), ids[pos])


def row_key(sort_field: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    def key(rec: dict[str, Any]) -> tuple[Any, ...]:
        ident = rec.get("id", rec.get("user_id", 0))
        return (_norm(rec.get(sort_field)), _norm(ident))

    return key


def _parse_v1_sort(endpoint: Endpoint, query: dict[str, str]) -> tuple[str, bool] | None:
    raw = query.get("sort")
    if not raw:
        return None
    first = raw.split(",")[0].strip()
    parts = first.split()
    name = parts[0] if parts else ""
    direction = parts[1].upper() if len(parts) > 1 else "ASC"
    if name not in endpoint.v1_sort or direction not in ("ASC", "DESC") or len(parts) > 2:
        raise ApiError(
            400,
            f"Invalid value for parameter sort: {raw!r} "
            f"(fields: {', '.join(endpoint.v1_sort)}; ASC or DESC)",
        )
    return name, direction == "DESC"


def _parse_v2_sort(endpoint: Endpoint, query: dict[str, str]) -> tuple[str, bool]:
    sort_by = query.get("sort_by") or (endpoint.sort_by[0] if endpoint.sort_by else "id")
    if endpoint.sort_by and sort_by not in endpoint.sort_by:
        raise ApiError(
            400,
            f"Invalid value for parameter sort_by: {sort_by!r} "
            f"(allowed: {', '.join(endpoint.sort_by)})",
        )
    direction = query.get("sort_direction") or "asc"
    if direction not in ("asc", "desc"):
        raise ApiError(
            400, f"Invalid value for parameter sort_direction: {direction!r} (allowed: asc, desc)"
        )
    return sort_by, direction == "desc"


# ---- cursors -----------------------------------------------------------------------------------


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ApiError(400, "Invalid value for parameter cursor") from None
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid value for parameter cursor")
    return value


def _key_to_json(key: tuple[Any, ...]) -> Any:
    flag, value = key[0]
    return value if flag else None


# ---- the lister ----------------------------------------------------------------------------------


@dataclass
class Page:
    records: list[bytes]
    next_cursor: str | None = None
    start: int = 0
    limit: int = 0
    more: bool = False
    empty_is_null: bool = False
    next_start: int | None = None  # overrides start + limit (hostile empty pages)


class Lister:
    """Answers list requests of one sandbox (keeps a small cache of sorted selections)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._selections: OrderedDict[Any, array[int]] = OrderedDict()

    # public entry ----------------------------------------------------------------------------
    def respond(
        self,
        endpoint: Endpoint,
        path_id: str | None,
        query: dict[str, str],
        hostile_modes: set[str],
    ) -> bytes:
        world = self.world
        with world.lock:
            if endpoint.entity not in world.entity_names():
                raise ApiError(404, f"Unknown method {endpoint.path}")
            for name in endpoint.required:
                if not query.get(name):
                    raise ApiError(400, f"Parameter {name} is required")
            include = self._include_fields(endpoint, query)
            hostile = HostileContext(hostile_modes) if hostile_modes else None
            if endpoint.envelope == "object":
                return self._object(endpoint, hostile)
            table = world.tables.get(endpoint.entity)
            if table is not None and endpoint.parent is None:
                page = self._table_page(endpoint, table, query, include, hostile)
            else:
                rows = self._rows(endpoint, path_id, query)
                page = self._rows_page(endpoint, rows, query, include, hostile)
            return self._envelope(endpoint, page)

    # include_fields / optional fields --------------------------------------------------------
    def _include_fields(self, endpoint: Endpoint, query: dict[str, str]) -> frozenset[str]:
        raw = query.get("include_fields")
        allowed = optional_fields(endpoint.key)
        if not raw:
            return frozenset()
        wanted = [part.strip() for part in raw.split(",") if part.strip()]
        unknown = [part for part in wanted if part not in allowed]
        if unknown:
            raise ApiError(
                400,
                f"Invalid value for parameter include_fields: {','.join(unknown)} "
                f"(allowed: {','.join(allowed)})",
            )
        return frozenset(wanted)

    def _strip(self, endpoint: Endpoint, include: frozenset[str]) -> frozenset[str]:
        return frozenset(optional_fields(endpoint.key)) - include

    def _render(
        self, rec: dict[str, Any], excluded: frozenset[str], query: dict[str, str]
    ) -> dict[str, Any]:
        if excluded:
            rec = {key: value for key, value in rec.items() if key not in excluded}
        wanted_custom = query.get("custom_fields")
        if wanted_custom and isinstance(rec.get("custom_fields"), dict):
            keys = [part.strip() for part in wanted_custom.split(",") if part.strip()][:15]
            rec = {
                **rec,
                "custom_fields": {
                    key: rec["custom_fields"][key] for key in keys if key in rec["custom_fields"]
                },
            }
        return rec

    # table mode ------------------------------------------------------------------------------
    def _selection(
        self, endpoint: Endpoint, table: Table, query: dict[str, str]
    ) -> tuple[Selection, IndexPred | None]:
        sel = Selection()
        for name in endpoint.filters:
            FILTERS[name](query, table, sel)
        return sel, VIEWS[endpoint.view](table)

    def _sorted_positions(
        self,
        endpoint: Endpoint,
        table: Table,
        sel: Selection,
        view: IndexPred | None,
        sort_field: str,
        descending: bool,
    ) -> array[int]:
        cache_key = (
            endpoint.key,
            tuple(sel.signature),
            sort_field,
            descending,
            table.version,
            len(table),
        )
        found = self._selections.get(cache_key)
        if found is not None:
            self._selections.move_to_end(cache_key)
            return found
        preds = ([view] if view else []) + sel.index
        positions: Iterable[int] = range(len(table))
        for pred in preds:
            positions = [pos for pos in positions if pred(pos)]
        if sel.record:
            record = table.record
            checks = sel.record
            positions = [pos for pos in positions if all(c(record(pos)) for c in checks)]
        ordered = list(positions)
        if not (sort_field == "id" and not descending and table.int_ids):
            ordered.sort(key=table_key(table, sort_field), reverse=descending)
        # 8 bytes a position instead of ~36 for a list of ints: selections over a million
        # rows are cached while a client pages through them.
        result = array("q", ordered)
        self._selections[cache_key] = result
        if len(self._selections) > SELECTION_CACHE_SIZE:
            self._selections.popitem(last=False)
        return result

    def _table_page(
        self,
        endpoint: Endpoint,
        table: Table,
        query: dict[str, str],
        include: frozenset[str],
        hostile: HostileContext | None,
    ) -> Page:
        sel, view = self._selection(endpoint, table, query)
        if endpoint.version == "v2":
            sort_field, descending = _parse_v2_sort(endpoint, query)
        else:
            parsed = _parse_v1_sort(endpoint, query)
            default = "add_time" if endpoint.entity == "leads" else "id"
            sort_field, descending = parsed or (default, False)
        positions = self._sorted_positions(endpoint, table, sel, view, sort_field, descending)
        excluded = self._strip(endpoint, include)
        key_of = table_key(table, sort_field)

        def render(pos: int) -> bytes:
            if hostile is None and not query.get("custom_fields"):
                cached = table.fragments.get(pos)
                if cached is not None and excluded in cached:
                    return cached[excluded]
                data = dumps(self._render(table.record(pos), excluded, query))
                if table.cache_enabled:
                    table.fragments.setdefault(pos, {})[excluded] = data
                return data
            return dumps(self._render(table.record(pos), excluded, query))

        if endpoint.paging == "cursor":
            limit = self._limit(endpoint, query)
            cursor = query.get("cursor")
            start = 0
            if cursor:
                payload = decode_cursor(cursor)
                if not payload.get("start"):
                    target = (_norm(payload.get("fieldValue")), payload.get("id"))
                    wrapped = _Desc(target) if descending else target
                    keyf = (lambda pos: _Desc(key_of(pos))) if descending else key_of
                    try:
                        start = bisect.bisect_right(positions, wrapped, key=keyf)
                    except TypeError:
                        raise ApiError(400, "Invalid value for parameter cursor") from None
            chosen = positions[start : start + limit]
            next_cursor = None
            if start + limit < len(positions) and chosen:
                last_key = key_of(chosen[-1])
                next_cursor = encode_cursor(
                    {
                        "field": sort_field,
                        "fieldValue": _key_to_json(last_key),
                        "sortDirection": "desc" if descending else "asc",
                        "id": last_key[1],
                    }
                )
            previous = positions[start - 1] if start > 0 else None
            if hostile is not None:
                return self._hostile_page(
                    [table.record(pos) for pos in chosen],
                    table.record(previous) if previous is not None else None,
                    excluded,
                    query,
                    hostile,
                    cursor_same=cursor or encode_cursor({"start": 1}),
                    next_cursor=next_cursor,
                    start=start,
                    limit=limit,
                    more=start + limit < len(positions),
                )
            return Page([render(pos) for pos in chosen], next_cursor=next_cursor)
        start, limit = self._offset(endpoint, query, len(positions))
        chosen = positions[start : start + limit]
        more = start + limit < len(positions)
        if hostile is not None:
            previous = positions[start - 1] if start > 0 else None
            return self._hostile_page(
                [table.record(pos) for pos in chosen],
                table.record(previous) if previous is not None else None,
                excluded,
                query,
                hostile,
                cursor_same=None,
                next_cursor=None,
                start=start,
                limit=limit,
                more=more,
            )
        return Page(
            [render(pos) for pos in chosen], start=start, limit=limit, more=more, empty_is_null=True
        )

    # rows mode -------------------------------------------------------------------------------
    def _rows(
        self, endpoint: Endpoint, path_id: str | None, query: dict[str, str]
    ) -> list[dict[str, Any]]:
        world = self.world
        if endpoint.parent is not None:
            parent = world.tables[endpoint.parent]
            pos = parent.pos_of(path_id)
            if pos is None:
                raise ApiError(404, f"{endpoint.parent[:-1].capitalize()} not found")
            return world.children[endpoint.entity].rows_for_pos(pos)
        if "deal_ids" in endpoint.filters:
            deal_ids = _id_list(query, "deal_ids", 100) or []
            deals = world.tables["deals"]
            child = world.children[endpoint.entity]
            rows: list[dict[str, Any]] = []
            for deal_id in dict.fromkeys(deal_ids):
                pos = deals.pos_of(deal_id)
                if pos is not None:
                    rows.extend(child.rows_for_pos(pos))
            return rows
        # Field items take the shape of the endpoint's API version (v1 /activityFields
        # lists the same field set as v2 /activityFields).
        fields = world.field_records(endpoint.entity, endpoint.version)
        if fields is not None:
            return fields
        if endpoint.entity in world.tables:
            table = world.tables[endpoint.entity]
            return list(table.records())
        raise ApiError(404, "Unknown method")

    def _rows_page(
        self,
        endpoint: Endpoint,
        rows: list[dict[str, Any]],
        query: dict[str, str],
        include: frozenset[str],
        hostile: HostileContext | None,
    ) -> Page:
        sel = Selection()
        for name in endpoint.filters:
            FILTERS[name](query, None, sel)
        if sel.record:
            rows = [rec for rec in rows if all(check(rec) for check in sel.record)]
        if endpoint.version == "v2" and endpoint.sort_by:
            sort_field, descending = _parse_v2_sort(endpoint, query)
            rows = sorted(rows, key=row_key(sort_field), reverse=descending)
        elif endpoint.v1_sort:
            parsed = _parse_v1_sort(endpoint, query)
            if parsed:
                rows = sorted(rows, key=row_key(parsed[0]), reverse=parsed[1])
        excluded = self._strip(endpoint, include)
        if endpoint.paging == "cursor":
            limit = self._limit(endpoint, query)
            cursor = query.get("cursor")
            start = 0
            if cursor:
                payload = decode_cursor(cursor)
                start = payload.get("offset", 0)
                if not isinstance(start, int) or start < 0:
                    raise ApiError(400, "Invalid value for parameter cursor")
            chosen = rows[start : start + limit]
            more = start + limit < len(rows)
            next_cursor = encode_cursor({"offset": start + limit}) if more else None
            same = encode_cursor({"offset": start})
        elif endpoint.paging == "offset":
            start, limit = self._offset(endpoint, query, len(rows))
            chosen = rows[start : start + limit]
            more = start + limit < len(rows)
            next_cursor = same = None
        else:
            start, limit, more = 0, len(rows), False
            chosen = rows
            next_cursor = same = None
        if hostile is not None:
            previous = rows[start - 1] if start > 0 else None
            return self._hostile_page(
                chosen, previous, excluded, query, hostile, same, next_cursor, start, limit, more
            )
        return Page(
            [dumps(self._render(rec, excluded, query)) for rec in chosen],
            next_cursor=next_cursor,
            start=start,
            limit=limit,
            more=more,
            empty_is_null=endpoint.version == "v1",
        )

    def _hostile_page(
        self,
        records: list[dict[str, Any]],
        previous: dict[str, Any] | None,
        excluded: frozenset[str],
        query: dict[str, str],
        hostile: HostileContext,
        cursor_same: str | None,
        next_cursor: str | None,
        start: int,
        limit: int,
        more: bool,
    ) -> Page:
        rendered = [self._render(dict(rec), excluded, query) for rec in records]
        prev = self._render(dict(previous), excluded, query) if previous is not None else None
        rendered = apply_hostile(rendered, prev, hostile)
        if "empty_page_with_cursor" in hostile.modes:
            # Nothing delivered, yet "more" points at the very same position.
            return Page(
                [],
                next_cursor=cursor_same,
                start=start,
                limit=limit,
                more=True,
                empty_is_null=True,
                next_start=start,
            )
        return Page(
            [dumps(rec) for rec in rendered],
            next_cursor=next_cursor,
            start=start,
            limit=limit,
            more=more,
        )

    # paging parameters -----------------------------------------------------------------------
    def _limit(self, endpoint: Endpoint, query: dict[str, str]) -> int:
        limit = _int_param(query, "limit")
        if limit is None:
            return min(100, endpoint.max_limit)
        if limit < 1:
            raise ApiError(400, f"Invalid value for parameter limit: {limit} (must be >= 1)")
        return min(limit, endpoint.max_limit)

    def _offset(self, endpoint: Endpoint, query: dict[str, str], total: int) -> tuple[int, int]:
        start = _int_param(query, "start") or 0
        if start < 0:
            raise ApiError(400, f"Invalid value for parameter start: {start} (must be >= 0)")
        if endpoint.paging != "offset":
            return 0, max(total, 100)
        return start, self._limit(endpoint, query)

    # envelopes -------------------------------------------------------------------------------
    def _object(self, endpoint: Endpoint, hostile: HostileContext | None) -> bytes:
        users = self.world.tables["users"]
        record = builders.me(self.world, users.record(0))
        if hostile is not None:
            record = (
                apply_hostile([record], None, hostile)[0]
                if "empty_page_with_cursor" not in hostile.modes
                else record
            )
        return b'{"success":true,"data":' + dumps(record) + b"}"

    def _envelope(self, endpoint: Endpoint, page: Page) -> bytes:
        items = b"[" + b",".join(page.records) + b"]"
        if endpoint.data_path:
            data = dumps({endpoint.data_path[0]: None}).replace(b"null", items, 1)
        elif not page.records and page.empty_is_null and endpoint.version == "v1":
            data = b"null"
        else:
            data = items
        head = b'{"success":true,"data":' + data
        if endpoint.envelope == "cursor":
            additional: Any = {"next_cursor": page.next_cursor}
        elif endpoint.envelope in ("nested", "nested_no_next"):
            pagination: dict[str, Any] = {
                "start": page.start,
                "limit": page.limit,
                "more_items_in_collection": page.more,
            }
            if page.more and endpoint.envelope == "nested":
                pagination["next_start"] = (
                    page.next_start if page.next_start is not None else page.start + page.limit
                )
            additional = {"pagination": pagination}
        elif endpoint.envelope == "flat":
            additional = {
                "start": page.start,
                "limit": page.limit,
                "more_items_in_collection": page.more,
            }
        elif endpoint.version == "v2":
            additional = None
        else:
            return head + b"}"
        return head + b',"additional_data":' + dumps(additional) + b"}"


def shape_item(endpoint_key: str) -> dict[str, Any]:
    return SHAPES.get(endpoint_key, {}).get("item", {})
