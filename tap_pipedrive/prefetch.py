"""Fetching pages ahead of the records being written.

Two kinds of overlap, neither visible in the output:

- Within a stream: as soon as page N has arrived, its successor's token is known, so the
  request for page N+1 goes out in a background thread while page N's records are
  processed and written. The SDK paginator still decides every next page.
- Across streams: during a full sync, up to ``max_parallel_streams - 1`` of the streams
  still to come fetch their pages in background threads.
- Across the parents of a child stream: the stream queues the parents it will read, and
  up to ``max_parallel_parents - 1`` of the parents after the one being written fetch
  their pages in background threads (the per-parent phase is mostly waiting on the
  network; the shared pacer in ratelimit.py keeps all threads inside the burst window).

Only the main thread writes Singer messages, one stream after the other in the order the
SDK syncs them, so SCHEMA, RECORD and STATE messages keep their usual sequence and every
STATE still covers exactly the records written before it. Memory stays bounded: the
stream being written holds at most ``PAGES_AHEAD`` pages beyond the one in hand, and the
streams waiting their turn keep raw bodies (not decoded objects) up to
``AHEAD_BUDGET_BYTES`` in total, after which they wait.
"""

from __future__ import annotations

import json
import sys
import threading
import typing as t
from collections import deque

from singer_sdk.helpers._state import get_state_if_exists
from singer_sdk.helpers._typing import to_json_compatible
from singer_sdk.pagination import SinglePagePaginator
from singer_sdk.streams.rest import RESTStream

from tap_pipedrive.client import PipedriveStream, forget_json, response_head
from tap_pipedrive.errors import StreamUnavailable

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

# Pages fetched beyond the one being processed, for the stream being written.
PAGES_AHEAD = 1
# Raw response bytes that streams waiting their turn may hold in total.
AHEAD_BUDGET_BYTES = 48 * 1024 * 1024
DEFAULT_MAX_PARALLEL_STREAMS = 4
# Parents whose children are fetched at the same time: enough to fill a Premium API-token
# burst window (100 requests in 2 s) at about 150 ms a request.
DEFAULT_MAX_PARALLEL_PARENTS = 8
SWITCH_INTERVAL = 0.001

_END = object()
# The job a background thread is fetching for (see Prefetcher.pinned_start).
_thread_job = threading.local()


class Page(t.NamedTuple):
    """One fetched page, as the SDK's request loop sees it."""

    request: requests.PreparedRequest
    response: requests.Response
    # Whether the paginator goes on after this page even if it yields no records.
    continue_if_empty: bool


def context_key(stream_name: str, context: Context | None) -> str:
    return stream_name + json.dumps(dict(context or {}), sort_keys=True, default=str)


class PageJob:
    """The pages of one stream partition, fetched by one background thread."""

    def __init__(
        self,
        fetcher: Prefetcher,
        stream: PipedriveStream,
        context: Context | None,
        starting_value: t.Any,
    ) -> None:
        self.stream = stream
        self.context = context
        self.key = context_key(stream.name, context)
        # The bookmark the requests start from, settled on the main thread: background
        # threads never read or create state entries.
        self.starting_value = starting_value
        self._fetcher = fetcher
        self._pages: deque[t.Any] = deque()
        self.current = False  # the main thread is writing this job's records
        self.cancelled = False
        self.started = False
        self.done = False  # the thread has finished
        self.buffered_bytes = 0  # bytes counted against the ahead budget
        self.requests = 0

    # --- background thread -------------------------------------------------------------
    def start(self) -> None:
        self.started = True
        _shorten_switch_interval()
        thread = threading.Thread(target=self._run, name=f"fetch-{self.stream.name}", daemon=True)
        thread.start()

    def _run(self) -> None:
        stream = self.stream
        _thread_job.current = self
        try:
            paginator = stream.get_new_paginator() or SinglePagePaginator()
            send = stream.request_decorator(stream._request)
            while not paginator.finished:
                if not self._wait_for_room():
                    return
                prepared = stream._prepare_request(context=self.context, page=paginator)
                response = send(prepared, self.context)
                self.requests += 1
                keep_going = paginator.continue_if_empty(response)
                last = not keep_going and not _has_rows(response)  # the SDK stops there too
                error = None
                if not last:
                    try:
                        paginator.advance(response)
                    except Exception as exc:  # raised after this page's records, as in the SDK
                        error = exc
                self._put(Page(prepared, response, keep_going))
                if error is not None:
                    raise error
                if last:
                    break
        except BaseException as exc:  # handed to the main thread, raised there
            self._put(exc)
        finally:
            self._put(_END)
            self._fetcher._job_finished(self)

    def _wait_for_room(self) -> bool:
        fetcher = self._fetcher
        with fetcher.cond:
            while True:
                if self.cancelled:
                    return False
                if self.current:
                    if len(self._pages) < PAGES_AHEAD:
                        return True
                elif fetcher.ahead_bytes < AHEAD_BUDGET_BYTES:
                    return True
                fetcher.cond.wait()

    def _put(self, item: t.Any) -> None:
        fetcher = self._fetcher
        with fetcher.cond:
            if self.cancelled:
                return
            if isinstance(item, Page) and not self.current:
                # Waiting its turn: keep the raw body only (a decoded page is several
                # times larger); it is decoded again when written.
                forget_json(item.response)
                size = len(item.response.content or b"")
                self.buffered_bytes += size
                fetcher.ahead_bytes += size
            self._pages.append(item)
            fetcher.cond.notify_all()

    # --- main thread ---------------------------------------------------------------------
    def pages(self) -> Iterator[Page]:
        """Yield the pages in order; raise what the fetch raised."""
        fetcher = self._fetcher
        finished = False
        try:
            while True:
                with fetcher.cond:
                    while not self._pages:
                        fetcher.cond.wait()
                    item = self._pages.popleft()
                    fetcher.cond.notify_all()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    if not isinstance(item, StreamUnavailable):
                        # The sync ends here: nothing planned after it will be written.
                        fetcher.stop()
                    raise item
                yield item
        finally:
            fetcher._release(self, finished=finished)


class Prefetcher:
    """Schedules page fetching for one tap; shared by its streams."""

    def __init__(
        self,
        max_parallel_streams: int = DEFAULT_MAX_PARALLEL_STREAMS,
        max_parallel_parents: int = DEFAULT_MAX_PARALLEL_PARENTS,
    ) -> None:
        self.max_parallel_streams = max(1, int(max_parallel_streams))
        self.max_parallel_parents = max(1, int(max_parallel_parents))
        # The per-parent partitions a child stream will write, in that order, made into
        # jobs only when they start (a first sync may queue 100,000 parents); and those
        # started ahead of the main thread (by key) until it takes them.
        self._queued: Iterator[PageJob] | None = None
        self._queued_for: PipedriveStream | None = None
        self._ahead: dict[str, PageJob] = {}
        self.cond = threading.Condition(threading.Lock())
        self.ahead_bytes = 0
        self._plan: list[PageJob] = []
        self._position = 0  # plan index of the next job the main thread will write
        self._next_start = 0  # plan index of the next job to start ahead of time
        self.jobs_started_ahead = 0

    # --- planning (main thread) ------------------------------------------------------------
    def begin_sync(self, tap: Tap) -> None:
        """Plan the jobs of a full sync, in the order the SDK will write them."""
        self.stop()
        plan: list[PageJob] = []
        if self.max_parallel_streams > 1:
            for stream in tap.streams.values():
                if not _plannable(stream):
                    continue
                for partition in stream.partitions or [{}]:
                    context = partition or None  # as the SDK passes it
                    start = future_starting_value(stream, context)
                    plan.append(PageJob(self, stream, context, start))
        with self.cond:
            self._plan = plan
            self._position = 0
            self._next_start = 0
            self._fill()

    def stop(self) -> None:
        """Cancel every job not being written (a failed or finished sync)."""
        with self.cond:
            for job in [*self._plan, *self._ahead.values()]:
                if not job.current:
                    self._cancel(job)
            self._queued = self._queued_for = None
            self._ahead.clear()
            self._plan = []
            self._position = self._next_start = 0
            self.cond.notify_all()

    # --- main thread -------------------------------------------------------------------------
    def queue_parents(self, stream: PipedriveStream, contexts: Iterable[Context]) -> None:
        """Fetch these partitions of a child stream ahead, in this order (the write order).

        Each must then be read through ``pages`` in the same order, or let go with
        ``forget``. Their requests start from no bookmark (a parent has none of its own).
        """
        if self.max_parallel_parents <= 1:
            return
        with self.cond:
            self._queued = (PageJob(self, stream, context, None) for context in contexts)
            self._queued_for = stream
            self._fill()

    def forget(self, stream: PipedriveStream) -> None:
        """Cancel the queued partitions of ``stream`` it will not read (a refusal, an error)."""
        with self.cond:
            for job in self._ahead.values():
                if job.stream is stream and not job.current:
                    self._cancel(job)
            self._ahead = {k: j for k, j in self._ahead.items() if j.stream is not stream}
            if self._queued_for is stream:
                self._queued = self._queued_for = None

    def pages(self, stream: PipedriveStream, context: Context | None) -> Iterator[Page]:
        """The pages of one stream partition, fetched one request ahead (or more)."""
        key = context_key(stream.name, context)
        # The SDK has written this partition's starting bookmark by now.
        start = (
            stream.get_starting_replication_key_value(context) if stream.replication_key else None
        )
        with self.cond:
            job = self._take_queued(stream, key)
            for index in range(self._position, len(self._plan) if job is None else 0):
                if self._plan[index].key == key:
                    job = self._plan[index]
                    # Jobs planned before it will not be written any more.
                    for skipped in self._plan[self._position : index]:
                        self._cancel(skipped)
                    self._position = index + 1
                    self._next_start = max(self._next_start, self._position)
                    break
            if job is not None and job.starting_value != start:
                # Fetched from another bookmark than the SDK settled on: start over.
                self._cancel(job)
                job = None
            if job is None:
                job = PageJob(self, stream, context, start)
            self._make_current(job)
            if not job.started:
                job.start()
            self._fill()
        return job.pages()

    @staticmethod
    def pinned_start(stream: PipedriveStream, context: Context | None) -> tuple[t.Any] | None:
        """On a fetching thread, the starting bookmark of the job it fetches for."""
        job = getattr(_thread_job, "current", None)
        if job is None or job.stream is not stream or job.key != context_key(stream.name, context):
            return None
        return (job.starting_value,)

    @staticmethod
    def fetching_ahead() -> bool:
        """Whether this thread fetches for a job the main thread is not writing yet."""
        job = getattr(_thread_job, "current", None)
        return job is not None and not job.current

    # --- bookkeeping (under self.cond) ---------------------------------------------------------
    def _take_queued(self, stream: PipedriveStream, key: str) -> PageJob | None:
        """The queued job of this partition, started or not; None if it was not queued."""
        job = self._ahead.pop(key, None)
        if job is None and self._queued is not None and self._queued_for is stream:
            # Not started yet (the window was full): the next one in the queue.
            job = next(self._queued, None)
            if job is not None and job.key != key:
                # Read out of the queued order: the queue no longer says what comes next.
                self._cancel(job)
                job = None
                self._queued = self._queued_for = None
        return job

    def _make_current(self, job: PageJob) -> None:
        job.current = True
        self.ahead_bytes -= job.buffered_bytes
        job.buffered_bytes = 0
        self.cond.notify_all()

    def _cancel(self, job: PageJob) -> None:
        job.cancelled = True
        self.ahead_bytes -= job.buffered_bytes
        job.buffered_bytes = 0
        job._pages.clear()
        self.cond.notify_all()

    def _fill(self) -> None:
        """Start jobs ahead of the main thread, up to the parallelism and memory limits."""
        running_ahead = sum(
            1
            for job in self._plan[self._position :]
            if job.started and not job.done and not job.cancelled
        )
        while (
            running_ahead < self.max_parallel_streams - 1
            and self._next_start < len(self._plan)
            and self.ahead_bytes < AHEAD_BUDGET_BYTES
        ):
            job = self._plan[self._next_start]
            self._next_start += 1
            if job.started or job.cancelled:
                continue
            job.start()
            self.jobs_started_ahead += 1
            running_ahead += 1
        # Parents: the ones started and not yet taken by the main thread count, finished
        # or not, so their buffered pages stay bounded too.
        while (
            self._queued is not None
            and self._queued_for is not None
            and len(self._ahead) < self.max_parallel_parents - 1
            and self.ahead_bytes < AHEAD_BUDGET_BYTES
            # Near the run's token cap no parent is fetched ahead: a parent paid for but
            # not written before the run stops would be paid again by the next run. A
            # margin of a whole parallel window keeps every parent fetched ahead affordable
            # until the main thread has written it; then it reads one parent at a time.
            and self._queued_for.budget_fits_parents(len(self._ahead) + self.max_parallel_parents)
        ):
            parent_job = next(self._queued, None)
            if parent_job is None:
                self._queued = self._queued_for = None
                break
            self._ahead[parent_job.key] = parent_job
            parent_job.start()
            self.jobs_started_ahead += 1

    def _job_finished(self, job: PageJob) -> None:
        with self.cond:
            job.done = True
            self._fill()
            self.cond.notify_all()

    def _release(self, job: PageJob, *, finished: bool) -> None:
        with self.cond:
            job.current = False
            if not finished:
                # The main thread stopped early (record limit, error downstream).
                self._cancel(job)
            self._fill()


def _plannable(stream: t.Any) -> t.TypeGuard[PipedriveStream]:
    """Top-level selected streams whose records come from the standard request loop.

    Streams that read differently (their own ``get_records`` or ``request_records``, such
    as children read per parent) are fetched when their turn comes, as is any stream
    class that sets ``prefetch_ahead = False``.
    """
    if not isinstance(stream, PipedriveStream) or stream.parent_stream_type:
        return False
    if not (stream.selected or stream.has_selected_descendents):
        return False
    cls = type(stream)
    return (
        cls.get_records is RESTStream.get_records
        and cls.request_records is PipedriveStream.request_records
        and getattr(cls, "prefetch_ahead", True)
    )


def future_starting_value(stream: PipedriveStream, context: Context | None) -> t.Any:
    """The starting bookmark the SDK will settle on when this partition's turn comes.

    Mirrors ``StreamStateManager.write_starting_replication_value`` without writing, so
    the emitted state does not change; ``Prefetcher.pages`` compares it with what the
    SDK then writes and refetches on any difference.
    """
    if not stream.replication_key or stream.replication_method == "FULL_TABLE":
        return None
    partition = stream._get_state_partition_context(context)
    state = get_state_if_exists(stream.tap_state, stream.name, partition) or {}
    value = None
    bookmark = state.get("replication_key_value")
    if bookmark and state.get("replication_key") == stream.replication_key:
        value = bookmark
    start_date = stream.config.get("start_date")
    if start_date:
        value = stream.compare_start_date(value, start_date) if value else start_date
    return to_json_compatible(value)


def _shorten_switch_interval() -> None:
    """Let fetching threads have the GIL back within 1 ms rather than 5 ms.

    After every network read a fetching thread needs the GIL for a moment; while the main
    thread writes records it would wait up to the switch interval each time, and those
    waits add up to a noticeable part of every page's round trip.
    """
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)


def _has_rows(response: requests.Response) -> bool:
    try:
        body = response_head(response)
    except ValueError:
        return True
    return not isinstance(body, dict) or bool(body.get("data"))
