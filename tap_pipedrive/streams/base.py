"""The base stream: what a stream declares, and how its pages become records.

A stream only describes its endpoint (path, API version, parameters, keys, replication)
and shapes its records. Asking for pages is the run's client's job (http/client.py):
the stream turns its declaration into a ``RequestSpec`` on the main thread, bookmark
included, and writes the rows of the ``Page`` values that come back.
"""

from __future__ import annotations

import typing as t
from functools import cached_property

from singer_sdk import RESTStream, SchemaDirectory, metrics
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams.rest import PageContext
from typing_extensions import override

from tap_pipedrive import schemas
from tap_pipedrive.budget import STATE_KEY, BudgetReached
from tap_pipedrive.conform import Conformer
from tap_pipedrive.custom_fields.layout import CustomFieldSchema, layout_for
from tap_pipedrive.custom_fields.naming import CONTAINER
from tap_pipedrive.errors import StreamUnavailable
from tap_pipedrive.http.client import RequestSpec
from tap_pipedrive.http.paging import (
    CursorPaginator,
    OffsetPaginator,
    PaginatorFactory,
    SinglePagePaginator,
)
from tap_pipedrive.normalize import (
    CoercionLog,
    TimestampPaths,
    format_timestamp,
)
from tap_pipedrive.run import ListRead, Run, RunOwner
from tap_pipedrive.sdk_private import (
    pop_deselected_record_properties,
    stream_version,
    tap_of,
    utc_now,
)
from tap_pipedrive.streams.bookmarks import (
    Bookmarks,
    context_key,
    parse_bookmark,
)
from tap_pipedrive.sweeps import RETIRED_VERSION, close_full_read

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from datetime import datetime

    from singer_sdk.helpers.types import Context

    from tap_pipedrive.http.pages import Page
    from tap_pipedrive.progress import StreamProgress

SCHEMA_SOURCE = SchemaDirectory(schemas)
# Singer's soft-delete column: a row holding a time here is retired in the target.
DELETED_AT = "_sdc_deleted_at"
MAX_PAGE_SIZE = 500
# The bookmark a request starts from when the SDK has settled it (see request_spec).
_SETTLED: t.Any = object()


class PipedriveStream(RESTStream[int | str]):
    """Everything the Pipedrive streams share."""

    # The JSON file's schema, plus the custom fields of ``custom_fields_entity``.
    schema = CustomFieldSchema(SCHEMA_SOURCE)
    api_version: t.ClassVar[str] = "v2"
    primary_keys: t.ClassVar[tuple[str, ...]] = ("id",)
    # Fixed query parameters of the endpoint (e.g. a status filter).
    extra_params: t.ClassVar[dict[str, str]] = {}
    # Optional v2 fields worth having in a warehouse; they cost nothing extra.
    include_fields: t.ClassVar[tuple[str, ...]] = ()
    # The endpoint's own page-size cap, where it is below Pipedrive's usual 500.
    max_page_size: t.ClassVar[int] = MAX_PAGE_SIZE
    # False for endpoints that answer everything in one response and take no paging parameters.
    paged: t.ClassVar[bool] = True
    # Incremental streams: name of the query parameter taking the bookmark.
    updated_since_param: t.ClassVar[str | None] = None
    sort_params: t.ClassVar[dict[str, str]] = {}
    # Set when Pipedrive refused the stream (402/403): it is skipped for the rest of the run.
    refused = False
    # Pipedrive lists the deleted rows too (deals and projects asked for status=deleted).
    lists_deleted_rows: t.ClassVar[bool] = False
    # Whether this run reads the stream in full and closes it with ACTIVATE_VERSION.
    closes_full_read = False
    # The field set ("deal", "person", ...) whose custom fields become typed columns;
    # declaring it is all a stream needs (see custom_fields/).
    custom_fields_entity: t.ClassVar[str | None] = None
    # Rows at the bookmark's exact time that the previous run delivered are skipped (see
    # bookmarks.py); False where whole parents are skipped instead.
    skips_boundary_rows: t.ClassVar[bool] = True

    @classmethod
    def enabled(cls, config: t.Mapping[str, t.Any]) -> bool:
        """Whether the settings let this stream exist at all (reading mail is opt-in)."""
        return True

    @property
    def run(self) -> Run:
        """The run's shared services (client, fetch-ahead, progress), owned by the tap."""
        tap = tap_of(self)
        assert isinstance(tap, RunOwner)
        return tap.run

    # --- what to ask for ------------------------------------------------------------------
    @override
    @property
    def url_base(self) -> str:
        return self.run.client.url(self.api_version, "")

    @cached_property
    def page_size(self) -> int:
        return min(int(self.config.get("page_size") or MAX_PAGE_SIZE), self.max_page_size)

    @override
    @property
    def is_sorted(self) -> bool:
        # Incremental endpoints are asked for ascending update_time, so the bookmark
        # can advance (and the state can be resumed) after every page.
        return self.replication_key is not None

    @cached_property
    def coercions(self) -> CoercionLog:
        return CoercionLog(self.logger)

    def paginator_type(self) -> PaginatorFactory:
        """How this endpoint pages: v2 cursors, v1 offsets, or one answer."""
        if not self.paged:
            return SinglePagePaginator
        return CursorPaginator if self.api_version == "v2" else OffsetPaginator

    def paginator_from(self, context: Context | None, since: datetime | None) -> PaginatorFactory:
        """How a read from the bookmark ``since`` pages (a list read newest first stops early)."""
        return self.paginator_type()

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        """The first page's query, without bookmark or paging token (see request_spec)."""
        params: dict[str, t.Any] = dict(self.extra_params)
        if self.paged:
            params["limit"] = self.page_size
        if self.include_fields:
            params["include_fields"] = ",".join(self.include_fields)
        return params

    def bookmark_params(self, context: Context | None, since: datetime | None) -> dict[str, str]:
        """The query that asks for rows from the bookmark on (sorted by update time)."""
        if not (self.replication_key and self.updated_since_param):
            return {}
        params = dict(self.sort_params)
        if since is not None:
            params[self.updated_since_param] = format_timestamp(since)
        return params

    def request_spec(self, context: Context | None, bookmark: t.Any = _SETTLED) -> RequestSpec:
        """What the client asks for to read this partition.

        ``bookmark`` is the starting replication value; by default the one the SDK settled
        for the partition. Fetch-ahead plans with the value it will settle on.
        """
        request = self.get_http_request(
            page=PageContext(stream_context=context, next_page_token=None)
        )
        if bookmark is _SETTLED:
            bookmark = (
                self.get_starting_replication_key_value(context) if self.replication_key else None
            )
        since = parse_bookmark(bookmark)
        params = {**request.params, **self.bookmark_params(context, since)}
        return RequestSpec(
            stream=self.name,
            url=request.url,
            params=tuple((key, str(value)) for key, value in params.items() if value is not None),
            paginator=self.paginator_from(context, since),
            missing_is_empty=self.missing_is_empty(context),
            stops_at_page_state=bool(self.replication_key) and not _one_parent(context),
        )

    def missing_is_empty(self, context: Context | None) -> bool:
        """Whether a 404/410 means "nothing left to read" (a parent deleted meanwhile)."""
        return False

    @cached_property
    def next_request_cost(self) -> int:
        """Tokens one more request of this stream costs (its main endpoint's cost)."""
        path = str(getattr(self, "path", "") or "").replace("{id}", "1")
        return RequestSpec(self.name, f"{self.url_base}{path}").cost

    def budget_fits_parents(self, parents: int) -> bool:
        """Whether reading the children of ``parents`` more parents fits in the run's budget.

        Per-parent streams read a chunk of parents between two checkpoints: near the cap
        they checkpoint as soon as one more parent would not fit, so the run stops there.
        """
        per_request = max(1, int(getattr(self, "parents_per_request", 1)))
        calls = -(-parents // per_request)
        return self.run.budget.fits(calls * self.next_request_cost)

    # --- reading ---------------------------------------------------------------------------
    @override
    def request_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        if self.refused:
            return  # one warning per stream and run, not one per partition or parent
        try:
            yield from self._records_from_pages(context)
        except StreamUnavailable as exc:
            # Missing scope or plan feature: this stream is skipped, the sync goes on.
            self.refused = True
            self.logger.warning("Skipping stream %s: %s", self.name, exc)

    def _records_from_pages(self, context: Context | None) -> t.Iterator[dict[str, t.Any]]:
        """The pages of one partition, fetched ahead (http/fetch_ahead.py), as records."""
        run = self.run
        stats = self._progress
        run.progress.writing(stats)
        # The children of one parent: a STATE written after one of their pages still
        # points before that parent, so the run does not stop there (see
        # _write_state_message); it stops at the checkpoint after the parent.
        outer, self._reading_one_parent = self._reading_one_parent, _one_parent(context)
        try:
            spec = self.request_spec(context)
            self._list_read = self._list_read_for(spec, context)
            yield from self._records_of(
                run.fetcher.pages(context_key(self.name, context), spec), context
            )
            if self._list_read is not None:
                # The whole list was read: child streams may take it as their parent list.
                run.list_reads.complete(spec.path, self._list_read)
        except BudgetReached:
            # A request refused while fetching ahead: its stream's turn has come, and the
            # run ends before it (its state is where the previous run left it).
            raise BudgetReached(run.budget_stop_line(self.name)) from None
        finally:
            self._reading_one_parent = outer
            self._list_read = None

    _reading_one_parent = False
    _list_read: ListRead | None = None

    def _list_read_for(self, spec: RequestSpec, context: Context | None) -> ListRead | None:
        """A record of this read's rows, when a child stream lists its parents from it.

        Only lists asked for from a bookmark and sorted by update time qualify: that is
        how a parent list is read.
        """
        counts = self.run.list_reads.wanted.get(spec.path)
        if counts is None or _one_parent(context):
            return None
        if self.replication_key != "update_time" or not self.updated_since_param:
            return None
        return ListRead(since=self.get_starting_timestamp(context), counts=counts)

    def _note_list_rows(self, rows: list[dict[str, t.Any]]) -> None:
        read = self._list_read
        if read is None:
            return
        for row in rows:
            if self.lists_deleted_rows and row.get("is_deleted"):
                continue  # a parent list leaves deleted rows out
            # Only the counts a child stream reads: a row may carry any number of others.
            counts = tuple(
                (key, value) for key in read.counts if type(value := row.get(key)) is int
            )
            read.rows.append((row.get("id"), row.get("update_time"), counts))

    def _records_of(
        self,
        pages: Iterable[Page],
        context: Context | None,
        parse: t.Callable[[Page], Iterable[dict[str, t.Any]]] | None = None,
    ) -> Iterator[dict[str, t.Any]]:
        run = self.run
        stats = self._progress
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)
            count = 0
            for page in pages:
                request_counter.increment()
                self._log_request_duration(page, context)
                run.budget.page_written(page.cost)
                if page.gone:
                    self.vanished(page)
                records = iter((parse or self.parse_page)(page))
                try:
                    first_record = next(records)
                except StopIteration:
                    if page.continue_if_empty:
                        continue
                    # The usual end of every list (per parent, for child streams): DEBUG.
                    self.logger.debug(
                        "Pagination stopped after %d pages: the last was empty", count
                    )
                    return
                yield first_record
                yield from records
                self._report_nul_fields(page)
                count += 1
                run.progress.page_done(stats)

    def parse_page(self, page: Page) -> Iterable[dict[str, t.Any]]:
        """The rows of one page (as records before post_process)."""
        rows = page.rows()
        self._note_list_rows(rows)
        yield from rows
        if self.replication_key:
            # Every row of this page has been processed by now: emitting the state here
            # makes the sync resumable after each page, and a failure on the next
            # request cannot lose the bookmark of rows already delivered.
            self._write_state_message()

    def vanished(self, page: Page) -> None:
        """A parent deleted after its list was read (a 404/410 on its own request)."""

    def _log_request_duration(self, page: Page, context: Context | None) -> None:
        # The SDK's per-request METRIC line (log_request_metrics): the client, not the
        # SDK's request loop, sends the requests, so the point is logged here.
        tags: dict[str, t.Any] = {
            metrics.Tag.STREAM: self.name,
            metrics.Tag.ENDPOINT: self.path,
            metrics.Tag.HTTP_STATUS_CODE: page.status,
            metrics.Tag.STATUS: metrics.Status.SUCCEEDED
            if page.status < 400
            else metrics.Status.FAILED,
        }
        if context:
            tags[metrics.Tag.CONTEXT] = context
        metrics.log(
            self.metrics_logger,
            metrics.Point(
                "timer", metric=metrics.Metric.HTTP_REQUEST_DURATION, value=page.elapsed, tags=tags
            ),
        )

    def _report_nul_fields(self, page: Page) -> None:
        # Once per page, after its rows were decoded (that is when NUL is removed).
        fields, page.nul_fields = page.nul_fields, []
        for field in fields:
            self.coercions.coerced(field, "text with NUL characters", "text without them")

    # --- records -----------------------------------------------------------------------
    @override
    def _generate_record_messages(
        self, record: dict[str, t.Any]
    ) -> t.Generator[RecordMessage, None, None]:
        """The SDK's RECORD path with its per-record schema walks compiled away.

        Private SDK method, overridden for speed: same steps as the SDK's (drop
        deselected properties, conform to the schema, apply stream maps), but
        deselection is skipped when nothing is deselected, and conformance uses a
        ``Conformer`` compiled once (see conform.py) instead of the SDK's walk per record.
        tests/test_records.py compares the output with the SDK's own path.
        """
        self._progress.records += 1
        if self._has_deselected_properties:
            pop_deselected_record_properties(record, self.schema, self.mask)
        record = self._conformer(record)
        version = stream_version(self)
        if version is not None and record.get(DELETED_AT) is not None:
            # A row Pipedrive lists as deleted: older than any read, so the next
            # activation retires it (hard_delete removes it).
            version = RETIRED_VERSION
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=version,
                    time_extracted=utc_now(),
                )

    @cached_property
    def _conformer(self) -> Conformer:
        return Conformer(self.effective_schema, self.logger)

    @cached_property
    def _progress(self) -> StreamProgress:
        return self.run.progress.stream(self.name)

    @cached_property
    def _has_deselected_properties(self) -> bool:
        return not all(self.mask.values())

    @override
    def _write_state_message(self) -> None:
        # Private SDK method, the one place every STATE message of a stream goes through:
        # each carries what the tap spent today, and a run past its cap stops right after
        # one, so the state covers exactly what was written.
        budget = self.run.budget
        t.cast("dict[str, t.Any]", self.tap_state)[STATE_KEY] = budget.state_entry()
        super()._write_state_message()
        if not self._reading_one_parent and not budget.fits(self.next_request_cost):
            self.run.fetcher.stop()
            raise BudgetReached(self.run.budget_stop_line(self.name))

    @override
    def finalize_state_progress_markers(self, state: dict[str, t.Any] | None = None) -> None:
        # Overridden (the SDK calls it once a stream's read, children included, is complete,
        # and never after a failed one): the moment to close a full read (see sweeps.py).
        if not state:
            close_full_read(self, refused=self._read_was_refused())
        super().finalize_state_progress_markers(state)

    def _read_was_refused(self) -> bool:
        """Whether Pipedrive refused this stream, or the parent stream its rows hang off."""
        stream: t.Any = self
        while stream is not None:
            if stream.refused:
                return True
            parent = stream.parent_stream_type
            stream = tap_of(self).streams.get(parent.name) if parent else None
        return False

    @override
    def log_sync_costs(self) -> None:
        # Called once per stream at the end of the run: the moment to sum up coercions too.
        super().log_sync_costs()
        self.coercions.summary()
        self.run.progress.log_summary()

    @cached_property
    def _timestamp_paths(self) -> TimestampPaths:
        """Properties declared as date-time or date, at any depth (custom fields convert
        their own values, see custom_fields/conversion.py)."""
        return TimestampPaths(self.schema, skip=frozenset({CONTAINER}))

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        self._timestamp_paths.apply(row, self.coercions)
        if self.lists_deleted_rows and row.get("is_deleted"):
            # Retired in the target as soon as Pipedrive lists it as deleted, its last
            # values kept; deleted deals and projects are updated at their deletion.
            row[DELETED_AT] = row.get("update_time")
        if (
            self.replication_key
            and self.skips_boundary_rows
            and not self.bookmarks.deliver(row, context)
        ):
            return None
        if self.custom_fields_entity is not None:
            layout_for(self).apply(row)
        return row

    @cached_property
    def bookmarks(self) -> Bookmarks:
        """Boundary ids, parent checkpoints and the newest-first re-sort (bookmarks.py)."""
        return Bookmarks(self)


def _one_parent(context: Context | None) -> bool:
    """Whether ``context`` asks for the children of some parents rather than a partition."""
    return bool(context) and ("id" in context or "ids" in context)  # type: ignore[operator]


class V1Stream(PipedriveStream):
    """An API v1 endpoint (offset paging, or a single page)."""

    api_version = "v1"


class IncrementalV2Stream(PipedriveStream):
    """A v2 list that filters on ``updated_since`` and sorts by ``update_time``."""

    replication_key = "update_time"
    updated_since_param = "updated_since"
    sort_params: t.ClassVar[dict[str, str]] = {"sort_by": "update_time", "sort_direction": "asc"}


class ArchivableMixin(PipedriveStream):
    """Entities whose archived rows live behind a second endpoint with the same shape.

    Since 2025-07-15 Pipedrive's normal lists leave archived rows out. Both lists
    feed one stream; each is a partition with its own bookmark. The partition key is the
    record's own ``is_archived`` property, so the SDK finds nothing to add to the rows.
    """

    archived_path: t.ClassVar[str]

    @override
    @property
    def partitions(self) -> list[dict[str, t.Any]] | None:
        return [{"is_archived": False}, {"is_archived": True}]

    @override
    def get_url(self, context: Context | None) -> str:
        if context and context.get("is_archived"):
            return f"{self.url_base}{self.archived_path}"
        return super().get_url(context)

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        row.setdefault("is_archived", bool(context and context.get("is_archived")))
        return super().post_process(row, context)
