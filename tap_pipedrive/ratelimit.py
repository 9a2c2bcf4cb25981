"""Request pacing from Pipedrive's burst-window headers.

Pipedrive counts requests per token in a rolling 2-second window and reports
``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (seconds until the window frees).
Pausing when the window is nearly used up keeps a sync from ever meeting a 429.
"""

from __future__ import annotations

import threading
import time

import requests

# Keep this many requests of the window in reserve: other streams of this run
# (and other clients of the same user) share it.
RESERVE = 2


class RateLimiter:
    """Shared by all streams of a run; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._resume_at = 0.0
        self._consecutive_429 = 0
        self.pauses = 0
        self.paused_seconds = 0.0

    def observe(self, response: requests.Response) -> None:
        """Read the window headers of any response."""
        remaining = _header_number(response, "x-ratelimit-remaining")
        reset = _header_number(response, "x-ratelimit-reset")
        with self._lock:
            if response.status_code != 429:
                self._consecutive_429 = 0
            if remaining is None:
                return
            self._remaining = int(remaining)
            if remaining <= RESERVE and reset is not None:
                self._resume_at = max(self._resume_at, time.monotonic() + reset)

    def note_429(self) -> int:
        """Count consecutive 429s; many in a row mean the daily budget, not the burst."""
        with self._lock:
            self._consecutive_429 += 1
            return self._consecutive_429

    def before_request(self) -> None:
        """Sleep while the window is exhausted."""
        with self._lock:
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                self._remaining = None
                self.pauses += 1
                self.paused_seconds += wait
        if wait > 0:
            time.sleep(wait)


def _header_number(response: requests.Response, name: str) -> float | None:
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
