"""Incremental bookmarks: where a read starts, which rows it has delivered, where it stops.

One helper per stream (``Bookmarks``) owns the three ways the state follows a read:

- the boundary ids: ``updated_since`` is inclusive, so the rows at the bookmark's exact
  time come back on the next run; the state remembers their ids and only those are
  skipped (a row updated again within the same second still comes through);
- the parent checkpoints of per-parent streams: after a chunk of parents whose children
  have all been written, the bookmark moves to the chunk's last parent, and the ids of
  the parents at exactly that time are kept so the next run skips them;
- the newest-first re-sort: lists that can only be read newest first are read back to
  the bookmark, then emitted oldest first, so the bookmark advances as for any sorted list.

``future_starting_value`` tells, without touching the state, which bookmark the SDK will
settle on for a partition (fetch-ahead plans its requests with it).
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tap_pipedrive.normalize import to_rfc3339
from tap_pipedrive.sdk_private import (
    get_state_if_exists,
    state_partition,
    to_json_compatible,
    write_state,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from singer_sdk.helpers.types import Context
    from singer_sdk.streams import Stream

EARLIEST = datetime.min.replace(tzinfo=UTC)


def context_key(stream_name: str, context: Context | None) -> str:
    """One text per stream partition (or parent request), the same on every thread."""
    return stream_name + json.dumps(dict(context or {}), sort_keys=True, default=str)


def parse_time(value: t.Any) -> datetime | None:
    """A Pipedrive timestamp (v1 or v2 spelling) as an aware datetime; None when unusable."""
    try:
        text = to_rfc3339(value)
    except (ValueError, TypeError, IndexError):
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def parse_bookmark(value: t.Any) -> datetime | None:
    """A bookmark (state value or start_date) as the SDK's get_starting_timestamp reads it."""
    if value is None:
        return None
    result = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return result if result.tzinfo else result.replace(tzinfo=UTC)


def future_starting_value(stream: Stream, context: Context | None) -> t.Any:
    """The starting bookmark the SDK will settle on when this partition's turn comes.

    Mirrors ``StreamStateManager.write_starting_replication_value`` without writing, so
    the emitted state does not change; fetch-ahead compares the request built from it with
    the one built when the turn comes and refetches on any difference.
    """
    if not stream.replication_key or stream.replication_method == "FULL_TABLE":
        return None
    # The SDK's own partition key and read-only lookup: the plan finds exactly the entry
    # the sync will use, without creating it (get_context_state would).
    partition = state_partition(stream, context)
    state = get_state_if_exists(stream.tap_state, stream.name, partition) or {}
    value = None
    bookmark = state.get("replication_key_value")
    if bookmark and state.get("replication_key") == stream.replication_key:
        value = bookmark
    start_date = stream.config.get("start_date")
    if start_date:
        value = stream.compare_start_date(value, start_date) if value else start_date
    return to_json_compatible(value)


@dataclass(frozen=True)
class ParentMark:
    """A parent as the checkpoints of its child stream see it."""

    id: t.Any
    update_time: datetime
    # The parent's update_time as the parent stream emits it (RFC 3339).
    time_text: str | None = field(compare=False)


@dataclass
class _Boundary:
    bookmark: t.Any
    seen: frozenset[t.Any]


class Bookmarks:
    """The bookmark bookkeeping of one stream (see the module's docstring)."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        # Per partition: the bookmark the read started from and the ids delivered at it.
        self._start: dict[str, _Boundary] = {}
        self._last: tuple[t.Any, dict[str, t.Any], _Boundary] | None = None
        # The last parent checkpoint: its time and the ids of the parents at that time.
        self._done_at: tuple[datetime, list[t.Any]] | None = None

    # --- boundary ids ---------------------------------------------------------------------
    def deliver(self, row: dict[str, t.Any], context: Context | None) -> bool:
        """False for a row the previous run already delivered at the bookmark's exact time."""
        stream = self._stream
        key_name = t.cast("str", stream.replication_key)
        value = row.get(key_name)
        if value is None:
            return True
        # Looked up once per partition, not per row (both lookups cost more than the rest).
        cached = self._last
        if cached is not None and cached[0] is context:
            state, start = cached[1], cached[2]
        else:
            state = stream.get_context_state(context)
            partition = context_key("", context)
            found = self._start.get(partition)
            if found is None:
                boundary = frozenset(state.get("boundary_ids") or ())
                found = _Boundary(state.get("replication_key_value"), boundary)
                self._start[partition] = found
            start = found
            self._last = (context, state, start)
        key = row.get(stream.primary_keys[0])
        if value == start.bookmark and key in start.seen:
            return False
        current = state.get("replication_key_value")
        if current is None or value > current:
            state["boundary_ids"] = [key]
        elif value == current:
            state.setdefault("boundary_ids", []).append(key)
        return True

    # --- parent checkpoints -----------------------------------------------------------------
    def parents_done_before(self) -> tuple[datetime | None, set[t.Any]]:
        """The time of the last checkpoint of the previous run and its parents' ids."""
        self._done_at = None  # a new read: its first checkpoint starts a new id list
        state = self._stream.get_context_state(None)
        boundary = dict(state.get("boundary_parents") or {})
        at_bookmark = parse_time(boundary.get("update_time"))
        skip = set(boundary.get("ids") or ()) if at_bookmark is not None else set()
        return at_bookmark, skip

    def checkpoint(self, chunk: Sequence[ParentMark]) -> None:
        """Advance the bookmark past a chunk of parents whose children were all written."""
        stream = self._stream
        last = chunk[-1]
        if last.time_text is None:
            return
        done_at = self._done_at
        ids = done_at[1] if done_at is not None and done_at[0] == last.update_time else []
        ids.extend(parent.id for parent in chunk if parent.update_time == last.update_time)
        state = stream.get_context_state(None)
        state["replication_key"] = stream.replication_key
        state["replication_key_value"] = last.time_text
        state["boundary_parents"] = {"update_time": last.time_text, "ids": ids}
        stream.state_manager.is_flushed = False
        write_state(stream)
        self._done_at = last.update_time, ids

    # --- newest first ---------------------------------------------------------------------
    @staticmethod
    def oldest_first(
        rows: Iterable[dict[str, t.Any]], key: str, start: datetime | None
    ) -> Iterator[dict[str, t.Any]]:
        """Rows read newest first, back to ``start``, in the order a sorted list has them."""
        found: list[tuple[datetime, int, dict[str, t.Any]]] = []
        for row in rows:
            moment = parse_time(row.get(key))
            if moment is not None and start is not None and moment < start:
                break  # everything from here on is older than the bookmark
            found.append((moment or EARLIEST, len(found), row))
        found.sort(key=lambda item: (item[0], -item[1]))
        for _, _, row in found:
            yield row
