"""``tap-pipedrive --estimate``: what a sync would cost, for the price of its parent lists.

The expensive part of a sync is the per-parent streams (followers, participants, history,
comments ...): one request per parent. Their cost follows from the parents, so the
estimate reads each parent list once (only the parents changed since the stream's
bookmark, when a state is given) and the first page of every other list, then prints
per stream: calls, tokens, share of the daily budget, and how many runs the sync takes
at the current settings. The first page of a list says whether there are more; where it
cannot say how many, the row is marked ``>=``. Nothing is written to the state and no
Singer message is printed.
"""

from __future__ import annotations

import math
import typing as t
from dataclasses import dataclass

from tap_pipedrive.budget import endpoint_cost
from tap_pipedrive.errors import StreamUnavailable
from tap_pipedrive.normalize import format_timestamp
from tap_pipedrive.streams.base import PipedriveStream
from tap_pipedrive.streams.bases import ChangedParentsStream, ParentSource
from tap_pipedrive.streams.bookmarks import parse_time

if t.TYPE_CHECKING:
    from tap_pipedrive.tap import TapPipedrive


@dataclass
class StreamCost:
    name: str
    calls: int = 0
    tokens: int = 0
    # The list has more pages than the first one could tell.
    at_least: bool = False


def estimate(tap: TapPipedrive) -> list[str]:
    """The table ``--estimate`` prints (the requests it needs are made here)."""
    tap.budget.resume(tap.state)
    tap._count_seats(always=True)
    selected = [
        stream
        for stream in tap.streams.values()
        if isinstance(stream, PipedriveStream) and stream.selected
    ]
    parent_rows: dict[tuple[t.Any, ...], list[dict[str, t.Any]]] = {}
    listed_rows: dict[str, int] = {}
    costs: list[StreamCost] = []
    for stream in selected:
        if isinstance(stream, ChangedParentsStream):
            costs.append(_per_parent(stream, parent_rows))
        elif stream.parent_stream_type is not None:
            costs.append(_sdk_child(stream, listed_rows))
        else:
            costs.append(_list(stream, parent_rows, listed_rows))
    definitions = sum(
        s.tokens or 0 for s in tap.progress._streams.values() if s.name.endswith("_definitions")
    )
    if definitions:
        costs.append(StreamCost("(custom field definitions)", _definition_calls(tap), definitions))
    return _table(tap, costs)


def _definition_calls(tap: TapPipedrive) -> int:
    return sum(s.calls for s in tap.progress._streams.values() if s.name.endswith("_definitions"))


def _since(stream: PipedriveStream) -> str | None:
    """The stream's bookmark (or start_date): where its next sync starts."""
    bookmark = (tap_state_entry(stream) or {}).get("replication_key_value")
    start = bookmark or stream.config.get("start_date")
    moment = parse_time(start) if start else None
    return format_timestamp(moment) if moment else None


def tap_state_entry(stream: PipedriveStream) -> dict[str, t.Any] | None:
    bookmarks = (stream.tap_state or {}).get("bookmarks") or {}
    entry = bookmarks.get(stream.name)
    return entry if isinstance(entry, dict) else None


def _read_parents(
    stream: ChangedParentsStream,
    source: ParentSource,
    since: str | None,
    cache: dict[tuple[t.Any, ...], list[dict[str, t.Any]]],
) -> tuple[list[dict[str, t.Any]], bool]:
    """The rows of a parent list (read once per list and bookmark); True when just read."""
    key = (source, since)
    if key in cache:
        return cache[key], False
    start = parse_time(since) if since else None
    rows = []
    try:
        for page in stream.run.client.pages(stream.parent_spec(source, start)):
            for row in page.rows():
                moment = parse_time(row.get("update_time"))
                if start is None or moment is None or moment >= start:
                    rows.append(row)
    except StreamUnavailable as exc:
        stream.logger.warning("Skipping stream %s: %s", stream.name, exc)
    cache[key] = rows
    return rows, True


def _per_parent(
    stream: ChangedParentsStream, cache: dict[tuple[t.Any, ...], list[dict[str, t.Any]]]
) -> StreamCost:
    cost = StreamCost(stream.name)
    since = _since(stream)
    parents: dict[t.Any, dict[str, t.Any]] = {}
    for source in stream.parent_sources:
        rows, _ = _read_parents(stream, source, since, cache)
        url = stream.run.client.url(source.version, source.path)
        # A sync reads the parent list for the stream: its pages are part of its cost.
        pages = max(1, math.ceil(len(rows) / stream.page_size))
        cost.calls += pages
        cost.tokens += pages * endpoint_cost(url)
        for row in rows:
            parents.setdefault(row.get("id"), row)
    # A stream that can tell from a parent's row that there is nothing to read skips it.
    skips = getattr(stream, "skips_parent", None)
    wanted = [row for row in parents.values() if not (callable(skips) and skips(row))]
    calls = math.ceil(len(wanted) / max(1, stream.parents_per_request))
    cost.calls += calls
    cost.tokens += calls * stream.next_request_cost
    return cost


def _first_page(stream: PipedriveStream, context: dict[str, t.Any] | None) -> tuple[int, bool]:
    """Rows on the first page of a list, and whether the list goes on."""
    spec = stream.request_spec(context)
    paginator = spec.paginator()
    page = stream.run.client.fetch(spec, paginator.query())
    rows = page.data() or []
    if isinstance(rows, dict):
        rows = rows.get("goals") or [rows]
    count = len(rows) if isinstance(rows, list) else 0
    more = False
    if stream.paged and count >= stream.page_size:
        # A short page is the last one (lists that only stop at an empty page too).
        paginator.advance(page)
        more = not paginator.finished
    return count, more


def _list(
    stream: PipedriveStream,
    parent_rows: dict[tuple[t.Any, ...], list[dict[str, t.Any]]],
    listed_rows: dict[str, int],
) -> StreamCost:
    cost = StreamCost(stream.name)
    if stream.name == "users" and stream.run.budget.seats is not None:
        # Read for the seats already: one page, the stream reads it once more.
        cost.calls, cost.tokens = 1, stream.next_request_cost
        return cost
    if stream.name == "custom_fields":
        return cost  # made of the definitions, which are counted on their own
    known = _known_parent_count(stream, parent_rows)
    partitions: list[dict[str, t.Any] | None] = [*(stream.partitions or [])] or [None]
    for partition in partitions:
        url = stream.get_url(partition)
        per_call = endpoint_cost(url)
        rows, more = _first_page(stream, partition)
        listed_rows[stream.name] = listed_rows.get(stream.name, 0) + rows
        pages = 1
        if more:
            pages = 2
            if known is not None and partition is None:
                pages = max(2, math.ceil(known / stream.page_size))
            else:
                cost.at_least = True
        cost.calls += pages
        cost.tokens += pages * per_call
    return cost


def _known_parent_count(
    stream: PipedriveStream, parent_rows: dict[tuple[t.Any, ...], list[dict[str, t.Any]]]
) -> int | None:
    """Rows of this list, where a parent list read for a per-parent stream counted them."""
    path = getattr(stream, "path", None)
    counts = [
        len(rows)
        for (source, since), rows in parent_rows.items()
        if source.path == path and since is None and not source.params
    ]
    return max(counts) if counts else None


def _sdk_child(stream: PipedriveStream, listed_rows: dict[str, int]) -> StreamCost:
    """Children the SDK reads once per parent row (roles, permission sets, boards)."""
    parent_type = t.cast("type[PipedriveStream]", stream.parent_stream_type)
    parents = listed_rows.get(getattr(parent_type, "name", ""), 0)
    return StreamCost(stream.name, parents, parents * stream.next_request_cost)


def _table(tap: TapPipedrive, costs: list[StreamCost]) -> list[str]:
    budget = tap.budget
    daily = budget.daily
    caps = [budget.max_tokens_per_run] if budget.max_tokens_per_run else []
    if daily is not None:
        caps.append(math.floor(daily * budget.max_share))
    per_run = min(caps) if caps else None
    total_calls = sum(c.calls for c in costs)
    total_tokens = sum(c.tokens for c in costs)
    width = max([len(c.name) for c in costs] + [len("total")])
    header = f"{'stream':<{width}}  {'calls':>9}  {'tokens':>11}  {'of a day':>8}"
    lines = [header]
    for cost in costs:
        mark = ">=" if cost.at_least else ""
        share = f"{cost.tokens / daily:.1%}" if daily else "?"
        lines.append(
            f"{cost.name:<{width}}  {mark + format(cost.calls, ','):>9}  "
            f"{mark + format(cost.tokens, ','):>11}  {share:>8}"
        )
    share = f"{total_tokens / daily:.1%}" if daily else "?"
    lines.append(f"{'total':<{width}}  {total_calls:>9,}  {total_tokens:>11,}  {share:>8}")
    lines.append("")
    lines.append(f"Daily budget: {budget.describe_daily()}.")
    if per_run is not None:
        runs = max(1, math.ceil(total_tokens / per_run))
        lines.append(
            f"At most {per_run:,} tokens per run at the current settings "
            f"(max_budget_share {budget.max_share:g}"
            + (
                f", max_tokens_per_run {budget.max_tokens_per_run:,}"
                if budget.max_tokens_per_run
                else ""
            )
            + f"): this sync takes {runs} run{'s' if runs != 1 else ''}."
        )
    lines.append(f"This estimate cost {budget.spent:,} tokens in {budget.calls:,} calls.")
    return lines
