"""Fetching pages ahead of the records being written.

Two kinds of overlap, neither visible in the output:

- Within a stream: as soon as page N has arrived, its successor's token is known, so the
  request for page N+1 goes out in a background thread while page N's records are
  processed and written. The paginator still decides every next page.
- Across streams: during a full sync, up to ``max_parallel_streams - 1`` of the streams
  still to come fetch their pages in background threads.
- Across the parents of a child stream: the stream queues the parents it will read, and
  up to ``max_parallel_parents - 1`` of the parents after the one being written fetch
  their pages in background threads (the per-parent phase is mostly waiting on the
  network; the shared pacer in pacer.py keeps all threads inside the burst window).

Only the main thread writes Singer messages, one stream after the other in the order the
SDK syncs them, so SCHEMA, RECORD and STATE messages keep their usual sequence and every
STATE still covers exactly the records written before it. Memory stays bounded: the
stream being written holds at most ``PAGES_AHEAD`` pages beyond the one in hand, and the
streams waiting their turn keep raw bodies (not decoded objects) up to
``AHEAD_BUDGET_BYTES`` in total, after which they wait.

Jobs know nothing of streams: each is a key (stream and partition) and a ``RequestSpec``
built on the main thread, bookmark included, which the background thread only reads.
"""

from __future__ import annotations

import sys
import threading
import typing as t
from collections import deque

from tap_pipedrive.errors import StreamUnavailable

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from tap_pipedrive.http.client import PipedriveClient, RequestSpec
    from tap_pipedrive.http.pages import Page

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


def _always(_: int) -> bool:
    return True


class PageJob:
    """The pages of one stream partition, fetched by one background thread."""

    def __init__(self, fetcher: Prefetcher, key: str, spec: RequestSpec) -> None:
        self.key = key
        # What to ask for, bookmark included, settled on the main thread: background
        # threads never read or create state entries.
        self.spec = spec
        self._fetcher = fetcher
        self._pages: deque[t.Any] = deque()
        self.current = False  # the main thread is writing this job's records
        self.cancelled = False
        self.started = False
        self.done = False  # the thread has finished
        self.buffered_bytes = 0  # bytes counted against the ahead budget

    # --- background thread -------------------------------------------------------------
    def start(self) -> None:
        self.started = True
        self._fetcher.thread_started()
        thread = threading.Thread(target=self._run, name=f"fetch-{self.spec.stream}", daemon=True)
        thread.start()

    def fetching_ahead(self) -> bool:
        """Whether the main thread is not writing this job yet (the budget gate asks)."""
        return not self.current

    def _run(self) -> None:
        try:
            pages = self._fetcher.client.pages(self.spec, ahead=self.fetching_ahead)
            while self._wait_for_room():
                page = next(pages, None)
                if page is None:
                    break
                self._put(page)
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
            if not isinstance(item, BaseException) and item is not _END and not self.current:
                # Waiting its turn: keep the raw body only (a decoded page is several
                # times larger); it is decoded again when written.
                item.forget_decoded()
                size = len(item.body)
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
    """Schedules page fetching for one run; shared by its streams."""

    def __init__(
        self,
        client: PipedriveClient,
        max_parallel_streams: int = DEFAULT_MAX_PARALLEL_STREAMS,
        max_parallel_parents: int = DEFAULT_MAX_PARALLEL_PARENTS,
    ) -> None:
        self.client = client
        self.max_parallel_streams = max(1, int(max_parallel_streams))
        self.max_parallel_parents = max(1, int(max_parallel_parents))
        # The per-parent partitions a child stream will write, in that order, made into
        # jobs only when they start (a first sync may queue 100,000 parents); and those
        # started ahead of the main thread (by key) until it takes them.
        self._queued: Iterator[PageJob] | None = None
        self._queued_for: str | None = None
        self._queued_fits: Callable[[int], bool] = _always
        self._ahead: dict[str, PageJob] = {}
        self.cond = threading.Condition(threading.Lock())
        self.ahead_bytes = 0
        self._plan: list[PageJob] = []
        self._position = 0  # plan index of the next job the main thread will write
        self._next_start = 0  # plan index of the next job to start ahead of time
        self.jobs_started_ahead = 0
        self._threads = 0
        self._switch_interval: float | None = None

    # --- planning (main thread) ------------------------------------------------------------
    def begin_sync(self, plan: Iterable[tuple[str, RequestSpec]]) -> None:
        """Plan the jobs of a full sync, in the order they will be written."""
        self.stop()
        jobs = (
            [PageJob(self, key, spec) for key, spec in plan]
            if self.max_parallel_streams > 1
            else []
        )
        with self.cond:
            self._plan = jobs
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
    def queue(
        self,
        owner: str,
        jobs: Iterable[tuple[str, RequestSpec]],
        fits: Callable[[int], bool] = _always,
    ) -> None:
        """Fetch these partitions of a child stream ahead, in this order (the write order).

        Each must then be read through ``pages`` in the same order, or let go with
        ``forget``. ``fits(n)`` tells whether n more parents fit in the run's budget.
        """
        if self.max_parallel_parents <= 1:
            return
        with self.cond:
            self._queued = (PageJob(self, key, spec) for key, spec in jobs)
            self._queued_for = owner
            self._queued_fits = fits
            self._fill()

    def forget(self, owner: str) -> None:
        """Cancel the queued partitions of ``owner`` it will not read (a refusal, an error)."""
        with self.cond:
            for job in self._ahead.values():
                if job.spec.stream == owner and not job.current:
                    self._cancel(job)
            self._ahead = {k: j for k, j in self._ahead.items() if j.spec.stream != owner}
            if self._queued_for == owner:
                self._queued = self._queued_for = None

    def pages(self, key: str, spec: RequestSpec) -> Iterator[Page]:
        """The pages of one stream partition, fetched one request ahead (or more).

        A job planned or queued under ``key`` is used when it asks for exactly ``spec``;
        one fetched from another bookmark than the one settled now starts over.
        """
        with self.cond:
            job = self._take_queued(spec.stream, key)
            for index in range(self._position, len(self._plan) if job is None else 0):
                if self._plan[index].key == key:
                    job = self._plan[index]
                    # Jobs planned before it will not be written any more.
                    for skipped in self._plan[self._position : index]:
                        self._cancel(skipped)
                    self._position = index + 1
                    self._next_start = max(self._next_start, self._position)
                    break
            if job is not None and job.spec != spec:
                self._cancel(job)
                job = None
            if job is None:
                job = PageJob(self, key, spec)
            self._make_current(job)
            if not job.started:
                job.start()
            self._fill()
        return job.pages()

    # --- bookkeeping (under self.cond) ---------------------------------------------------------
    def _take_queued(self, owner: str, key: str) -> PageJob | None:
        """The queued job of this partition, started or not; None if it was not queued."""
        job = self._ahead.pop(key, None)
        if job is None and self._queued is not None and self._queued_for == owner:
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
            and self._queued_fits(len(self._ahead) + self.max_parallel_parents)
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
            self._threads -= 1
            if self._threads == 0 and self._switch_interval is not None:
                # No thread fetches any more: the process gets its own interval back.
                sys.setswitchinterval(self._switch_interval)
                self._switch_interval = None
            self._fill()
            self.cond.notify_all()

    def thread_started(self) -> None:
        """Let fetching threads have the GIL back within 1 ms rather than 5 ms, while any runs.

        After every network read a fetching thread needs the GIL for a moment; while the main
        thread writes records it would wait up to the switch interval each time, and those
        waits add up to a noticeable part of every page's round trip. The interval the
        process had is restored when the last fetching thread ends. Called with
        ``self.cond`` held, as every job is started.
        """
        self._threads += 1
        if self._switch_interval is None and sys.getswitchinterval() > SWITCH_INTERVAL:
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL)

    def _release(self, job: PageJob, *, finished: bool) -> None:
        with self.cond:
            job.current = False
            if not finished:
                # The main thread stopped early (record limit, error downstream).
                self._cancel(job)
            self._fill()
