"""Read patterns that several stream modules share.

* ``NewestFirstStream``: incremental reads of lists that Pipedrive sorts by update time but
  cannot filter by it (``/files``, ``/leads/archived``).
* ``ChangedParentsStream``: children (followers, deal products, flows ...) read only for the
  parents created or updated since the child stream's own bookmark, one request per parent
  or one per batch of up to 100 parents.
"""

from __future__ import annotations

import base64
import heapq
import threading
import typing as t
import weakref
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from urllib.parse import urlparse

from typing_extensions import override

from tap_pipedrive.budget import BudgetReached
from tap_pipedrive.errors import StreamUnavailable
from tap_pipedrive.http.client import RequestSpec
from tap_pipedrive.http.paging import CursorPaginator, OffsetPaginator, PaginatorFactory
from tap_pipedrive.normalize import format_timestamp, to_rfc3339
from tap_pipedrive.sdk_private import tap_of
from tap_pipedrive.streams.base import PipedriveStream, V1Stream
from tap_pipedrive.streams.bookmarks import (
    EARLIEST,
    Bookmarks,
    ParentMark,
    context_key,
    future_starting_value,
    parse_time,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context

    from tap_pipedrive.http.pages import Page
    from tap_pipedrive.run import ListRead, Run


class NewestFirstPaginator(OffsetPaginator):
    """Offset paging of a list sorted newest first, back to a bookmark and no further.

    The page holding the first row older than the bookmark is the last one asked for. The
    decision is taken where the page arrives, so a thread fetching ahead never pays for a
    page past the bookmark (on ``/files`` a page costs 20 tokens).
    """

    def __init__(self, key: str, back_to: datetime) -> None:
        super().__init__()
        self._key = key
        self._back_to = back_to

    @override
    def has_more(self, page: Page) -> bool:
        if not super().has_more(page):
            return False
        for row in reversed(page.rows()):
            moment = parse_time(row.get(self._key))
            if moment is not None and moment < self._back_to:
                return False
        return True


@dataclass(frozen=True)
class ReadBackTo:
    """Builds a ``NewestFirstPaginator``; a value, so equal specs stay equal (fetch-ahead)."""

    key: str
    back_to: datetime

    def __call__(self) -> NewestFirstPaginator:
        return NewestFirstPaginator(self.key, self.back_to)


class NewestFirstStream(PipedriveStream):
    """Incremental reads of a v1 list that sorts by update time but has no ``updated_since``.

    With a bookmark from an earlier run the list is read newest first, and reading stops at
    the first row older than the bookmark: a run costs a page or two however long the list
    is. The rows found are emitted oldest first, so the bookmark advances as for any sorted
    stream. Without a bookmark (the first sync) the list is read oldest first, all of it,
    leaving out rows older than ``start_date``.
    """

    replication_key = "update_time"

    def reads_newest_first(self, context: Context | None) -> bool:
        """Whether this partition is read this way (a stream may mix it with a filter)."""
        return True

    def _has_bookmark(self, context: Context | None) -> bool:
        return self.get_context_state(context).get("replication_key_value") is not None

    @override
    def bookmark_params(self, context: Context | None, since: datetime | None) -> dict[str, str]:
        if not self.reads_newest_first(context):
            return super().bookmark_params(context, since)
        params = dict(self.sort_params)
        params.pop(self.updated_since_param or "", None)
        direction = "DESC" if self._has_bookmark(context) else "ASC"
        params["sort"] = f"{self.replication_key} {direction}"
        return params

    @override
    def paginator_from(self, context: Context | None, since: datetime | None) -> PaginatorFactory:
        if since is None or not self.reads_newest_first(context) or not self._has_bookmark(context):
            return super().paginator_from(context, since)
        return ReadBackTo(str(self.replication_key), since)

    @override
    def request_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        if not self.reads_newest_first(context):
            yield from super().request_records(context)
            return
        start = self.get_starting_timestamp(context)
        if not self._has_bookmark(context):
            for row in super().request_records(context):
                moment = parse_time(row.get(self.replication_key))
                if start is None or moment is None or moment >= start:
                    yield row
            return
        key = str(self.replication_key)
        yield from Bookmarks.oldest_first(super().request_records(context), key, start)


@dataclass(frozen=True)
class ParentSource:
    """A list the parents of a child stream come from."""

    path: str
    version: str = "v2"
    params: tuple[tuple[str, str], ...] = ()
    # The list takes ``updated_since`` and sorts by update time; otherwise it is read whole
    # and filtered here.
    filtered: bool = True
    paginator: PaginatorFactory | None = None
    # ``*_count`` fields asked for through ``include_fields`` (free on v2 lists): a child
    # stream whose count is 0 on a parent's row has nothing to read for that parent.
    counts: tuple[str, ...] = ()

    @property
    def plain(self) -> bool:
        """A list read as its list stream reads it (no parameters of its own, the usual
        paging), so that stream's whole read of it this run may serve instead."""
        return self.filtered and not self.params and self.paginator is None


@dataclass(frozen=True)
class Parent(ParentMark):
    # The source's ``counts`` fields as the list row gave them (absent ones left out).
    counts: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    def count(self, name: str) -> int | None:
        """A count from the list row; None when the row did not say."""
        for key, value in self.counts:
            if key == name:
                return value
        return None


@dataclass
class _ListedSource:
    """One source's parents as read once in a run, for every child stream that needs them."""

    since: datetime | None
    parents: list[Parent]
    refused: bool


class ParentLists:
    """The parent lists of one run, each read once and shared by its child streams.

    Seven deal children used to list ``/deals`` and ``/deals/archived`` seven times. Now
    the first child stream to need a list reads it from the earliest bookmark of all the
    selected child streams that use it, and keeps the ids, update times and counts (a few
    dozen bytes a parent); each child stream then takes the parents past its own bookmark.
    When the list stream itself (``deals``) read the same list in full this run, from no
    later a bookmark, its rows serve instead and the list is not read again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listed: dict[ParentSource, _ListedSource] = {}

    def parents(
        self, child: ChangedParentsStream, source: ParentSource, start: datetime | None
    ) -> tuple[list[Parent], bool]:
        """Rows (id and time only) and parents of ``source`` from ``start``; and a refusal."""
        with self._lock:
            listed = self._listed.get(source)
            if listed is None or not _covers(listed.since, start):
                since = _earliest_start(child, source, start)
                read = child.list_read(source)
                if read is not None and _covers(read.since, since):
                    # The list stream read this very list in full: no second listing.
                    rows, refused = child.parents_of(source, read, since), False
                    since = read.since
                else:
                    rows, refused = child.list_source(source, since)
                listed = _ListedSource(since, rows, refused)
                self._listed[source] = listed
        return listed.parents, listed.refused


def _parent(
    key: t.Any, text: t.Any, counts: tuple[tuple[str, t.Any], ...], since: datetime | None
) -> Parent | None:
    """A parent from a list row's id, update_time and counts; None when older than ``since``.

    Only whole numbers count as counts (a count the row did not give reads the parent).
    """
    moment = parse_time(text)
    if since is not None and moment is not None and moment < since:
        return None
    normalized = to_rfc3339(text) if moment is not None else None
    kept = tuple((name, value) for name, value in counts if type(value) is int)
    return Parent(key, moment or EARLIEST, normalized, kept)


def source_path(run: Run, source: ParentSource) -> str:
    """The URL path a parent list is read from (what list reads are keyed by)."""
    return urlparse(run.client.url(source.version, source.path)).path


def wanted_list_paths(streams: Iterable[t.Any], run: Run) -> dict[str, tuple[str, ...]]:
    """The list paths selected child streams read their parents from (plain lists only),
    each with the ``*_count`` fields they read."""
    paths: dict[str, set[str]] = {}
    for stream in streams:
        if not isinstance(stream, ChangedParentsStream) or not stream.selected:
            continue
        for source in stream.parent_sources:
            if source.plain:
                paths.setdefault(source_path(run, source), set()).update(source.counts)
    return {path: tuple(sorted(counts)) for path, counts in paths.items()}


def _covers(since: datetime | None, start: datetime | None) -> bool:
    return since is None or (start is not None and since <= start)


def _earliest_start(
    child: ChangedParentsStream, source: ParentSource, start: datetime | None
) -> datetime | None:
    """The earliest bookmark among the selected child streams reading ``source``."""
    earliest = start
    for stream in tap_of(child).streams.values():
        if stream is child or not isinstance(stream, ChangedParentsStream):
            continue
        if source not in stream.parent_sources or not stream.selected or stream.refused:
            continue
        if earliest is None:
            return None
        value = future_starting_value(stream, None)
        moment = parse_time(value) if value is not None else None
        if moment is None:
            return None
        earliest = min(earliest, moment)
    return earliest


# One registry per tap (a tap runs one sync); weak, so a finished tap takes it along.
_PARENT_LISTS: weakref.WeakKeyDictionary[t.Any, ParentLists] = weakref.WeakKeyDictionary()
_PARENT_LISTS_LOCK = threading.Lock()


def parent_lists(tap: t.Any) -> ParentLists:
    with _PARENT_LISTS_LOCK:
        found = _PARENT_LISTS.get(tap)
        if found is None:
            found = _PARENT_LISTS[tap] = ParentLists()
        return found


def encode_counts(counts: dict[t.Any, int]) -> str:
    """Parent counts as a short text: sorted integer ids as deltas, compressed."""
    ids = sorted(key for key in counts if isinstance(key, int) and not isinstance(key, bool))
    pairs, previous = [], 0
    for key in ids:
        pairs.append(f"{key - previous}:{counts[key]}")
        previous = key
    return base64.b64encode(zlib.compress(",".join(pairs).encode("ascii"), 9)).decode("ascii")


def decode_counts(text: t.Any) -> dict[t.Any, int]:
    """The counts of ``encode_counts``; {} for anything else (every parent is then read)."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        # Bounded: the state is input like any other (a million parents fit easily).
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(text, validate=True), 1 << 26)
        if not inflater.eof:
            return {}  # cut short (or larger than any real account's)
        counts, previous = {}, 0
        for pair in raw.decode("ascii").split(","):
            delta, count = pair.split(":")
            previous += int(delta)
            counts[previous] = int(count)
    except (ValueError, zlib.error):
        return {}
    return counts


class ChangedParentsStream(PipedriveStream):
    """Children of the parents created or updated since this stream's bookmark.

    The parents come from their own lists, filtered by ``updated_since`` and sorted by
    update time (or, where a list cannot filter, read whole and filtered here). The first
    sync reads the children of every parent; later ones only those of changed parents.

    Each child row carries its parent's ``update_time`` as ``<parent>_update_time``: it is the
    replication key, and it tells a warehouse which rows are current (a child removed in
    Pipedrive keeps the older parent time). The state is one bookmark per stream, plus the
    ids of the parents read at exactly the bookmark's time, which the next run skips.

    A parent deleted between the list and its own request (404/410) is skipped quietly.
    """

    parent_sources: t.ClassVar[tuple[ParentSource, ...]]
    # Row property naming the parent; the tap fills it where the API leaves it out. None
    # where the rows name their parents their own way (organization relationships).
    parent_key: t.ClassVar[str | None] = None
    # 1: one request per parent, its id in the path ({id}) or in ``parent_id_param``.
    # More: one request names up to this many parents in ``parent_ids_param`` (comma list).
    parents_per_request: t.ClassVar[int] = 1
    parent_id_param: t.ClassVar[str | None] = None
    parent_ids_param: t.ClassVar[str] = "deal_ids"
    # The ``*_count`` field of the parent's list row that counts this stream's rows; a
    # parent whose count is 0 is not requested (its bookmark still moves past it).
    parent_count: t.ClassVar[str | None] = None
    # Also skip a changed parent whose count is the one it had when its children were last
    # read (followers, participants: rows that only come and go). The state keeps those
    # counts, compressed. A bulk edit of every parent then reads no children; a swap of
    # one row for another is left to a full re-sync.
    skip_unchanged_counts: t.ClassVar[bool] = False
    # Parents whose children are read between two state messages.
    parents_per_checkpoint: t.ClassVar[int] = 25
    # Children are emitted in parent order, which this class guarantees on parsed times.
    check_sorted = False
    skips_boundary_rows = False  # whole parents at the bookmark are skipped instead

    @cached_property
    def vanished_parents(self) -> list[t.Any]:
        return []

    # --- parents ------------------------------------------------------------------------
    def parent_spec(self, source: ParentSource, since: datetime | None) -> RequestSpec:
        """The request for one parent list, sorted by update time from ``since`` if it can."""
        params = {**dict(source.params), "limit": str(self.page_size)}
        if source.counts:
            params["include_fields"] = ",".join(source.counts)
        if source.filtered:
            if source.version == "v2":
                params.update(sort_by="update_time", sort_direction="asc")
            else:
                params["sort"] = "update_time ASC"
            if since is not None:
                params["updated_since"] = format_timestamp(since)
        paginator = source.paginator or (
            CursorPaginator if source.version == "v2" else OffsetPaginator
        )
        return RequestSpec(
            # Named after the child, so its cost and a refusal are reported for the
            # stream the list is read for.
            stream=self.name,
            url=self.run.client.url(source.version, source.path),
            params=tuple(params.items()),
            paginator=paginator,
        )

    def list_source(
        self, source: ParentSource, since: datetime | None
    ) -> tuple[list[Parent], bool]:
        """Read one parent list from ``since``: its parents in list order, and a refusal."""
        spec = self.parent_spec(source, since)
        run = self.run
        run.progress.writing(self._progress)
        parents = []
        pages = run.fetcher.pages(context_key(self.name, {"parents": source.path}), spec)
        try:
            for row in self._records_of(pages, None, parse=self._parent_rows):
                counts = tuple((name, row.get(name)) for name in source.counts)
                parent = _parent(row.get("id"), row.get("update_time"), counts, since)
                if parent is not None:
                    parents.append(parent)
        except StreamUnavailable as exc:
            self.logger.warning("Skipping stream %s: %s", self.name, exc)
            return parents, True
        except BudgetReached:
            raise BudgetReached(run.budget_stop_line(self.name)) from None
        return parents, False

    def list_read(self, source: ParentSource) -> ListRead | None:
        """This run's whole read of the source's list by its list stream, if it may serve."""
        if not source.plain:
            return None
        return self.run.list_reads.get(source_path(self.run, source))

    def parents_of(
        self, source: ParentSource, read: ListRead, since: datetime | None
    ) -> list[Parent]:
        """The parents of a list read by its list stream, as ``list_source`` makes them."""
        wanted = set(source.counts)
        found = (
            _parent(key, text, tuple(c for c in counts if c[0] in wanted), since)
            for key, text, counts in read.rows
        )
        return [parent for parent in found if parent is not None]

    def _parent_rows(self, page: Page) -> Iterable[dict[str, t.Any]]:
        return page.rows()

    def _read_source(self, source: ParentSource, start: datetime | None) -> Iterator[Parent]:
        listed, refused = parent_lists(self.run).parents(self, source, start)
        if refused:
            self.refused = True
        for parent in listed:
            if start is not None and parent.update_time < start:
                continue
            yield parent

    def changed_parents(self, start: datetime | None) -> Iterator[Parent]:
        """Parents updated at or after ``start``, oldest first, each once."""
        filtered = [s for s in self.parent_sources if s.filtered]
        unfiltered = [s for s in self.parent_sources if not s.filtered]
        seen: set[t.Any] = set()
        merged: Iterable[Parent] = heapq.merge(
            *(self._read_source(source, start) for source in filtered),
            key=lambda parent: parent.update_time,
        )
        if unfiltered:
            # Lists without a server-side filter are read whole; their parents are sorted
            # here (ids and times only, so memory stays small).
            latest: dict[t.Any, Parent] = {}
            for source in unfiltered:
                for parent in self._read_source(source, start):
                    known = latest.get(parent.id)
                    if known is None or parent.update_time > known.update_time:
                        latest[parent.id] = parent
            merged = heapq.merge(
                merged,
                sorted(latest.values(), key=lambda p: p.update_time),
                key=lambda parent: parent.update_time,
            )
        progress = self.run.progress
        for parent in merged:
            if parent.id is None or parent.id in seen:
                continue
            seen.add(parent.id)
            progress.parents_listed(self._progress)
            yield parent
        progress.listing_done(self._progress)

    def has_children(self, parent: Parent) -> bool:
        """False when the parent's list row says this stream has nothing (new) to read."""
        if self.parent_count is None:
            return True
        count = parent.count(self.parent_count)
        if count is None:
            return True
        if count == 0:
            return False
        if self.closes_full_read:
            # A sweep reads every parent that has children: what it does not see is retired.
            return True
        return not (self.skip_unchanged_counts and self._counts_read.get(parent.id) == count)

    @cached_property
    def _counts_read(self) -> dict[t.Any, int]:
        """Parent id -> the count its children were last read at (see skip_unchanged_counts)."""
        return {}

    def _note_counts(self, chunk: list[Parent]) -> None:
        if not self.skip_unchanged_counts or self.parent_count is None:
            return
        for parent in chunk:
            count = parent.count(self.parent_count)
            if count:
                self._counts_read[parent.id] = count
            else:
                self._counts_read.pop(parent.id, None)

    # --- children ------------------------------------------------------------------------
    @override
    def get_starting_replication_key_value(self, context: Context | None) -> t.Any:
        if context and ("id" in context or "ids" in context):
            # A request for some parents' children, not a partition: it has no bookmark,
            # and asking the state manager would create a state entry per parent.
            return None
        return super().get_starting_replication_key_value(context)

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        params = super().get_url_params(context, next_page_token)
        if context and "ids" in context:
            params[self.parent_ids_param] = context["ids"]
        elif context and self.parent_id_param:
            params[self.parent_id_param] = context["id"]
        return params

    @override
    def missing_is_empty(self, context: Context | None) -> bool:
        # One parent per request: a parent deleted after the list was read is gone (404/410).
        return self.parents_per_request == 1

    @override
    def vanished(self, page: Page) -> None:
        self.vanished_parents.append(page.path)

    def _children(self, chunk: list[Parent]) -> Iterator[dict[str, t.Any]]:
        parents = [parent for parent in chunk if self.has_children(parent)]
        if not parents:
            return
        if self.parents_per_request > 1:
            key = t.cast("str", self.parent_key)
            position = {parent.id: index for index, parent in enumerate(parents)}
            ids = ",".join(str(parent.id) for parent in parents)
            rows = list(super().request_records({"ids": ids}))
            # One request covers many parents: emit the rows in parent order.
            rows.sort(key=lambda row: position.get(row.get(key), len(parents)))
            for row in rows:
                index = position.get(row.get(key))
                yield self._with_parent(row, parents[-1 if index is None else index])
            return
        for parent in parents:
            for row in super().request_records({"id": parent.id}):
                yield self._with_parent(row, parent)
            if self.refused:
                return

    def _with_parent(self, row: dict[str, t.Any], parent: Parent) -> dict[str, t.Any]:
        if self.parent_key is not None and row.get(self.parent_key) is None:
            row[self.parent_key] = parent.id
        row[t.cast("str", self.replication_key)] = parent.time_text
        return row

    @override
    def request_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        if self.refused:
            return
        start = self.get_starting_timestamp(context)
        state = self.get_context_state(context)
        at_bookmark, skip = self.bookmarks.parents_done_before()
        chunk_size = max(self.parents_per_request, 1)
        if chunk_size == 1:
            chunk_size = self.parents_per_checkpoint
        if self.skip_unchanged_counts:
            self._counts_read.update(decode_counts(state.get("parent_counts")))
        chunk: list[Parent] = []
        wanted = 0  # parents of the chunk whose children are requested
        progress = self.run.progress
        fetcher = self.run.fetcher
        _ = self.vanished_parents  # created here, not by two fetching threads at once
        listed = list(self.changed_parents(start))
        if self.parents_per_request == 1 and not self.refused:
            # Fetched ahead in parallel, written in this order (see http/fetch_ahead.py).
            fetcher.queue(
                self.name,
                (
                    (
                        context_key(self.name, {"id": parent.id}),
                        self.request_spec({"id": parent.id}),
                    )
                    for parent in listed
                    if self.has_children(parent)
                    and not (parent.update_time == at_bookmark and parent.id in skip)
                ),
                fits=self.budget_fits_parents,
            )
        try:
            for parent in listed:
                if parent.update_time == at_bookmark and parent.id in skip:
                    progress.parents_done(self._progress, 1)
                    continue  # read by the previous run, which stopped at this very time
                chunk.append(parent)
                wanted += self.has_children(parent)
                if wanted >= chunk_size or not self.budget_fits_parents(len(chunk) + 1):
                    yield from self._children(chunk)
                    progress.parents_done(self._progress, len(chunk))
                    self._note_counts(chunk)
                    if not self.refused:
                        self.bookmarks.checkpoint(chunk)
                    chunk, wanted = [], 0
                if self.refused:
                    return
            if self.refused:
                return
            if chunk:
                yield from self._children(chunk)
                progress.parents_done(self._progress, len(chunk))
                if self.refused:
                    return
                self._note_counts(chunk)
            if self.skip_unchanged_counts and listed:
                # Written once the stream is through: a run that stops early keeps the
                # counts of the run before (a changed parent is then read again).
                state["parent_counts"] = encode_counts(self._counts_read)
            if chunk:
                self.bookmarks.checkpoint(chunk)
            elif self.skip_unchanged_counts and listed:
                self.state_manager.is_flushed = False
                self._write_state_message()
        finally:
            fetcher.forget(self.name)
        if self.vanished_parents:
            self.logger.info(
                "Stream %s: %d parent(s) were deleted while the sync ran; skipped",
                self.name,
                len(self.vanished_parents),
            )


# Where field history comes from (setting ``field_history``). The two overlap: every field
# change a changelog lists is also in the updates feed, so only one of them is read.
FIELD_HISTORY_SOURCES = ("changelog", "flow")
DEFAULT_FIELD_HISTORY = "changelog"


def _field_history(config: t.Mapping[str, t.Any]) -> str:
    return str(config.get("field_history") or DEFAULT_FIELD_HISTORY)


class ChangelogStream(ChangedParentsStream, V1Stream):
    """Field-value history (``/{deals,persons,organizations}/{id}/changelog``, 20 tokens).

    A v1 endpoint with cursor paging. The default source of field history: it carries
    every field change the updates feed does, at half the price and without the feed's
    copies of activities, notes, files and mails (streams of their own).
    """

    @override
    @classmethod
    def enabled(cls, config: t.Mapping[str, t.Any]) -> bool:
        return _field_history(config) == "changelog"

    @override
    def paginator_type(self) -> PaginatorFactory:
        return CursorPaginator


class FlowStream(ChangedParentsStream):
    """The updates feed (``/{deals,persons,organizations}/{id}/flow``) of changed parents.

    Each row wraps another object (``object`` names its kind, ``data`` holds it); its id is
    lifted to ``id``, which is unique per kind. Custom-field changes are included. The feed
    costs 40 tokens per parent, so it is read only with ``field_history`` set to ``flow``,
    and then instead of the changelogs (whose rows it repeats).
    """

    extra_params: t.ClassVar[dict[str, str]] = {"all_changes": "1"}

    @override
    @classmethod
    def enabled(cls, config: t.Mapping[str, t.Any]) -> bool:
        return _field_history(config) == "flow"

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        data = row.get("data")
        if row.get("id") is None and isinstance(data, dict):
            row["id"] = data.get("id")
        if row.get("id") is None or row.get("object") is None:
            self.coercions.coerced("id", data, outcome="row skipped (no id)")
            return None
        return super().post_process(row, context)
