"""The ``envelope`` fault: list answers whose paging or shape a broken server could send.

Each mode rewrites an answer the lister produced. Modes that loop are meant for
``count=None``: ``fresh_cursor``, ``repeat_offset`` and ``empty_pages`` answer the first
page whatever cursor or offset was asked for, so a client that follows them never
reaches the end; ``cursor_cycle`` points back at the first cursor it was asked for.
"""

from __future__ import annotations

import json
from typing import Any

ENVELOPE_MODES = (
    # v2: the first page again and again, each time with a cursor never sent before.
    "fresh_cursor",
    # v2: real pages, but the second one the fault answers points back at the cursor of
    # the first one (A, B, A...).
    "cursor_cycle",
    # v1: the first page again and again, with next_start advancing as if it were not.
    "repeat_offset",
    # No rows, ever, and always a way forward (a fresh cursor, or an advancing offset).
    "empty_pages",
    # v1: more_items_in_collection as the string "true" / "false".
    "more_as_string",
    # v1: next_start as a string ("100").
    "next_start_string",
    # additional_data as a list; pagination as a string; data as a string.
    "additional_data_list",
    "pagination_string",
    "data_string",
    # The first row gains a value nested DEEP_JSON_LEVELS deep.
    "deep_json",
)
LOOPING_MODES = frozenset({"fresh_cursor", "repeat_offset", "empty_pages"})
DEEP_JSON_LEVELS = 1000


def first_page_query(query: dict[str, str], modes: set[str]) -> dict[str, str]:
    """The query the lister answers: looping modes always read from the top."""
    if modes & LOOPING_MODES:
        return {key: value for key, value in query.items() if key not in ("cursor", "start")}
    return query


def rewrite(
    body: bytes, modes: set[str], query: dict[str, str], serial: int, memory: dict[str, Any]
) -> bytes:
    """The lister's answer as the broken server sends it.

    ``serial`` counts the fault's uses; ``memory`` lives as long as the fault.
    """
    envelope = json.loads(body)
    additional = envelope.get("additional_data")
    pagination = _pagination(additional)
    v2 = isinstance(additional, dict) and "next_cursor" in additional
    if "empty_pages" in modes:
        envelope["data"] = [] if v2 else None
    if modes & {"fresh_cursor", "empty_pages"} and v2:
        additional["next_cursor"] = f"fresh-{serial}"
    if "cursor_cycle" in modes and v2:
        first = memory.setdefault("first_cursor", query.get("cursor"))
        if query.get("cursor") != first:
            additional["next_cursor"] = first
    if modes & {"repeat_offset", "empty_pages"} and pagination is not None:
        start = int(query.get("start") or 0)
        pagination["more_items_in_collection"] = True
        pagination["next_start"] = start + int(query.get("limit") or 100)
    if "more_as_string" in modes and pagination is not None:
        more = pagination.get("more_items_in_collection")
        pagination["more_items_in_collection"] = "true" if more else "false"
    if "next_start_string" in modes and pagination and pagination.get("next_start") is not None:
        pagination["next_start"] = str(pagination["next_start"])
    if "additional_data_list" in modes:
        envelope["additional_data"] = [additional]
    if "pagination_string" in modes and isinstance(additional, dict):
        additional["pagination"] = "start=0&limit=100"
    if "data_string" in modes:
        envelope["data"] = "rows"
    text = json.dumps(envelope).encode()
    if "deep_json" in modes:
        deep = b"[" * DEEP_JSON_LEVELS + b"]" * DEEP_JSON_LEVELS
        marker = b'"sandbox_deep": 0'
        text = (
            json.dumps(_with_marker(envelope)).encode().replace(marker, b'"sandbox_deep": ' + deep)
        )
    return text


def _pagination(additional: Any) -> dict[str, Any] | None:
    """The dict holding ``more_items_in_collection``, nested or flat (v1 only)."""
    if not isinstance(additional, dict) or "next_cursor" in additional:
        return None
    nested = additional.get("pagination")
    if isinstance(nested, dict):
        return nested
    return additional if "more_items_in_collection" in additional else None


def _with_marker(envelope: dict[str, Any]) -> dict[str, Any]:
    data = envelope.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data[0] = {**data[0], "sandbox_deep": 0}
    elif isinstance(data, dict):
        envelope["data"] = {**data, "sandbox_deep": 0}
    return envelope
