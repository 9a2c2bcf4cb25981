"""What a long sync says while it runs, and the one table it ends with.

Every ``progress_interval_seconds`` the run logs a line for the stream being written:
records so far, records per second, and for streams read parent by parent (followers,
participants, flows ...) how many parents are done, out of how many, and the time left at
the current pace. Streams finished since the previous report share one more line. At the
end it logs one table: records, API calls and time per stream.

Nothing here runs per record except one integer increment (``StreamProgress.records``);
the clock is read once per page and once per request. No thread of its own: reports are
made by whichever thread finishes a page or a request after the interval is up.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import typing as t

DEFAULT_PROGRESS_INTERVAL = 30
# Streams named in the line about streams finished since the last report.
FINISHED_SHOWN = 12


class StreamProgress:
    """Counters of one stream. ``records`` is bumped per record; the rest per page or call."""

    __slots__ = (
        "calls",
        "last_seen",
        "listing_done",
        "name",
        "parents_done",
        "parents_listed",
        "records",
        "reported_at",
        "reported_parents",
        "reported_records",
        "started",
        "tokens",
    )

    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.records = 0
        self.calls = 0
        # API tokens spent, once each request's cost is known (None: not known).
        self.tokens: int | None = None
        # When the run began writing this stream (its pages may be fetched earlier).
        self.started: float | None = None
        self.last_seen = now
        self.parents_listed = 0
        self.parents_done = 0
        self.listing_done = False
        self.reported_at = now
        self.reported_records = 0
        self.reported_parents = 0

    @property
    def has_parents(self) -> bool:
        return self.parents_listed > 0

    @property
    def seconds(self) -> float:
        """Time spent writing this stream (0 for one that was only asked for something)."""
        return 0.0 if self.started is None else self.last_seen - self.started


class Progress:
    """Progress of one run, shared by every stream and fetching thread."""

    # The sync under way in this process: a run that ends with an error still sums up
    # what it delivered (the command line reports the error, and has no tap to ask).
    in_progress: t.ClassVar[Progress | None] = None

    def __init__(
        self,
        interval: float = DEFAULT_PROGRESS_INTERVAL,
        *,
        logger: logging.Logger | None = None,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.logger = logger or logging.getLogger("tap-pipedrive")
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: dict[str, StreamProgress] = {}
        self._next_report = clock() + interval if interval > 0 else math.inf
        self._summarised = False
        # The stream the main thread writes now (records are written one stream at a time).
        self._current: StreamProgress | None = None
        # Lines logged after the table (what the run's tokens mean for the daily budget).
        self.footer: t.Callable[[], list[str]] | None = None

    def stream(self, name: str) -> StreamProgress:
        """The counters of a stream, created when first asked for."""
        found = self._streams.get(name)
        if found is None:
            with self._lock:
                found = self._streams.setdefault(name, StreamProgress(name, self._clock()))
        return found

    # --- events (per request, per page, per parent chunk) ---------------------------------
    def request_sent(self, name: str) -> None:
        """One HTTP request (retries included: each costs the API budget)."""
        stats = self.stream(name)
        with self._lock:
            stats.calls += 1
        self.tick()

    def writing(self, stats: StreamProgress) -> None:
        """The main thread begins (or resumes) writing a stream's records."""
        if stats.started is None:
            stats.started = stats.last_seen = self._clock()
        self._current = stats

    def page_done(self, stats: StreamProgress) -> None:
        """A page's records were written (main thread)."""
        stats.last_seen = self._clock()
        self.tick()

    def parents_listed(self, stats: StreamProgress, count: int = 1) -> None:
        stats.parents_listed += count

    def parents_done(self, stats: StreamProgress, count: int) -> None:
        stats.parents_done += count
        stats.last_seen = self._clock()

    def listing_done(self, stats: StreamProgress) -> None:
        stats.listing_done = True

    def charge(self, name: str, tokens: int) -> None:
        """API tokens a request cost (budget.py): fills the tokens column of the summary."""
        stats = self.stream(name)
        with self._lock:
            stats.tokens = (stats.tokens or 0) + tokens

    # --- reports --------------------------------------------------------------------------
    def tick(self) -> None:
        """Log the progress lines if the interval is up (cheap otherwise: one clock read)."""
        now = self._clock()
        if now < self._next_report:
            return
        with self._lock:
            if now < self._next_report:
                return  # another thread reported meanwhile
            self._next_report = now + self.interval
            lines = self._report(now)
        for line in lines:
            self.logger.info("%s", line)

    def _report(self, now: float) -> list[str]:
        changed = [
            stats
            for stats in self._streams.values()
            if stats.records != stats.reported_records
            or stats.parents_done != stats.reported_parents
        ]
        current = self._current
        lines = [self._line(current, now)] if current in changed and current else []
        others = [stats for stats in changed if stats is not current]
        if others:
            shown = ", ".join(f"{s.name} {s.records:,}" for s in others[:FINISHED_SHOWN])
            more = len(others) - FINISHED_SHOWN
            lines.append(
                f"Progress: also written since the last report (records): {shown}"
                + (f" and {more} more streams" if more > 0 else "")
            )
        for stats in changed:
            stats.reported_at, stats.reported_records = now, stats.records
            stats.reported_parents = stats.parents_done
        return lines

    def _line(self, stats: StreamProgress, now: float) -> str:
        since = max(stats.reported_at, stats.started or stats.reported_at)
        rate = (stats.records - stats.reported_records) / max(now - since, 1e-9)
        line = f"Progress {stats.name}: {stats.records:,} records ({rate:,.0f}/s)"
        if stats.has_parents:
            line += f", parents {stats.parents_done:,} / {stats.parents_listed:,}"
            if not stats.listing_done:
                line += " listed so far"
            elif stats.parents_done < stats.parents_listed:
                line += f", {_duration(self._time_left(stats, now))} left"
        return line

    @staticmethod
    def _time_left(stats: StreamProgress, now: float) -> float:
        spent = now - (stats.started if stats.started is not None else now)
        if stats.parents_done == 0:
            return math.inf
        return spent / stats.parents_done * (stats.parents_listed - stats.parents_done)

    def summary(self) -> list[str]:
        """The end table: one line per stream that made requests or wrote records."""
        rows = [s for s in self._streams.values() if s.records or s.calls]
        show_tokens = any(s.tokens is not None for s in rows)
        width = max([len(s.name) for s in rows] + [len("total")])
        header = f"{'stream':<{width}}  {'records':>9}  {'calls':>7}  {'time':>9}"
        if show_tokens:
            header += f"  {'tokens':>8}"
        lines = [header]
        for stats in sorted(rows, key=lambda s: s.name):
            line = f"{stats.name:<{width}}  {stats.records:>9,}  {stats.calls:>7,}  "
            line += f"{_duration(stats.seconds):>9}"
            if show_tokens:
                line += f"  {_count(stats.tokens):>8}"
            lines.append(line)
        if rows:
            total = f"{'total':<{width}}  {sum(s.records for s in rows):>9,}  "
            total += f"{sum(s.calls for s in rows):>7,}  {_duration(self.elapsed()):>9}"
            if show_tokens:
                total += f"  {_count(sum(s.tokens or 0 for s in rows)):>8}"
            lines.append(total)
        return lines

    def elapsed(self) -> float:
        """Wall time from the first stream written to the last page written."""
        written = [s for s in self._streams.values() if s.started is not None]
        if not written:
            return 0.0
        return max(s.last_seen for s in written) - min(t.cast("float", s.started) for s in written)

    def begin(self) -> None:
        """A sync starts: it is the one a failure of this process sums up."""
        Progress.in_progress = self

    def log_summary(self, *, stopped: bool = False) -> None:
        """Log the end table once (every stream's end reports here; the first one logs)."""
        with self._lock:
            if self._summarised:
                return
            self._summarised = True
        lines = self.summary()
        title = "Sync summary" + (" (stopped early)" if stopped else "")
        self.logger.info("%s: records, API calls and time per stream", title)
        for line in lines:
            self.logger.info("%s", line)
        for line in self.footer() if self.footer is not None else ():
            self.logger.info("%s", line)


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
