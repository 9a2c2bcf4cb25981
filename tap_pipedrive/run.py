"""What one run shares between the tap and its streams, built once by the tap.

Streams reach these services through ``PipedriveStream.run`` only: the HTTP client (and
through it the authenticator, the pacer and the budget), fetch-ahead, progress, and the
custom field catalogue.
"""

from __future__ import annotations

import threading
import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_pipedrive.budget import Budget
    from tap_pipedrive.http.client import PipedriveClient
    from tap_pipedrive.http.fetch_ahead import Prefetcher
    from tap_pipedrive.progress import Progress


@dataclass
class ListRead:
    """One list a list stream read in full this run, from ``since`` (its bookmark).

    Kept only for the endpoints child streams list their parents from: the id, the
    ``update_time`` and the ``*_count`` fields those streams read, of each row, in the
    list's order.
    """

    since: t.Any
    counts: tuple[str, ...] = ()
    rows: list[tuple[t.Any, t.Any, tuple[tuple[str, int], ...]]] = field(default_factory=list)


class ListReads:
    """The list reads of this run that child streams may take as their parent list.

    A list stream such as ``deals`` reads ``/api/v2/deals`` sorted by update time from its
    bookmark; its child streams need the same rows. When that read was whole and starts no
    later than what the children need, they take its rows instead of listing again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # URL paths some selected child stream lists its parents from, each with the
        # ``*_count`` fields those streams read on a parent's row.
        self.wanted: dict[str, tuple[str, ...]] = {}
        self._complete: dict[str, ListRead] = {}

    def complete(self, path: str, read: ListRead) -> None:
        with self._lock:
            self._complete[path] = read

    def get(self, path: str) -> ListRead | None:
        with self._lock:
            return self._complete.get(path)


@dataclass(eq=False)
class Run:
    client: PipedriveClient
    fetcher: Prefetcher
    progress: Progress
    # The one line a run stopped at its token cap ends with, for the stream it stopped in.
    budget_stop_line: Callable[[str], str]
    list_reads: ListReads = field(default_factory=ListReads)

    @property
    def budget(self) -> Budget:
        return self.client.budget


@t.runtime_checkable
class RunOwner(t.Protocol):
    """The tap, as streams see it: the owner of the run's services."""

    @property
    def run(self) -> Run: ...
