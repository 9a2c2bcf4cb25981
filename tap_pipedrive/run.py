"""What one run shares between the tap and its streams, built once by the tap.

Streams reach these services through ``PipedriveStream.run`` only: the HTTP client (and
through it the authenticator, the pacer and the budget), fetch-ahead, progress, and the
custom field catalogue.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_pipedrive.budget import Budget
    from tap_pipedrive.http.client import PipedriveClient
    from tap_pipedrive.http.fetch_ahead import Prefetcher
    from tap_pipedrive.http.pacer import RateLimiter
    from tap_pipedrive.progress import Progress


@dataclass(eq=False)
class Run:
    client: PipedriveClient
    fetcher: Prefetcher
    progress: Progress
    # The one line a run stopped at its token cap ends with, for the stream it stopped in.
    budget_stop_line: Callable[[str], str]

    @property
    def budget(self) -> Budget:
        return self.client.budget

    @property
    def pacer(self) -> RateLimiter:
        return self.client.pacer


@t.runtime_checkable
class RunOwner(t.Protocol):
    """The tap, as streams see it: the owner of the run's services."""

    @property
    def run(self) -> Run: ...
